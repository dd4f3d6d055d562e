package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// hubCluster is a clustered hub of real pinkie processes on 127.0.0.1,
// each node with its own ports and data directory, sharing the fleet's
// auth directory.
type hubCluster struct {
	f     *fleet
	nodes []*hubNode
	// explain makes a passing test log what a failing one does (the
	// nodes' warnings and how they see the streams): set when something
	// took suspiciously long.
	explain bool
}

type hubNode struct {
	name                                  string
	data                                  string
	natsPort, leafPort, httpPort, cluPort int
	p                                     *proc
}

func newHubCluster(f *fleet, n int) *hubCluster {
	c := &hubCluster{f: f}
	for i := range n {
		c.nodes = append(c.nodes, newHubNode(f.t, fmt.Sprintf("hub%d", i+1)))
	}
	// A failure shows what each node warned of: leadership, sources,
	// ingest.
	f.t.Cleanup(func() {
		if !f.t.Failed() && !c.explain {
			return
		}
		for _, n := range c.nodes {
			if n.p == nil {
				continue
			}
			var lines []string
			for _, l := range strings.Split(n.p.out.String(), "\n") {
				if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "leads the hub") {
					lines = append(lines, l)
				}
			}
			if len(lines) > 80 {
				lines = append(lines[:40], append([]string{"…"}, lines[len(lines)-40:]...)...)
			}
			f.t.Logf("%s warnings and errors:\n%s", n.name, strings.Join(lines, "\n"))
		}
	})
	return c
}

func newHubNode(t *testing.T, name string) *hubNode {
	return &hubNode{name: name, data: t.TempDir(), natsPort: freePort(t), leafPort: freePort(t), httpPort: freePort(t), cluPort: freePort(t)}
}

func (c *hubCluster) routes() string {
	var r []string
	for _, n := range c.nodes {
		r = append(r, fmt.Sprintf("nats-route://127.0.0.1:%d", n.cluPort))
	}
	return strings.Join(r, ",")
}

// start starts node i without waiting for it: a node waits for the others
// to form the cluster before it prints "hub started".
func (c *hubCluster) start(i int, extra ...string) *proc { return c.startNode(c.nodes[i], extra...) }

// startNode starts n as a node of the cluster (n may be none of c.nodes:
// a stranger trying to join).
func (c *hubCluster) startNode(n *hubNode, extra ...string) *proc {
	return c.startNodeRoutes(n, c.routes(), extra...)
}

// startNodeRoutes starts n with the route list routes.
func (c *hubCluster) startNodeRoutes(n *hubNode, routes string, extra ...string) *proc {
	args := append([]string{"hub", "--data", n.data, "--auth", c.f.auth, "--server-name", n.name,
		"--nats", fmt.Sprintf("127.0.0.1:%d", n.natsPort),
		"--leaf", fmt.Sprintf("127.0.0.1:%d", n.leafPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", n.httpPort),
		"--cluster", fmt.Sprintf("127.0.0.1:%d", n.cluPort), "--routes", routes,
		"--cluster-wait", "90s"}, extra...)
	if os.Getenv("PINKIE_TEST_HUB_DEBUG") != "" {
		args = append(args, "--log-level", "debug")
	}
	n.p = startProc(c.f.t, n.name, args...)
	return n.p
}

// startAll starts every node and waits until each has started.
func (c *hubCluster) startAll(extra ...string) {
	for i := range c.nodes {
		c.start(i, extra...)
	}
	for _, n := range c.nodes {
		n.p.waitFor("hub started", 90*time.Second)
	}
}

// describeOnFailure makes a failed test log how each node still running
// sees each of the streams (messages, leader, replicas) before the nodes
// are stopped. Call it after the nodes started.
func (c *hubCluster) describeOnFailure(names ...string) {
	t := c.f.t
	t.Cleanup(func() {
		if !t.Failed() && !c.explain {
			return
		}
		for _, n := range c.nodes {
			if n.p == nil || n.p.exited() {
				continue
			}
			for _, name := range names {
				out, _ := exec.Command(natsCLI(t), "--server", fmt.Sprintf("nats://127.0.0.1:%d", n.natsPort), "--nkey", c.f.operator(),
					"--timeout", "5s", "stream", "info", name, "--json").CombinedOutput()
				var info struct {
					State   struct{ Messages uint64 } `json:"state"`
					Cluster json.RawMessage           `json:"cluster"`
				}
				_ = json.Unmarshal(out, &info)
				t.Logf("%s seen from %s: %d messages, cluster %s (%s)", name, n.name, info.State.Messages, info.Cluster, strings.TrimSpace(string(out[:min(len(out), 200)])))
			}
		}
	})
}

// waitHealthy waits until the node's /healthz answers 200.
func (n *hubNode) waitHealthy(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var body string
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.httpPort))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			body = string(b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: /healthz not ok after %s: %s", n.name, within, body)
}

