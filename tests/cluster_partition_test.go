package tests

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

// TestClusterPartition cuts one node of a three-node hub off from the
// other two while an agent (given all three leaf URLs) sends heartbeats,
// and heals the cut. Every route of the isolated node, outgoing and
// incoming, goes through a TCP proxy: it routes to proxies in front of
// the others' route listeners, they route to a proxy in front of its
// own. The route listeners are on 127.0.0.2 while every connection comes
// from 127.0.0.1, so an address nats-server gossips from a connection's
// source (127.0.0.1:PORT) leads nowhere and no route goes around the
// proxies. The isolated node is made the hub leader first (it runs the
// ingest check), so the majority must take over.
//
// After healing: every heartbeat is in HOSTS exactly once with the
// agent's counters contiguous; a deploy request published through the
// majority during the partition reaches the other agent once; and the
// logs show one hub leader at a time, except that the cut-off leader may
// go on believing it leads until it notices it lost its quorum (it can
// commit nothing then).
func TestClusterPartition(t *testing.T) {
	f := newFleet(t, "goliath", "koishi")
	c := newHubCluster(f, 3)
	iso, a, b := c.nodes[2], c.nodes[0], c.nodes[1]
	const listenIP = "127.0.0.2"
	real := func(n *hubNode) string { return fmt.Sprintf("%s:%d", listenIP, n.cluPort) }
	toIso := newLinkProxy(t, real(iso))
	isoToA, isoToB := newLinkProxy(t, real(a)), newLinkProxy(t, real(b))
	proxies := []*linkProxy{toIso, isoToA, isoToB}
	route := func(addr string) string { return "nats-route://" + addr }
	routes := map[*hubNode][]string{
		a:   {route(real(b)), route(toIso.addr)},
		b:   {route(real(a)), route(toIso.addr)},
		iso: {route(isoToA.addr), route(isoToB.addr)},
	}
	args := map[*hubNode][]string{}
	for _, n := range c.nodes {
		args[n] = []string{"hub", "--data", n.data, "--auth", f.auth, "--server-name", n.name,
			"--nats", fmt.Sprintf("127.0.0.1:%d", n.natsPort), "--leaf", fmt.Sprintf("127.0.0.1:%d", n.leafPort),
			"--http", fmt.Sprintf("127.0.0.1:%d", n.httpPort), "--cluster", real(n),
			"--routes", strings.Join(routes[n], ","), "--cluster-wait", "90s"}
		n.p = startProc(t, n.name, args[n]...)
	}
	for _, n := range c.nodes {
		n.p.waitFor("hub started", 120*time.Second)
	}
	cl := c.client()
	c.describeOnFailure(streams.HostsStream)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What the hub did around the cut, node by node.
		for _, n := range c.nodes {
			var keep []string
			failedForwards := 0
			for _, l := range strings.Split(n.p.out.String(), "\n") {
				switch {
				case strings.Contains(l, "forward failed"):
					failedForwards++
				case strings.Contains(l, "leads the hub") || strings.Contains(l, "take over") || strings.Contains(l, "cluster routes") ||
					strings.Contains(l, "NO quorum") || strings.Contains(l, "level=ERROR"):
					keep = append(keep, l)
				}
			}
			t.Logf("%s (%d failed forwards to HOSTS):\n%s", n.name, failedForwards, strings.Join(keep[max(0, len(keep)-40):], "\n"))
		}
	})

	// The isolated node leads the hub. An operator may not ask a stream
	// leader to step down (the hub's roles forbid $JS.API.STREAM.LEADER.>):
	// restart the node that leads until the isolated one does.
	for try := 0; ; try++ {
		leader := streamLeader(t, cl.JS, streams.LeaderStream, 30*time.Second)
		if leader == iso.name {
			break
		}
		if try == 8 {
			t.Fatalf("%s still does not lead the hub after %d restarts of the leader", iso.name, try)
		}
		n := c.node(leader)
		n.p.stop(syscall.SIGTERM)
		for deadline := time.Now().Add(30 * time.Second); streamLeader(t, cl.JS, streams.LeaderStream, 30*time.Second) == leader; {
			if time.Now().After(deadline) {
				t.Fatalf("%s still leads the hub 30s after it stopped", leader)
			}
			time.Sleep(100 * time.Millisecond)
		}
		n.p = startProc(t, n.name, args[n]...)
		n.p.waitFor("hub started", 120*time.Second)
		n.waitHealthy(t, 60*time.Second)
	}
	iso.p.waitFor("this node leads the hub", 30*time.Second)

	// koishi takes deploy requests; goliath sends heartbeats.
	requests := startRequestCounter(t, f, "koishi", c.leafURLs())
	const total = 6000
	f.startAgent("goliath", t.TempDir(), c.leafURLs(), "--producers", "heartbeat", "--heartbeat", "3ms", "--heartbeat-limit", fmt.Sprint(total))
	waitCount(t, cl.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", 300, 60*time.Second)

	// The cut.
	before := countSubjects(t, cl.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat")
	for _, p := range proxies {
		p.cut()
	}
	cut := time.Now()
	conns := map[string]int{}
	for _, n := range c.nodes {
		conns[n.name] = agentsConnected(n)
	}
	t.Logf("cut %s off with %d heartbeats in HOSTS; agents connected per node: %v", iso.name, before, conns)
	// The cut is real: the isolated node has no route left (it logs its
	// routes when they change, every 5 s at most).
	iso.p.waitFor("connected=[] of=2", 30*time.Second)
	t.Logf("%s has no route %s after the cut", iso.name, time.Since(cut).Round(time.Millisecond))
	// The majority elects another hub leader.
	majority := func() *streams.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := streams.Connect(ctx, fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d", a.natsPort, b.natsPort), f.operator(), "e2e partition majority")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}()
	var next string
	for deadline := time.Now().Add(60 * time.Second); ; {
		if next = streamLeader(t, majority.JS, streams.LeaderStream, 30*time.Second); next != iso.name {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the majority still sees the isolated %s as hub leader 60s after the cut", iso.name)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.node(next).p.waitFor("this node leads the hub", 30*time.Second)
	t.Logf("%s leads the hub %s after the cut", next, time.Since(cut).Round(time.Millisecond))
	// A deploy request through the majority, during the partition.
	requestDeploy(t, f, fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d", a.natsPort, b.natsPort), "koishi")
	// Keep the partition until the cut-off node sees it lost its quorum
	// and stops its part: until then two nodes believe they lead.
	iso.p.waitFor("this node no longer leads the hub", 60*time.Second)
	t.Logf("%s stopped leading %s after the cut", iso.name, time.Since(cut).Round(time.Millisecond))
	during := countSubjects(t, majority.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat")
	// Not a requirement, a measure: the majority's new leader first
	// re-sources INGEST and restarts the check, and JetStream's stream
	// leaders on the cut-off node must be replaced.
	t.Logf("%d heartbeats reached HOSTS during the partition (agents on the cut-off node: %d)", during-before, conns[iso.name])

	for _, p := range proxies {
		p.restore()
	}
	healed := time.Now()
	t.Logf("healed after %s with %d heartbeats in HOSTS", healed.Sub(cut).Round(time.Millisecond), during)
	n := settle(t, cl.JS, total, 3*time.Minute)
	t.Logf("every heartbeat in HOSTS %s after healing", time.Since(healed).Round(time.Millisecond))
	if n != total {
		t.Fatalf("HOSTS holds %d heartbeats, want exactly %d", n, total)
	}
	wantHeartbeats(t, cl, "goliath", n, total)
	requests.wait(t, "the deploy request published during the partition", 90*time.Second)
	requests.once(t, 1)
	if iso.p.count("connected=[") == 0 {
		t.Errorf("%s never logged its routes", iso.name)
	}

	// One hub leader at a time, by the nodes' own logs.
	var spans []leadSpan
	for _, node := range c.nodes {
		spans = append(spans, leadSpans(t, node.name, node.p.out.String())...)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].from.Before(spans[j].from) })
	for i := range spans {
		for j := i + 1; j < len(spans); j++ {
			s, o := spans[i], spans[j]
			if s.node == o.node || !o.from.Before(s.to) {
				continue
			}
			end := s.to
			if o.to.Before(end) {
				end = o.to
			}
			overlap := end.Sub(o.from)
			t.Logf("%s led until %s while %s led from %s: %s of overlap", s.node, s.to.Format("15:04:05.000"), o.node, o.from.Format("15:04:05.000"), overlap.Round(time.Millisecond))
			// The cut-off leader cannot commit: it may hold on until
			// nats-server sees it lost its quorum. Two leaders on the
			// majority side would be a fault.
			if s.node != iso.name && o.node != iso.name {
				t.Errorf("%s and %s led the hub at the same time", s.node, o.node)
			}
			if overlap > 30*time.Second {
				t.Errorf("%s and %s (one of them the cut-off %s) led at once for %s", s.node, o.node, iso.name, overlap)
			}
		}
	}
	t.Logf("hub leadership: %v", spans)
}

// leadSpan is a time a node ran the hub's once-only work, by its log.
type leadSpan struct {
	node     string
	from, to time.Time
}

func (s leadSpan) String() string {
	return fmt.Sprintf("%s %s-%s", s.node, s.from.Format("15:04:05.000"), s.to.Format("15:04:05.000"))
}

var logTime = regexp.MustCompile(`time=(\S+)`)

// leadSpans reads when a node started and stopped leading the hub from
// its text log; a span still open ends now.
func leadSpans(t *testing.T, node, log string) []leadSpan {
	var out []leadSpan
	var open *leadSpan
	for _, l := range strings.Split(log, "\n") {
		m := logTime.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(l, "this node leads the hub"):
			if open == nil {
				open = &leadSpan{node: node, from: at}
			}
		case strings.Contains(l, "this node no longer leads the hub"):
			if open != nil {
				open.to = at
				out = append(out, *open)
				open = nil
			}
		}
	}
	if open != nil {
		open.to = time.Now()
		out = append(out, *open)
	}
	return out
}

// requestCounter is an in-process agent that counts the deploy requests
// it is handed.
type requestCounter struct {
	mu      sync.Mutex
	handled map[string]int
	got     chan struct{}
	agent   *streams.Agent
}

func startRequestCounter(t *testing.T, f *fleet, host, leafURLs string) *requestCounter {
	t.Helper()
	r := &requestCounter{handled: map[string]int{}, got: make(chan struct{}, 16)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := streams.StartAgent(ctx, streams.AgentOptions{
		Host: host, HubURLs: strings.Split(leafURLs, ","), NkeyFile: streams.HostSeedFile(f.auth, host),
		DataDir: t.TempDir(), ReconnectInterval: 100 * time.Millisecond, Log: discardLogger(),
		Services: []streams.AgentService{streams.DeployAgentConsumer{
			Durable: streams.DeployActivatorConsumer, Phases: []string{"requested"},
			Handle: func(_ context.Context, _ *streams.Agent, d streams.DeployDelivery) error {
				r.mu.Lock()
				r.handled[d.Event.ID()]++
				r.mu.Unlock()
				r.got <- struct{}{}
				return nil
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	r.agent = a
	return r
}

// wait waits for the next request handed to the agent.
func (r *requestCounter) wait(t *testing.T, what string, within time.Duration) {
	t.Helper()
	select {
	case <-r.got:
	case <-time.After(within):
		t.Fatalf("%s did not reach the agent within %s", what, within)
	}
}

// once checks, after a pause in which a second delivery would arrive,
// that the agent handled want requests, each once.
func (r *requestCounter) once(t *testing.T, want int) {
	t.Helper()
	time.Sleep(2 * time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.handled) != want {
		t.Errorf("the agent handled %d requests, want %d: %v", len(r.handled), want, r.handled)
	}
	for id, n := range r.handled {
		if n != 1 {
			t.Errorf("request %s handled %d times, want once", id, n)
		}
	}
}

// requestDeploy publishes deploy.requested for host through servers,
// trying again while an election leaves a stream without a leader, as a
// CI job would.
func requestDeploy(t *testing.T, f *fleet, servers, host string) {
	t.Helper()
	var out string
	for i := 0; i < 10; i++ {
		var code int
		if out, code = runPinkie(t, "pub", "--server", servers, "--nkey", f.operator(), "deploy.requested", "host="+host); code == 0 {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("pub deploy.requested through %s: %s", servers, out)
}
