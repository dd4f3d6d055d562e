package tests

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

// singleHub is a single hub on the data directory and ports of a
// cluster's first node, with what it stored before it was stopped.
type singleHub struct {
	c        *hubCluster
	p        *proc
	requests *requestCounter
	// streams: messages and last sequence of each stream at the stop.
	streams map[string][2]uint64
	// hosts: the event id at each HOSTS sequence read before the stop.
	hosts map[uint64]string
}

// startSingleHub starts hub1 of c as a single hub (no --cluster), a
// deploy request handler for host tails and the heartbeat agents given
// every node's leaf URL; it makes DEPLOY, ALERTS and the buckets hold
// something.
func startSingleHub(t *testing.T, c *hubCluster, agentArgs []string, agents ...string) *singleHub {
	t.Helper()
	n := c.nodes[0]
	s := &singleHub{c: c}
	s.p = startProc(t, "single-hub", "hub", "--data", n.data, "--auth", c.f.auth,
		"--nats", fmt.Sprintf("127.0.0.1:%d", n.natsPort), "--leaf", fmt.Sprintf("127.0.0.1:%d", n.leafPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", n.httpPort))
	s.p.waitFor("hub started", 30*time.Second)
	s.requests = startRequestCounter(t, c.f, "tails", c.leafURLs())
	for _, h := range agents {
		c.f.startAgent(h, t.TempDir(), c.leafURLs(), agentArgs...)
	}
	nats1 := fmt.Sprintf("nats://127.0.0.1:%d", n.natsPort)
	requestDeploy(t, c.f, nats1, "tails")
	s.requests.wait(t, "the request to the single hub", 60*time.Second)
	publishOn(t, s.requests.agent, "login", "", time.Now(), loginEvent("alice", time.Now()))
	return s
}

// stop reads what the single hub holds and stops it with SIGTERM.
func (s *singleHub) stop(t *testing.T, heartbeats uint64) {
	t.Helper()
	cl := s.c.clientOf(s.c.nodes[0])
	waitCount(t, cl.JS, streams.AlertsStream, "pinkie.alert.>", 1, 30*time.Second)
	waitCount(t, cl.JS, streams.HostsStream, "pinkie.host.*.heartbeat", heartbeats, 60*time.Second)
	s.hosts = map[uint64]string{}
	for _, se := range readAll(t, cl.JS, streams.HostsStream, ">", countSubjects(t, cl.JS, streams.HostsStream, ">")) {
		s.hosts[se.seq] = se.event.ID()
	}
	s.streams = streamStates(t, cl)
	s.p.stop(syscall.SIGTERM)
	cl.Close()
}

// streamStates reads each hub stream's messages and last sequence.
func streamStates(t *testing.T, cl *streams.Client) map[string][2]uint64 {
	t.Helper()
	out := map[string][2]uint64{}
	for _, name := range hubStreamNames() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := cl.JS.Stream(ctx, name)
		cancel()
		if err == nil {
			out[name] = [2]uint64{st.CachedInfo().State.Msgs, st.CachedInfo().State.LastSeq}
		}
	}
	return out
}

// clientOf connects the operator to node n alone.
func (c *hubCluster) clientOf(n *hubNode) *streams.Client {
	c.f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := streams.Connect(ctx, fmt.Sprintf("nats://127.0.0.1:%d", n.natsPort), c.f.operator(), "e2e upgrade test")
	if err != nil {
		c.f.t.Fatal(err)
	}
	c.f.t.Cleanup(cl.Close)
	return cl
}

// ownRoute is node n's own route: alone in --routes it makes a one-node
// cluster.
func ownRoute(n *hubNode) string { return fmt.Sprintf("nats-route://127.0.0.1:%d", n.cluPort) }

// kept checks that the upgraded node holds what the single hub held:
// every stream with at least its messages up to its last sequence, and
// every HOSTS message read before the stop at the same sequence.
func (s *singleHub) kept(t *testing.T, cl *streams.Client) {
	t.Helper()
	for name, st := range s.streams {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := cl.JS.Stream(ctx, name)
		cancel()
		if err != nil {
			t.Errorf("stream %s after the upgrade: %v", name, err)
			continue
		}
		g := got.CachedInfo().State
		if g.LastSeq < st[1] || (name != streams.IngestStream && g.Msgs < st[0]) {
			t.Errorf("stream %s after the upgrade: %d messages up to %d, before %d up to %d", name, g.Msgs, g.LastSeq, st[0], st[1])
		}
	}
	if s.streams[streams.DeployStream][0] == 0 || s.streams[streams.AlertsStream][0] == 0 || s.streams["KV_"+streams.Buckets[0]][0] == 0 {
		t.Errorf("the single hub held too little to prove anything: %v", s.streams)
	}
	var max uint64
	for seq := range s.hosts {
		max = maxU(max, seq)
	}
	byseq := map[uint64]string{}
	for _, se := range readAll(t, cl.JS, streams.HostsStream, ">", uint64(len(s.hosts))) {
		byseq[se.seq] = se.event.ID()
	}
	for seq, id := range s.hosts {
		if byseq[seq] != id {
			t.Fatalf("HOSTS seq %d holds %q after the upgrade, %q before", seq, byseq[seq], id)
		}
	}
	t.Logf("HOSTS kept its %d messages at their sequences (up to %d)", len(s.hosts), max)
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

var upgradeTook = regexp.MustCompile(`moved the single hub's streams into the cluster.* msgs=(\d+) took=(\S+) snapshots_took=(\S+)`)

// TestUpgradeSingleHubToCluster walks the README's path from one hub to
// three: a single hub with agents, a deploy request and an alert is
// stopped while the agents keep sending; restarted on its data directory
// with every node's route, it takes snapshots of its streams, and once
// the two new nodes are up it moves them into the cluster (HOSTS keeps
// its sequences, the agent's deploy consumer resumes); every stream gets
// 3 replicas, and every heartbeat is in HOSTS exactly once, in order.
func TestUpgradeSingleHubToCluster(t *testing.T) {
	f := newFleet(t, "goliath", "koishi", "tails")
	c := newHubCluster(f, 3)
	hub1 := c.nodes[0]
	const perAgent = 4000
	s := startSingleHub(t, c, []string{"--producers", "heartbeat", "--heartbeat", "3ms", "--heartbeat-limit", fmt.Sprint(perAgent)}, "goliath", "koishi")
	s.stop(t, 600)
	stopped := time.Now()

	// The old hub first, then the new nodes.
	p := c.start(0)
	p.waitFor("moved the single hub's store aside", time.Minute)
	c.start(1)
	c.start(2)
	for _, n := range c.nodes {
		n.p.waitFor("hub started", 2*time.Minute)
	}
	m := upgradeTook.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("hub1 did not say it moved the single hub's streams into the cluster:\n%s", p.out.String())
	}
	t.Logf("moving %s messages into the cluster took %s (snapshots %s); every node started %s after the single hub stopped",
		m[1], m[2], m[3], time.Since(stopped).Round(time.Millisecond))
	c.describeOnFailure(streams.HostsStream, streams.IngestStream)
	all := c.client()
	s.kept(t, all)
	requestDeploy(t, f, c.natsURLs(), "tails")
	s.requests.wait(t, "the request to the cluster", 60*time.Second)
	s.requests.once(t, 2)

	deadline := time.Now().Add(90 * time.Second)
	for {
		r, cur := natsStreamReplicas(t, c.natsURLs(), f.operator(), streams.HostsStream)
		if r == 3 && cur == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HOSTS has %d replicas, %d current; want 3 and 3", r, cur)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("HOSTS at 3 current replicas %s after the single hub stopped", time.Since(stopped).Round(time.Millisecond))
	for _, name := range hubStreamNames() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := all.JS.Stream(ctx, name)
		cancel()
		if err != nil {
			t.Errorf("stream %s: %v", name, err)
		} else if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
	got := settle(t, all.JS, 2*perAgent, 3*time.Minute)
	if got != 2*perAgent {
		t.Fatalf("HOSTS holds %d heartbeats, want exactly %d", got, 2*perAgent)
	}
	for _, h := range []string{"goliath", "koishi"} {
		wantHeartbeats(t, all, h, got, perAgent)
	}
	// The agents move when a node goes: stop hub1, where they were.
	hub1.p.stop(syscall.SIGTERM)
	requestDeploy(t, f, c.natsURLs(), "tails")
	s.requests.wait(t, "the request with hub1 stopped", 60*time.Second)
	s.requests.once(t, 3)
}

// TestUpgradeKilled: the hub is killed with SIGKILL in the middle of the
// upgrade (while it takes the snapshots, after it moved the store aside,
// after the first stream is restored); the same command started again
// finishes it and nothing is lost.
func TestUpgradeKilled(t *testing.T) {
	for _, tc := range []struct {
		at string
		// then: what the restarted hub does (and not) for it
		then, notThen string
	}{
		{at: "took a snapshot of a stream", then: "took a snapshot of a stream"},
		{at: "moved the single hub's store aside", notThen: "took a snapshot of a stream"},
		{at: "restored a stream", then: "stream restored already", notThen: "took a snapshot of a stream"},
		// In the middle of HOSTS's restore, or just after.
		{at: `restoring a stream" stream=HOSTS`, notThen: "took a snapshot of a stream"},
	} {
		at := tc.at
		t.Run(strings.ReplaceAll(at, " ", "_"), func(t *testing.T) {
			f := newFleet(t, "goliath", "tails")
			c := newHubCluster(f, 2)
			const total = 3000
			s := startSingleHub(t, c, []string{"--producers", "heartbeat", "--heartbeat", "2ms", "--heartbeat-limit", fmt.Sprint(total)}, "goliath")
			s.stop(t, 300)
			p := c.start(0)
			c.start(1)
			p.waitFor(at, 2*time.Minute)
			p.kill()
			if strings.Contains(p.out.String(), "moved the single hub's streams into the cluster") {
				t.Fatalf("the upgrade finished before the kill at %q: the test proves nothing", at)
			}
			p = c.start(0)
			p.waitFor("hub started", 2*time.Minute)
			if !upgradeTook.MatchString(p.out.String()) {
				t.Fatalf("the restarted hub did not finish the upgrade:\n%s", p.out.String())
			}
			if !strings.Contains(p.out.String(), tc.then) || (tc.notThen != "" && strings.Contains(p.out.String(), tc.notThen)) {
				t.Errorf("the restarted hub's log, want %q and not %q:\n%s", tc.then, tc.notThen, p.out.String())
			}
			c.nodes[1].p.waitFor("hub started", 2*time.Minute)
			cl := c.client()
			s.kept(t, cl)
			got := settle(t, cl.JS, total, 2*time.Minute)
			if got != total {
				t.Fatalf("HOSTS holds %d heartbeats, want exactly %d", got, total)
			}
			wantHeartbeats(t, cl, "goliath", got, total)
			requestDeploy(t, f, c.natsURLs(), "tails")
			s.requests.wait(t, "the request after the upgrade", 60*time.Second)
			s.requests.once(t, 2)
		})
	}
}

// TestUpgradeRefused: a single hub's data directory does not join a
// cluster that formed without it (two histories), nor a cluster of one
// node (nats-server forms none); each exits 2 saying what to do, and the
// undo the message gives brings the single hub back with its streams.
func TestUpgradeRefused(t *testing.T) {
	f := newFleet(t, "goliath", "tails")
	c := newHubCluster(f, 3)
	hub1 := c.nodes[0]
	s := startSingleHub(t, c, nil)
	s.stop(t, 0)

	out, code := runPinkie(t, "hub", "--data", hub1.data, "--auth", f.auth, "--server-name", hub1.name,
		"--nats", "127.0.0.1:0", "--leaf", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--cluster", fmt.Sprintf("127.0.0.1:%d", hub1.cluPort), "--routes", ownRoute(hub1))
	if code != 2 || !strings.Contains(out, "names no node but this one") {
		t.Errorf("hub as a cluster of one: exit %d, want 2 and why:\n%s", code, out)
	}

	// The new nodes first: they form the cluster and make its streams
	// (one replica each: a new cluster places three only with all nodes).
	c.start(1, "--replicas", "1")
	c.start(2, "--replicas", "1")
	c.nodes[1].p.waitFor("hub started", 90*time.Second)
	c.nodes[2].p.waitFor("hub started", 90*time.Second)
	p := c.start(0)
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("hub1 with a single hub's data did not give up on a cluster with streams of its own:\n%s", p.out.String())
	}
	out = p.out.String()
	if p.cmd.ProcessState.ExitCode() != 2 || !strings.Contains(out, "the cluster has its hub streams already") || !strings.Contains(out, "To start it as a single hub again") {
		t.Fatalf("hub1 joining a formed cluster: exit %d, want 2 and what to do:\n%s", p.cmd.ProcessState.ExitCode(), out)
	}
	// As a single hub it refuses until undone.
	single := []string{"hub", "--data", hub1.data, "--auth", f.auth,
		"--nats", fmt.Sprintf("127.0.0.1:%d", hub1.natsPort), "--leaf", fmt.Sprintf("127.0.0.1:%d", hub1.leafPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", hub1.httpPort)}
	if out, code := runPinkie(t, single...); code != 2 || !strings.Contains(out, "half way into a cluster") {
		t.Fatalf("single hub on a half-moved data dir: exit %d, want 2:\n%s", code, out)
	}
	undo := regexp.MustCompile(`To start it as a single hub again: (rm -r [^&]*&& mv \S+ \S+)`).FindStringSubmatch(out)
	if undo == nil {
		t.Fatalf("no undo command in:\n%s", out)
	}
	if o, err := exec.Command("sh", "-c", undo[1]).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", undo[1], err, o)
	}
	sp := startProc(t, "single-hub-again", single...)
	sp.waitFor("hub started", 30*time.Second)
	s.kept(t, c.clientOf(hub1))
}
