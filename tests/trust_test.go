package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// rogueLeaf is what an attacker with a stolen host key runs: a plain
// nats-server of their own, a leaf of the hub with the host's seed, its
// OUTBOX and HUB consumer shaped as they like, and a client port for the
// real nats CLI.
type rogueLeaf struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	url string
}

func startRogueLeaf(t *testing.T, f *fleet, host string) *rogueLeaf {
	t.Helper()
	kp, err := streams.ReadSeed(streams.HostSeedFile(f.auth, host))
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	hub, _ := url.Parse(f.leafURL())
	opts := &server.Options{
		ServerName: "rogue-" + host, Host: "127.0.0.1", Port: -1, NoSigs: true,
		JetStream: true, JetStreamDomain: events.Domain(host), StoreDir: filepath.Join(t.TempDir(), "js"),
		FeatureFlags: map[string]bool{"js_ack_fc_v2": true, "js_api_reply_v2": true},
		LeafNode: server.LeafNodeOpts{ReconnectInterval: 100 * time.Millisecond,
			Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{hub}, Nkey: string(seed)}}},
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("rogue leaf server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// An OUTBOX that captures far more than evt.>, and the hub's consumer
	// delivering everything, unfiltered.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: streams.OutboxStream,
		Subjects: []string{"evt.>", "pinkie.>", "heartbeat"}, Retention: jetstream.InterestPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdatePushConsumer(ctx, streams.OutboxStream, jetstream.ConsumerConfig{
		Durable: streams.OutboxConsumer, DeliverSubject: "_pinkie.deliver." + host + ".d",
		DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckFlowControlPolicy,
		FlowControl: true, IdleHeartbeat: time.Second, MaxAckPending: 10000, MaxDeliver: -1,
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.NumLeafNodes() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if s.NumLeafNodes() == 0 {
		t.Fatal("rogue leaf did not connect to the hub")
	}
	return &rogueLeaf{srv: s, nc: nc, js: js, url: s.ClientURL()}
}

// natsPub publishes with the real nats CLI into the rogue server.
func (r *rogueLeaf) natsPub(t *testing.T, subject string, body []byte, headers ...string) {
	t.Helper()
	args := []string{"--server", r.url, "pub", subject, string(body)}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	out, err := exec.Command(natsCLI(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nats pub %s: %v\n%s", subject, err, out)
	}
}

// rawPub publishes with a header block written byte for byte, as a client
// that does not sanitise headers would (the nats CLI and nats.go turn a
// newline inside a header value into a space).
func (r *rogueLeaf) rawPub(t *testing.T, subject, block string, body []byte) {
	t.Helper()
	u, _ := url.Parse(r.url)
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(conn)
	if _, err := rd.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n")
	fmt.Fprintf(conn, "HPUB %s %d %d\r\n%s%s\r\nPING\r\n", subject, len(block), len(block)+len(body), block, body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("raw publish to %s: %v", subject, err)
		}
		if strings.HasPrefix(line, "-ERR") {
			t.Fatalf("raw publish to %s: %s", subject, line)
		}
		if strings.HasPrefix(line, "PONG") {
			return
		}
	}
}

func encodeEvent(t *testing.T, e events.Event) []byte {
	t.Helper()
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func phaseEvent(t *testing.T, phase, sender string, p events.DeployPhase) events.Event {
	t.Helper()
	k, ok := events.Lookup("deploy." + phase)
	if !ok {
		t.Fatalf("no kind deploy.%s", phase)
	}
	e, err := events.New(k, sender, "deploy", time.Now(), p, events.WithSubject(p.Host))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// deadLetterReasons reads DEADLETTER: subject → reasons.
func deadLetterReasons(t *testing.T, js jetstream.JetStream) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, d := range readStream(t, js, streams.DeadLetterStream, "pinkie.deadletter.>") {
		var dl events.DeadLetter
		if err := json.Unmarshal(d.event.Data(), &dl); err != nil {
			t.Fatal(err)
		}
		out[d.subject] = append(out[d.subject], dl.Reason)
	}
	return out
}

// TestCompromisedLeaf replays issue 11's impersonation attacks with a real
// rogue leaf server holding goliath's stolen key and the real nats CLI.
func TestCompromisedLeaf(t *testing.T) {
	f := newFleet(t, "goliath", "koishi", "tower")
	f.startHub()
	ctx := context.Background()
	c := f.client()

	// koishi is an honest host, deploying from builder tower.
	koishi, err := streams.StartAgent(ctx, streams.AgentOptions{Host: "koishi", HubURLs: []string{f.leafURL()},
		NkeyFile: streams.HostSeedFile(f.auth, "koishi"), DataDir: t.TempDir(), ReconnectInterval: 100 * time.Millisecond, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer koishi.Close()
	out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", f.operator(), "deploy.requested", "host=koishi", "build_on=tower", "flake=path:/nonexistent")
	if code != 0 {
		t.Fatalf("deploy request: exit %d\n%s", code, out)
	}
	reqs := readStream(t, c.JS, streams.DeployStream, "pinkie.deploy.koishi.requested")
	if len(reqs) != 1 {
		t.Fatalf("DEPLOY holds %d koishi requests, want 1", len(reqs))
	}
	reqID := reqs[0].event.ID()
	waitCount(t, c.JS, streams.DeployStream, "pinkie.deploy.tower.build.ordered", 1, 30*time.Second)

	rogue := startRogueLeaf(t, f, "goliath")
	hbData := func(host string, counter uint64, opts ...events.Option) []byte {
		return encodeEvent(t, mustEvent(t, "heartbeat", host, "heartbeat", events.Heartbeat{Counter: counter, Instance: "evil"}, opts...))
	}
	src := func(host, orig string) string {
		return "Nats-Stream-Source: OUTBOX:x 1 evt.> pinkie.ingest." + host + ".> " + orig
	}
	// 1. The header: a forged Nats-Stream-Source behind a bare LF,
	// on a subject the old transform left as the sender wrote it. (This
	// nats-server strips a header line that follows a bare LF; the subject
	// stamp refuses it regardless.)
	rogue.natsPub(t, "pinkie.ingest.koishi.heartbeat", hbData("koishi", 999999), "X-A:1\n"+src("koishi", "evt.heartbeat"))
	// 2. The same with a bare-LF blank line, hiding the server's header.
	rogue.natsPub(t, "pinkie.ingest.koishi.heartbeat", hbData("koishi", 999998), "X-A:1\n"+src("koishi", "evt.heartbeat")+"\n\nX-B: 2")
	// 3. A forged activation of koishi, smuggled under koishi's subject.
	act := phaseEvent(t, "activated", "koishi", events.DeployPhase{RequestID: reqID, Host: "koishi", StorePath: "/nix/store/00000000000000000000000000000000-evil"})
	rogue.natsPub(t, "pinkie.ingest.koishi.deploy.activated", encodeEvent(t, act), "X-A:1\n"+src("koishi", "evt.deploy.activated"))
	// 4. goliath reports koishi's activation under its own name.
	act2 := phaseEvent(t, "activated", "goliath", events.DeployPhase{RequestID: reqID, Host: "koishi", StorePath: "/nix/store/00000000000000000000000000000000-evil"})
	rogue.natsPub(t, "evt.deploy.activated", encodeEvent(t, act2))
	// 5. A forged "built" from builder tower (which was ordered), smuggled.
	built := phaseEvent(t, "built", "tower", events.DeployPhase{RequestID: reqID, Host: "koishi", Builder: "tower", StorePath: "/nix/store/00000000000000000000000000000000-evil"})
	rogue.natsPub(t, "pinkie.ingest.tower.deploy.built", encodeEvent(t, built), "X-A:1\n"+src("tower", "evt.deploy.built"))
	// 6. goliath claims to have built koishi's request itself.
	built2 := phaseEvent(t, "built", "goliath", events.DeployPhase{RequestID: reqID, Host: "koishi", Builder: "goliath", StorePath: "/nix/store/00000000000000000000000000000000-evil"})
	rogue.natsPub(t, "evt.deploy.built", encodeEvent(t, built2))
	// 7. A subject outside evt.>, stamped under goliath's own name.
	rogue.natsPub(t, "heartbeat", hbData("goliath", 5))
	// 8. goliath takes an id koishi will use, hoping koishi's event is
	// then dropped as a duplicate.
	shared := "0190c5a0-0000-7000-8000-00000000beef"
	rogue.natsPub(t, "evt.heartbeat", hbData("goliath", 6, events.WithID(shared)), "Nats-Msg-Id:"+shared)
	// 9. One id, two contents from the same host.
	dup := "0190c5a0-0000-7000-8000-00000000d0d0"
	rogue.natsPub(t, "evt.heartbeat", hbData("goliath", 7, events.WithID(dup)), "Nats-Msg-Id:"+dup)
	rogue.natsPub(t, "evt.heartbeat", hbData("goliath", 8, events.WithID(dup)), "Nats-Msg-Id:"+dup+"x")
	// ... and the same event again (a redelivery): silently one copy.
	rogue.natsPub(t, "evt.heartbeat", hbData("goliath", 7, events.WithID(dup)), "Nats-Msg-Id:"+dup+"y")

	// (A second, CRLF-delimited Nats-Stream-Source that the hub's server
	// would not strip cannot be stored in a stock nats-server's OUTBOX: it
	// refuses the header on a direct publish. The check refuses two such
	// headers all the same: consumers/ingest TestCheck "two source headers".)
	// 11. A forged source header behind a bare LF that the server does not
	// strip (it stops at the first spelling of the name, inside X-A's
	// value): the client splits on the bare LF, the server does not.
	rogue.rawPub(t, "pinkie.ingest.koishi.heartbeat", "NATS/1.0\r\nX-A: 1 Nats-Stream-Source: y\n"+src("koishi", "evt.heartbeat")+"\r\n\r\n", hbData("koishi", 999996))
	// 12. A bare LF in the header block of an otherwise fine event.
	rogue.rawPub(t, "evt.heartbeat", "NATS/1.0\r\nX-A: 1\nX-B: 2\r\n\r\n", hbData("goliath", 10))
	// 1b. The exact header block, byte for byte.
	rogue.rawPub(t, "pinkie.ingest.koishi.heartbeat", "NATS/1.0\r\nX-A: 1\n"+src("koishi", "evt.heartbeat")+"\r\n\r\n", hbData("koishi", 999995))

	// Positive controls: goliath's own plain heartbeat, and koishi's
	// heartbeat under the id goliath took first.
	rogue.natsPub(t, "evt.heartbeat", hbData("goliath", 9))
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", 3, 30*time.Second)
	if err := koishi.Publish(ctx, mustEvent(t, "heartbeat", "koishi", "heartbeat", events.Heartbeat{Counter: 1, Instance: "good"}, events.WithID(shared)), ""); err != nil {
		t.Fatal(err)
	}
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.koishi.heartbeat", 1, 30*time.Second)

	for _, e := range readStream(t, c.JS, streams.HostsStream, "pinkie.host.koishi.>") {
		var hb events.Heartbeat
		_ = json.Unmarshal(e.event.Data(), &hb)
		if hb.Instance != "good" {
			t.Errorf("HOSTS holds a forged koishi event: %s %s", e.subject, e.event.Data())
		}
	}
	var counters []uint64
	for _, e := range readStream(t, c.JS, streams.HostsStream, "pinkie.host.goliath.>") {
		var hb events.Heartbeat
		_ = json.Unmarshal(e.event.Data(), &hb)
		counters = append(counters, hb.Counter)
	}
	if fmt.Sprint(counters) != "[6 7 9]" {
		t.Errorf("goliath's heartbeats in HOSTS: counters %v, want [6 7 9] (the shared id, the first of the duplicates, the control)", counters)
	}
	// The deploy record holds the request and tower's order, nothing
	// reported by goliath, and the planner ordered no activation.
	var deploySubjects []string
	for _, e := range readStream(t, c.JS, streams.DeployStream, "pinkie.deploy.>") {
		deploySubjects = append(deploySubjects, e.subject)
	}
	if got := strings.Join(deploySubjects, " "); got != "pinkie.deploy.koishi.requested pinkie.deploy.tower.build.ordered" {
		t.Errorf("DEPLOY holds %q, want only the request and tower's build order", got)
	}
	out, code = runPinkie(t, "last-deploy", "--server", f.natsURL(), "--nkey", f.operator(), "--json", "koishi")
	if strings.Contains(out, `"activated"`) || strings.Contains(out, "evil") {
		t.Errorf("last-deploy reports a forged deploy of koishi (exit %d):\n%s", code, out)
	}

	// Every forgery is a dead letter charged to goliath, with its reason.
	dead := deadLetterReasons(t, c.JS)
	for subj := range dead {
		if subj != "pinkie.deadletter.goliath" {
			t.Errorf("dead letters on %s: %q", subj, dead[subj])
		}
	}
	reasons := strings.Join(dead["pinkie.deadletter.goliath"], "\n")
	for _, want := range []string{
		"bare LF",                                    // 1, 2, 3, 5
		"only the target reports its activation",     // 4
		"the hub never ordered goliath to build",     // 6
		"outside this host's evt.>",                  // 7
		"event id already stored with other content", // 9
	} {
		if !strings.Contains(reasons, want) {
			t.Errorf("no dead letter says %q; dead letters:\n%s", want, reasons)
		}
	}
	if n := len(dead["pinkie.deadletter.goliath"]); n != 11 {
		t.Errorf("%d dead letters for goliath, want 11 (forgeries 1-7, 11, 12, 1b and the conflicting duplicate):\n%s", n, reasons)
	}
}