func (c *hubCluster) natsURLs() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", n.natsPort))
	}
	return strings.Join(u, ",")
}

func (c *hubCluster) leafURLs() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, fmt.Sprintf("nats-leaf://127.0.0.1:%d", n.leafPort))
	}
	return strings.Join(u, ",")
}

func (c *hubCluster) node(name string) *hubNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// client connects the operator to every node (it moves when one dies).
func (c *hubCluster) client() *streams.Client {
	c.f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := streams.Connect(ctx, c.natsURLs(), c.f.operator(), "e2e cluster test")
	if err != nil {
		c.f.t.Fatal(err)
	}
	c.f.t.Cleanup(cl.Close)
	return cl
}

// streamLeader is the server leading stream's Raft group, once there is one.
func streamLeader(t *testing.T, js jetstream.JetStream, stream string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := js.Stream(ctx, stream)
		cancel()
		if err == nil && st.CachedInfo().Cluster != nil && st.CachedInfo().Cluster.Leader != "" {
			return st.CachedInfo().Cluster.Leader
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("stream %s has no leader after %s", stream, within)
	return ""
}

// natsStreamReplicas asks the real nats CLI how many replicas stream has
// and how many of them are current.
func natsStreamReplicas(t *testing.T, server, nkey, stream string) (replicas, current int) {
	t.Helper()
	out, err := exec.Command(natsCLI(t), "--server", server, "--nkey", nkey, "stream", "info", stream, "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("nats stream info %s: %v\n%s", stream, err, out)
	}
	var info struct {
		Config struct {
			Replicas int `json:"num_replicas"`
		} `json:"config"`
		Cluster struct {
			Leader   string `json:"leader"`
			Replicas []struct {
				Current bool `json:"current"`
			} `json:"replicas"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("nats stream info %s: %v\n%s", stream, err, out)
	}
	current = 0
	if info.Cluster.Leader != "" {
		current = 1
	}
	for _, r := range info.Cluster.Replicas {
		if r.Current {
			current++
		}
	}
	return info.Config.Replicas, current
}

// readAll reads the want messages of stream on filter, in order. Unlike
// readStream it waits for each batch: on a cluster a fetch that finds
// nothing at once is no proof that nothing is left.
func readAll(t *testing.T, js jetstream.JetStream, stream, filter string, want uint64) []storedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var out []storedEvent
	for uint64(len(out)) < want {
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d messages of %s on %s: %v", len(out), want, stream, filter, ctx.Err())
		}
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Logf("fetch %s: %v; retrying", stream, err)
			continue
		}
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			e, k, err := events.Decode(m.Data())
			if err != nil {
				t.Fatalf("%s seq %d: %v", stream, md.Sequence.Stream, err)
			}
			out = append(out, storedEvent{subject: m.Subject(), seq: md.Sequence.Stream, event: e, kind: k})
		}
	}
	return out
}

// hubStreamNames are the streams every hub has, buckets included.
func hubStreamNames() []string {
	names := []string{streams.IngestStream, streams.HostsStream, streams.DeployStream, streams.AlertsStream,
		streams.DeadLetterStream, streams.FleetStream, streams.AlertLogStream, streams.LeaderStream}
	for _, b := range streams.Buckets {
		names = append(names, "KV_"+b)
	}
	return names
}

// TestClusterIngestLeaderKilled: three hub nodes form a cluster whose
// streams have three replicas; two agents given every node's leaf URL
// send heartbeats; a node is killed with SIGKILL in the middle — the
// INGEST stream's leader (which runs the sourcing), or the hub leader
// (which runs the ingest check); every heartbeat is in HOSTS exactly
// once, in order per agent, and the killed node rejoins when restarted.
func TestClusterIngestLeaderKilled(t *testing.T) {
	for _, tt := range []struct {
		victimOf string
		sig      syscall.Signal
	}{
		{streams.IngestStream, syscall.SIGKILL},
		{streams.LeaderStream, syscall.SIGKILL},
		{"agents", syscall.SIGKILL},
		// A clean stop of the INGEST leader: the node leaves INGEST's
		// sources in place for the others.
		{streams.IngestStream, syscall.SIGTERM},
	} {
		t.Run(tt.victimOf+"/"+tt.sig.String(), func(t *testing.T) { clusterIngestLeaderKilled(t, tt.victimOf, tt.sig) })
	}
}

// agentsConnected reads pinkie_agents_connected from a node's /metrics
// (-1 when the node does not answer).
func agentsConnected(n *hubNode) int {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", n.httpPort))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "pinkie_agents_connected "); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return -1
}

func clusterIngestLeaderKilled(t *testing.T, victimOf string, sig syscall.Signal) {
	f := newFleet(t, "goliath", "koishi")
	c := newHubCluster(f, 3)
	c.startAll()
	c.describeOnFailure(streams.HostsStream, streams.IngestStream)
	cl := c.client()

	want := map[string]int{}
	for _, name := range hubStreamNames() {
		// Buckets the services make come a moment after the start.
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := cl.JS.Stream(ctx, name)
			cancel()
			if err == nil {
				want[name] = st.CachedInfo().Config.Replicas
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream %s: %v", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for name, r := range want {
		if r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
	if r, cur := natsStreamReplicas(t, c.natsURLs(), f.operator(), streams.HostsStream); r != 3 || cur != 3 {
		t.Errorf("nats stream info HOSTS: %d replicas, %d current; want 3 and 3", r, cur)
	}

	const perAgent = 4000
	agentArgs := []string{"--producers", "heartbeat", "--heartbeat", "2ms", "--heartbeat-limit", fmt.Sprint(perAgent)}
	for _, h := range []string{"goliath", "koishi"} {
		f.startAgent(h, t.TempDir(), c.leafURLs(), agentArgs...)
	}
	waitCount(t, cl.JS, streams.HostsStream, "pinkie.host.*.heartbeat", 500, 60*time.Second)
	var leader string
	if victimOf == "agents" {
		// The node most agents are connected to: they must move.
		most := 0
		for _, n := range c.nodes {
			if a := agentsConnected(n); a > most {
				leader, most = n.name, a
			}
		}
	} else {
		leader = streamLeader(t, cl.JS, victimOf, 10*time.Second)
	}
	victim := c.node(leader)
	if victim == nil {
		t.Fatalf("%s leader %q is none of the nodes", victimOf, leader)
	}
	ingestLeader := streamLeader(t, cl.JS, streams.IngestStream, 10*time.Second)
	before := countSubjects(t, cl.JS, streams.HostsStream, "pinkie.host.*.heartbeat")
	victim.p.stop(sig)
	t.Logf("stopped %s with %v (%s leader; INGEST leader %s) with %d heartbeats in HOSTS", leader, sig, victimOf, ingestLeader, before)
	if before >= 2*perAgent {
		t.Fatalf("all %d heartbeats were in before the kill; the test proves nothing", before)
	}
	deadline := time.Now().Add(30 * time.Second)
	for victimOf != "agents" && streamLeader(t, cl.JS, victimOf, 30*time.Second) == leader {
		if time.Now().After(deadline) {
			t.Fatalf("%s is still led by the killed %s", victimOf, leader)
		}
		time.Sleep(100 * time.Millisecond)
	}
	killed := time.Now()
	// Both agents are connected to the nodes left.
	for {
		sum := 0
		for _, n := range c.nodes {
			if n != victim {
				sum += max(agentsConnected(n), 0)
			}
		}
		if sum == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d agents connected to the nodes left 30s after the kill, want 2", sum)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("agents on the nodes left %s after the kill", time.Since(killed).Round(time.Millisecond))
	got := settle(t, cl.JS, 2*perAgent, 3*time.Minute)
	t.Logf("every heartbeat in HOSTS %s after the kill", time.Since(killed).Round(time.Millisecond))
	if time.Since(killed) > 40*time.Second {
		c.explain = true
	}
	if got != 2*perAgent {
		t.Fatalf("HOSTS holds %d heartbeats, want exactly %d", got, 2*perAgent)
	}
	byHost := heartbeatsByInstance(t, readAll(t, cl.JS, streams.HostsStream, "pinkie.host.*.heartbeat", got))
	for _, h := range []string{"goliath", "koishi"} {
		var sum uint64
		for _, n := range byHost[h] {
			sum += n
		}
		if sum != perAgent {
			t.Errorf("%s: %d heartbeats in HOSTS, want %d", h, sum, perAgent)
		}
	}

	// The killed node comes back on its data and catches up.
	i := 0
	for i = range c.nodes {
		if c.nodes[i] == victim {
			break
		}
	}
	c.start(i).waitFor("hub started", 90*time.Second)
	t.Logf("%s restarted %s after the kill", leader, time.Since(killed).Round(time.Millisecond))
	deadline = time.Now().Add(60 * time.Second)
	for {
		r, cur := natsStreamReplicas(t, c.natsURLs(), f.operator(), streams.HostsStream)
		if r == 3 && cur == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restarting %s, HOSTS has %d replicas, %d current; want 3 and 3", leader, r, cur)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestClusterQuorumLost: with two of three nodes killed, JetStream has
// no quorum and the hub takes nothing; the agent goes on storing its
// events in its OUTBOX and, once the two nodes are back, every one of
// them is in HOSTS exactly once.
func TestClusterQuorumLost(t *testing.T) {
	f := newFleet(t, "goliath")
	c := newHubCluster(f, 3)
	c.startAll()
	cl := c.client()
	const total = 3000
	ag := f.startAgent("goliath", t.TempDir(), c.leafURLs(), "--producers", "heartbeat", "--heartbeat", "3ms", "--heartbeat-limit", fmt.Sprint(total))
	waitCount(t, cl.JS, streams.HostsStream, "pinkie.host.*.heartbeat", 300, 60*time.Second)
	c.nodes[0].p.kill()
	c.nodes[1].p.kill()
	killed := time.Now()
	// hub3 alone: nothing reaches HOSTS while the agent keeps producing.
	// Give the agent a few seconds of outage to buffer (and hub3 time to
	// see it has lost its peers).
	time.Sleep(3 * time.Second)
	js3 := func() *streams.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c3, err := streams.Connect(ctx, fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[2].natsPort), f.operator(), "e2e quorum")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c3.Close)
		return c3
	}()
	// Nothing is stored without a quorum while the agent keeps producing
	// (a stalled stream leader may still answer info requests: what it
	// holds must not grow).
	hostsMsgs := func() (uint64, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := js3.JS.Stream(ctx, streams.HostsStream)
		if err != nil {
			return 0, false
		}
		return st.CachedInfo().State.Msgs, true
	}
	n1, ok1 := hostsMsgs()
	time.Sleep(3 * time.Second)
	if n2, ok2 := hostsMsgs(); ok1 && ok2 && n2 > n1 {
		t.Fatalf("HOSTS grew from %d to %d messages with two of three nodes down; want no quorum", n1, n2)
	}
	if ag.count("agent stopped") > 0 {
		t.Fatalf("the agent stopped:\n%s", ag.out.String())
	}
	c.start(0)
	c.start(1)
	c.nodes[0].p.waitFor("hub started", 90*time.Second)
	c.nodes[1].p.waitFor("hub started", 90*time.Second)
	t.Logf("quorum back %s after the kill", time.Since(killed).Round(time.Millisecond))
	got := settle(t, cl.JS, total, 3*time.Minute)
	if got != total {
		t.Fatalf("HOSTS holds %d heartbeats, want exactly %d", got, total)
	}
	t.Logf("every heartbeat in HOSTS %s after the kill", time.Since(killed).Round(time.Millisecond))
	wantHeartbeats(t, cl, "goliath", got, total)
}

// TestClusterRollingRestart: each node in turn is stopped cleanly and
// started again while an agent sends heartbeats; every one of them is in
// HOSTS exactly once.
func TestClusterRollingRestart(t *testing.T) {
	f := newFleet(t, "goliath")
	c := newHubCluster(f, 3)
	c.startAll()
	cl := c.client()
	const total = 6000
	f.startAgent("goliath", t.TempDir(), c.leafURLs(), "--producers", "heartbeat", "--heartbeat", "3ms", "--heartbeat-limit", fmt.Sprint(total))
	waitCount(t, cl.JS, streams.HostsStream, "pinkie.host.*.heartbeat", 300, 60*time.Second)
	start := time.Now()
	for i, n := range c.nodes {
		n.p.stop(syscall.SIGTERM)
		c.start(i).waitFor("hub started", 90*time.Second)
		// As a rolling restart should: the next node only once this one
		// has caught up.
		n.waitHealthy(t, 60*time.Second)
		t.Logf("%s restarted at %s with %d heartbeats in HOSTS", n.name, time.Since(start).Round(time.Millisecond),
			countSubjects(t, cl.JS, streams.HostsStream, "pinkie.host.*.heartbeat"))
	}
	got := settle(t, cl.JS, total, 3*time.Minute)
	t.Logf("every heartbeat in HOSTS at %s", time.Since(start).Round(time.Millisecond))
	if got != total {
		t.Fatalf("HOSTS holds %d heartbeats, want exactly %d", got, total)
	}
	wantHeartbeats(t, cl, "goliath", got, total)
}

// TestSingleHubStaysR1: a hub without --cluster keeps one replica of
// every stream, and refuses --replicas above 1.
func TestSingleHubStaysR1(t *testing.T) {
	f := newFleet(t, "goliath")
	hub := f.startHub()
	cl := f.client()
	for _, name := range hubStreamNames() {
		if name == streams.LeaderStream {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cl.JS.Stream(ctx, name)
		cancel()
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 1 {
			t.Errorf("stream %s has %d replicas on a single hub, want 1", name, r)
		}
	}
	// Its data dir moving into a cluster: upgrade_test.go.
	hub.stop(syscall.SIGTERM)
	out, code := runPinkie(t, "hub", "--data", t.TempDir(), "--auth", f.auth, "--replicas", "3",
		"--nats", "127.0.0.1:0", "--leaf", "127.0.0.1:0", "--http", "127.0.0.1:0")
	if code != 2 || !strings.Contains(out, "--replicas 3 needs a cluster") {
		t.Errorf("hub --replicas 3 without a cluster: exit %d, want 2 and a reason:\n%s", code, out)
	}
}

// TestClusterAlertNotifiedOnce: on a three-node hub each alert is
// notified once, not once per node; after the hub leader (which runs the
// alerter and the notifier) is killed with SIGKILL, another node takes
// over and notifies the alerts that come next, still once each.
func TestClusterAlertNotifiedOnce(t *testing.T) {
	af := newAlertFleet(t, map[string]any{"mail": false}, nil, "goliath")
	c := newHubCluster(af.fleet, 3)
	c.startAll("--config", af.config)
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ag, err := streams.StartAgent(ctx, streams.AgentOptions{Host: "goliath", HubURLs: strings.Split(c.leafURLs(), ","),
		NkeyFile: streams.HostSeedFile(af.auth, "goliath"), DataDir: t.TempDir(), ReconnectInterval: 200 * time.Millisecond})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ag.Close)

	first, second := []string{"alice", "bob"}, []string{"carol", "dave"}
	for _, u := range first {
		publishOn(t, ag, "login", "", time.Now(), loginEvent(u, time.Now()))
	}
	for _, u := range first {
		af.ntfy.wait(u+" logged in", 60*time.Second)
		af.matrix.wait(u+" logged in", 60*time.Second)
	}
	// ntfy has no idempotency key: kill the leader only once both
	// deliveries are recorded, or one may rightly be posted again.
	waitCount(t, cl.JS, streams.AlertLogStream, "pinkie.notify.phone.delivered", uint64(len(first)), 30*time.Second)
	waitCount(t, cl.JS, streams.AlertLogStream, "pinkie.notify.ops.delivered", uint64(len(first)), 30*time.Second)
	leader := streamLeader(t, cl.JS, streams.LeaderStream, 10*time.Second)
	victim := c.node(leader)
	if victim == nil {
		t.Fatalf("hub leader %q is none of the nodes", leader)
	}
	victim.p.waitFor("this node leads the hub", time.Second)
	victim.p.kill()
	t.Logf("killed the hub leader %s", leader)
	for _, u := range second {
		publishOn(t, ag, "login", "", time.Now(), loginEvent(u, time.Now()))
	}
	for _, u := range second {
		af.ntfy.wait(u+" logged in", 90*time.Second)
		af.matrix.wait(u+" logged in", 90*time.Second)
	}
	if next := streamLeader(t, cl.JS, streams.LeaderStream, 10*time.Second); next == leader {
		t.Errorf("the killed %s still leads the hub", leader)
	}
	waitCount(t, cl.JS, streams.AlertLogStream, "pinkie.notify.phone.delivered", uint64(len(first)+len(second)), 30*time.Second)
	waitCount(t, cl.JS, streams.AlertLogStream, "pinkie.notify.ops.delivered", uint64(len(first)+len(second)), 30*time.Second)
	time.Sleep(2 * time.Second) // a second delivery from another node would arrive now
	var ntfyBodies, matrixBodies []string
	for _, m := range af.ntfy.got() {
		ntfyBodies = append(ntfyBodies, m.Message)
	}
	for _, e := range af.matrix.events() {
		matrixBodies = append(matrixBodies, e.Body)
	}
	for _, u := range append(first, second...) {
		if n := countContaining(ntfyBodies, u+" logged in"); n != 1 {
			t.Errorf("ntfy got %s's login %d times, want once", u, n)
		}
		if n := countContaining(matrixBodies, u+" logged in"); n != 1 {
			t.Errorf("matrix room got %s's login %d times, want once", u, n)
		}
	}
}

// TestClusterRoutesTLS: with --tls-cert the nodes' routes speak mutual
// TLS, each node checking the other's certificate against --cluster-ca;
// a fourth node whose certificate another CA signed is kept out and
// gives up after --cluster-wait with exit status 1.
func TestClusterRoutesTLS(t *testing.T) {
	ca, cert, key := writeTestPKI(t)
	_, otherCert, otherKey := writeTestPKI(t)
	f := newFleet(t, "goliath")
	c := newHubCluster(f, 3)
	c.startAll("--tls-cert", cert, "--tls-key", key, "--cluster-ca", ca)
	stranger := c.startNode(newHubNode(t, "hub4"), "--tls-cert", otherCert, "--tls-key", otherKey, "--cluster-ca", ca, "--cluster-wait", "8s")
	select {
	case <-stranger.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the node with a certificate of another CA did not give up:\n%s", stranger.out.String())
	}
	var ee *exec.ExitError
	if !errors_As(stranger.err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stranger.out.String(), "the cluster did not form") {
		t.Errorf("stranger node: %v, want exit 1 saying the cluster did not form:\n%s", stranger.err, stranger.out.String())
	}
	if !strings.Contains(c.nodes[0].p.out.String()+c.nodes[1].p.out.String()+c.nodes[2].p.out.String(), "TLS route handshake error") {
		t.Errorf("no node logs that it refused the stranger's route certificate")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := streams.Connect(ctx, fmt.Sprintf("tls://127.0.0.1:%d", c.nodes[0].natsPort), f.operator(), "e2e tls cluster", streams.WithTLSCA(ca))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := cl.JS.Stream(ctx, streams.HostsStream)
	if err != nil {
		t.Fatal(err)
	}
	info := st.CachedInfo()
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("HOSTS over TLS routes: %d replicas, cluster %+v; want 3 on hub1-3", info.Config.Replicas, info.Cluster)
	}
	for _, r := range append(info.Cluster.Replicas, &jetstream.PeerInfo{Name: info.Cluster.Leader}) {
		if r.Name == "hub4" {
			t.Errorf("the stranger hub4 holds a replica of HOSTS")
		}
	}
}

// TestClusterDeployRequestDuringFailover: deploy requests reach the
// agent's inbox through the clustered hub (its AGENT_<host> consumer is
// replicated), one before and one right after the hub leader is killed,
// each handled once.
func TestClusterDeployRequestDuringFailover(t *testing.T) {
	f := newFleet(t, "goliath")
	c := newHubCluster(f, 3)
	c.startAll()
	cl := c.client()
	requests := startRequestCounter(t, f, "goliath", c.leafURLs())
	requestDeploy(t, f, c.natsURLs(), "goliath")
	requests.wait(t, "the first request", 60*time.Second)
	leader := streamLeader(t, cl.JS, streams.LeaderStream, 10*time.Second)
	c.node(leader).p.kill()
	t.Logf("killed the hub leader %s", leader)
	requestDeploy(t, f, c.natsURLs(), "goliath")
	requests.wait(t, "the request sent during the failover", 60*time.Second)
	requests.once(t, 2)
}

// wantHeartbeats reads the stored heartbeats of HOSTS (stored of them)
// and checks each host's counters run without a gap or a repeat, and that
// host sent total of them.
func wantHeartbeats(t *testing.T, cl *streams.Client, host string, stored, total uint64) {
	t.Helper()
	byHost := heartbeatsByInstance(t, readAll(t, cl.JS, streams.HostsStream, "pinkie.host.*.heartbeat", stored))
	var sum uint64
	for _, n := range byHost[host] {
		sum += n
	}
	if sum != total {
		t.Errorf("%s: %d heartbeats in HOSTS, want %d", host, sum, total)
	}
}
