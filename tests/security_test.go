package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

func mustEvent(t *testing.T, kind, host, producer string, data any, opts ...events.Option) events.Event {
	t.Helper()
	k, ok := events.Lookup(kind)
	if !ok {
		t.Fatalf("no kind %s", kind)
	}
	e, err := events.New(k, host, producer, time.Now(), data, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func encodeMsg(t *testing.T, subject string, e events.Event) *nats.Msg {
	t.Helper()
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(subject)
	m.Data = b
	m.Header.Set(events.HeaderContentType, events.ContentType)
	m.Header.Set(events.HeaderMsgID, e.ID())
	return m
}

// TestSpoofing runs goliath's agent in the test process (the same code as
// 'pinkie agent', with goliath's key) and has it try to pass as koishi or
// as an operator. None of it may reach the hub's streams as such.
func TestSpoofing(t *testing.T) {
	f := newFleet(t, "goliath", "koishi")
	f.startHub()
	ctx := context.Background()
	// The agent starts cut off from the hub, so it can rewire its own
	// store before the hub first sources it, as a rogue agent would.
	proxy := newLinkProxy(t, fmt.Sprintf("127.0.0.1:%d", f.leafPort))
	proxy.cut()
	a, err := streams.StartAgent(ctx, streams.AgentOptions{
		Host: "goliath", HubURLs: []string{proxy.url()}, NkeyFile: streams.HostSeedFile(f.auth, "goliath"),
		DataDir: t.TempDir(), ReconnectInterval: 100 * time.Millisecond, Log: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	js := a.JetStream()
	// 1. An event in goliath's own OUTBOX that claims to come from koishi.
	if err := a.Publish(ctx, mustEvent(t, "heartbeat", "koishi", "heartbeat", events.Heartbeat{Counter: 2, Instance: "evil"}), ""); err != nil {
		t.Fatal(err)
	}
	// 2. The agent rewires its own store: OUTBOX also captures a koishi
	// ingest subject, and the hub's consumer delivers everything unfiltered.
	st, err := js.Stream(ctx, streams.OutboxStream)
	if err != nil {
		t.Fatal(err)
	}
	sc := st.CachedInfo().Config
	sc.Subjects = append(sc.Subjects, "pinkie.ingest.koishi.>")
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	cons, err := js.PushConsumer(ctx, streams.OutboxStream, streams.OutboxConsumer)
	if err != nil {
		t.Fatal(err)
	}
	cc := cons.CachedInfo().Config
	cc.FilterSubject = ">" // everything, unfiltered (an empty filter stalls the hub's source, hurting only the agent itself)
	if _, err := js.UpdatePushConsumer(ctx, streams.OutboxStream, cc); err != nil {
		t.Fatal(err)
	}
	smuggled := mustEvent(t, "heartbeat", "koishi", "heartbeat", events.Heartbeat{Counter: 3, Instance: "evil"})
	if _, err := js.PublishMsg(ctx, encodeMsg(t, "pinkie.ingest.koishi.heartbeat", smuggled)); err != nil {
		t.Fatal(err)
	}
	proxy.restore()
	deadline := time.Now().Add(20 * time.Second)
	for !a.Connected() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !a.Connected() {
		t.Fatal("agent did not connect")
	}
	nc, err := nats.Connect("", nats.InProcessServer(a.Server()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := f.client()
	// The hub must have interest in these subjects, so the leaf would
	// forward them if permissions allowed: subscribe at the hub.
	seen := make(chan *nats.Msg, 16)
	for _, s := range []string{"pinkie.host.koishi.>", "pinkie.deploy.>"} {
		sub, err := c.Conn.ChanSubscribe(s, seen)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	_ = c.Conn.Flush()
	time.Sleep(500 * time.Millisecond) // let interest propagate to the leaf

	// 3. Core publishes on another host's subject and on a deploy request.
	koishiHB := mustEvent(t, "heartbeat", "koishi", "heartbeat", events.Heartbeat{Counter: 1, Instance: "evil"})
	if err := nc.PublishMsg(encodeMsg(t, "pinkie.host.koishi.heartbeat", koishiHB)); err != nil {
		t.Fatal(err)
	}
	req := mustEvent(t, "deploy.requested", "goliath", "cli", events.DeployRequested{Host: "goliath"})
	if err := nc.PublishMsg(encodeMsg(t, "pinkie.deploy.goliath.requested", req)); err != nil {
		t.Fatal(err)
	}
	// 4. JetStream publishes into the hub's domain from the agent.
	hubJS, err := jetstream.NewWithDomain(nc, events.HubDomain)
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := hubJS.PublishMsg(pctx, encodeMsg(t, "pinkie.deploy.goliath.requested", req)); err == nil {
		t.Error("agent's JetStream publish of a deploy request into the hub domain was acknowledged")
	}
	cancel()
	// Positive control, sent last: a genuine goliath heartbeat arrives, so
	// everything goliath sent before it has been decided on.
	if err := a.Publish(ctx, mustEvent(t, "heartbeat", "goliath", "heartbeat", events.Heartbeat{Counter: 1, Instance: "good"}), ""); err != nil {
		t.Fatal(err)
	}
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", 1, 30*time.Second)

	if n := countSubjects(t, c.JS, streams.HostsStream, "pinkie.host.koishi.>"); n != 0 {
		t.Errorf("HOSTS holds %d koishi events sent by goliath", n)
	}
	if n := countSubjects(t, c.JS, streams.DeployStream, "pinkie.deploy.>"); n != 0 {
		t.Errorf("DEPLOY holds %d messages sent by an agent", n)
	}
	select {
	case m := <-seen:
		t.Errorf("a subscriber at the hub received %s from goliath's agent", m.Subject)
	default:
	}
	dead := readStream(t, c.JS, streams.DeadLetterStream, "pinkie.deadletter.>")
	var reasons []string
	for _, d := range dead {
		if d.subject != "pinkie.deadletter.goliath" {
			t.Errorf("dead letter on %s, want pinkie.deadletter.goliath", d.subject)
		}
		var dl events.DeadLetter
		if err := json.Unmarshal(d.event.Data(), &dl); err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, dl.Reason)
	}
	joined := strings.Join(reasons, "\n")
	if len(dead) != 2 || !strings.Contains(joined, "source host koishi differs from the host that sent it (goliath)") ||
		!strings.Contains(joined, "outside this host's evt.>") {
		t.Errorf("dead letters: want the koishi-source event and the smuggled subject, got %d:\n%s", len(dead), joined)
	}
	// The hub counts them.
	metrics := httpGet(t, f.httpURL()+"/metrics")
	if !strings.Contains(metrics, `pinkie_dead_letters_total{host="goliath"} 2`) {
		t.Errorf("/metrics does not count the 2 dead letters:\n%s", grepLines(metrics, "pinkie_"))
	}
	if !strings.Contains(metrics, `pinkie_events_ingested_total{host="goliath",kind="heartbeat"} 1`) {
		t.Errorf("/metrics does not count the ingested heartbeat:\n%s", grepLines(metrics, "pinkie_"))
	}
}

// TestKeysAndRoles checks what each key may do against a running hub.
func TestKeysAndRoles(t *testing.T) {
	f := newFleet(t, "goliath")
	f.startHub()
	ctx := context.Background()
	// No key: refused.
	if _, err := streams.Connect(ctx, f.natsURL(), "", "anon"); err == nil || !errors.Is(err, streams.ErrConnect) {
		t.Errorf("unauthenticated client connected: %v", err)
	}
	// A host key is good for leaf connections only.
	if c, err := streams.Connect(ctx, f.natsURL(), streams.HostSeedFile(f.auth, "goliath"), "host as client"); err == nil {
		c.Close()
		t.Error("a host key connected as a client")
	}
	// The reader may read but not request deploys.
	out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", streams.ReaderSeedFile(f.auth), "--timeout", "3s", "deploy.requested", "host=goliath")
	if code == 0 {
		t.Errorf("reader published a deploy request:\n%s", out)
	}
	c := f.client()
	if n := countSubjects(t, c.JS, streams.DeployStream, ">"); n != 0 {
		t.Errorf("DEPLOY holds %d messages after the reader's attempt", n)
	}
	rd, err := streams.Connect(ctx, f.natsURL(), streams.ReaderSeedFile(f.auth), "reader")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	names := rd.JS.StreamNames(ctx)
	var got []string
	for n := range names.Name() {
		got = append(got, n)
	}
	if names.Err() != nil || len(got) < 5 {
		t.Errorf("reader cannot list streams: %v %v", got, names.Err())
	}
	if err := rd.JS.DeleteStream(ctx, streams.HostsStream); err == nil {
		t.Error("reader deleted a stream")
	}
	// The operator may.
	out, code = runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", f.operator(), "deploy.requested", "host=goliath", "--json")
	if code != 0 {
		t.Fatalf("operator pub failed (%d):\n%s", code, out)
	}
	var res struct {
		ID     string `json:"id"`
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Stream != "DEPLOY" || res.Seq != 1 || res.ID == "" {
		t.Errorf("pub --json printed %q (%v)", out, err)
	}
	// keys add-host: the running hub accepts the new host within seconds.
	if out, code := runPinkie(t, "keys", "add-host", f.auth, "newhost"); code != 0 {
		t.Fatalf("keys add-host: %s", out)
	}
	ag := f.startAgent("newhost", t.TempDir(), "", "--producers", "heartbeat", "--heartbeat", "100ms", "--heartbeat-limit", "3")
	ag.waitFor("hub connected", 30*time.Second)
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.newhost.heartbeat", 3, 30*time.Second)
}

func TestNoAuthOnlyOnLoopback(t *testing.T) {
	out, code := runPinkie(t, "hub", "--data", t.TempDir(), "--nats", "0.0.0.0:0", "--leaf", "127.0.0.1:0", "--http", "127.0.0.1:0")
	if code != 2 || !strings.Contains(out, "refusing to listen beyond loopback without --auth") {
		t.Errorf("hub without auth on 0.0.0.0: exit %d\n%s", code, out)
	}
}

// runPinkie runs the pinkie binary to completion and returns its combined
// output and exit code.
func runPinkie(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(pinkieBin, args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run pinkie %v: %v", args, err)
	}
	return string(out), 0
}

// natsCLI finds the real nats CLI, or skips the test saying why.
func natsCLI(t *testing.T) string {
	t.Helper()
	return goInstalled(t, "nats", "github.com/nats-io/natscli/nats@v0.5.0")
}

// goInstalled finds a tool scripts/test installs with go install (on PATH
// or in GOPATH/bin), or skips the test saying how to install it.
func goInstalled(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Skipf("%s is not installed (scripts/test installs it: go install %s)", name, pkg)
	return ""
}
