package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// startHubFor starts a hub on loopback with an auth file for hosts and
// the rest of o; it returns the hub and the auth directory.
func startHubFor(t *testing.T, hosts []string, o HubOptions) (*Hub, string) {
	t.Helper()
	auth := t.TempDir()
	if _, err := KeysInit(auth, hosts); err != nil {
		t.Fatal(err)
	}
	o.DataDir, o.AuthDir = t.TempDir(), auth
	o.NATSAddr, o.LeafAddr, o.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if o.Log == nil {
		o.Log = testLog(t)
	}
	o.IngestCheck = testIngestCheck
	h, err := StartHub(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, auth
}

// healthzOf reads the hub's /healthz (from loopback: with the details).
func healthzOf(t *testing.T, h *Hub) (int, Health, string) {
	t.Helper()
	resp, err := http.Get("http://" + h.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var hl Health
	if err := json.Unmarshal(b, &hl); err != nil {
		t.Fatalf("/healthz: %v\n%s", err, b)
	}
	return resp.StatusCode, hl, string(b)
}

// waitHealthz polls /healthz until cond holds.
func waitHealthz(t *testing.T, h *Hub, within time.Duration, what string, cond func(code int, hl Health) bool) Health {
	t.Helper()
	deadline := time.Now().Add(within)
	var body string
	for time.Now().Before(deadline) {
		code, hl, b := healthzOf(t, h)
		if cond(code, hl) {
			return hl
		}
		body = b
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/healthz did not show %s within %s; last: %s", what, within, body)
	return Health{}
}

func deployRequest(t *testing.T, host, rev string) *nats.Msg {
	t.Helper()
	k, _ := events.Lookup("deploy.requested")
	e, err := events.New(k, "tester", "cli", time.Now(), events.DeployRequested{Host: host, Revision: rev})
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(events.DeploySubject(host, "requested"))
	m.Data = b
	m.Header.Set(events.HeaderContentType, events.ContentType)
	m.Header.Set(events.HeaderMsgID, e.ID())
	return m
}

// TestHubRecreatesDeletedConsumers deletes the ingest consumer and a
// host's AGENT_<host> consumer (as `nats consumer rm` would, here with the
// hub's own connection, which may always), and checks that the hub
// recreates both, says so loudly, shows it on /healthz, and that events
// and deploy requests sent afterwards still arrive, none twice.
func TestHubRecreatesDeletedConsumers(t *testing.T) {
	logs := &lockedBuffer{}
	h, auth := startHubFor(t, []string{"goliath"}, HubOptions{
		Log:      slog.New(slog.NewTextHandler(io.MultiWriter(logs, testLogWriter()), nil)),
		Services: []HubService{DeployHubService{Tick: 100 * time.Millisecond}},
		// The periodic check is only the backstop; the advisory must
		// make the hub act well before it.
		Health: HealthOptions{ConsumerCheck: time.Minute},
	})
	got := make(chan string, 16)
	ctx := context.Background()
	a, err := StartAgent(ctx, AgentOptions{
		Host: "goliath", HubURLs: []string{h.LeafURL()}, NkeyFile: HostSeedFile(auth, "goliath"), DataDir: t.TempDir(),
		ReconnectInterval: 100 * time.Millisecond, Log: testLog(t),
		Services: []AgentService{DeployAgentConsumer{Durable: DeployActivatorConsumer, Phases: []string{"requested"},
			Handle: func(_ context.Context, _ *Agent, d DeployDelivery) error {
				got <- d.Data.(*events.DeployRequested).Revision
				return nil
			}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	js := h.JetStream()
	publish := func(from, to uint64) {
		for i := from; i <= to; i++ {
			if err := a.Publish(ctx, heartbeat(t, "goliath", i), ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	request := func(rev string) {
		t.Helper()
		if _, err := js.PublishMsg(ctx, deployRequest(t, "goliath", rev)); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-got:
			if r != rev {
				t.Fatalf("the agent got request %q, want %q", r, rev)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("deploy request %s did not reach the agent within 30s\nhub log:\n%s", rev, logs.String())
		}
	}
	publish(1, 10)
	waitMsgs(t, js, HostsStream, "pinkie.host.goliath.heartbeat", 10, 20*time.Second)
	request("r1")

	for _, c := range []struct{ stream, name string }{{IngestStream, IngestConsumer}, {DeployStream, "AGENT_goliath"}} {
		if err := js.DeleteConsumer(ctx, c.stream, c.name); err != nil {
			t.Fatalf("delete %s %s: %v", c.stream, c.name, err)
		}
	}
	deleted := time.Now()
	hl := waitHealthz(t, h, 10*time.Second, "two consumers recreated", func(code int, hl Health) bool {
		return hl.ConsumersRecreated == 2
	})
	t.Logf("both consumers recreated %s after their deletion", time.Since(deleted).Round(time.Millisecond))
	var recreated []string
	for _, r := range hl.Recreated {
		recreated = append(recreated, r.Stream+"/"+r.Consumer)
	}
	sort.Strings(recreated)
	if want := "DEPLOY/AGENT_goliath INGEST/ingest"; strings.Join(recreated, " ") != want {
		t.Errorf("/healthz lists recreated %v, want %s", recreated, want)
	}
	for _, c := range []string{"consumer=ingest", "consumer=AGENT_goliath"} {
		for _, msg := range []string{"a consumer the hub owns is missing", "recreated a consumer the hub owns"} {
			if !strings.Contains(grepLog(logs.String(), msg), c) || !strings.Contains(grepLog(logs.String(), msg), "level=ERROR") {
				t.Errorf("the hub did not log %q at ERROR for %s:\n%s", msg, c, logs.String())
			}
		}
	}
	for _, c := range []struct{ stream, name string }{{IngestStream, IngestConsumer}, {DeployStream, "AGENT_goliath"}} {
		if _, err := consumerInfo(ctx, js, c.stream, c.name); err != nil {
			t.Errorf("%s %s after recreation: %v", c.stream, c.name, err)
		}
	}

	publish(11, 20)
	waitMsgs(t, js, HostsStream, "pinkie.host.goliath.heartbeat", 20, 20*time.Second)
	t.Logf("heartbeats published after the deletion are in HOSTS %s after it", time.Since(deleted).Round(time.Millisecond))
	request("r2")
	t.Logf("the deploy request published after the deletion reached the agent %s after it", time.Since(deleted).Round(time.Millisecond))
	select {
	case r := <-got:
		t.Errorf("the agent got request %q again", r)
	case <-time.After(time.Second):
	}
	if code, hl, body := healthzOf(t, h); code != 200 || !hl.OK {
		t.Errorf("/healthz after the recreation = %d %s", code, body)
	}
}

// grepLog returns the log lines holding s.
func grepLog(log, s string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestHealthzIngestLag stops the ingest check's progress for real (its
// consumer paused, as the JetStream API allows) and checks that /healthz
// turns 503 naming the lag in messages and in seconds, then 200 once the
// check has caught up.
func TestHealthzIngestLag(t *testing.T) {
	h, auth := startHubFor(t, []string{"goliath"}, HubOptions{Health: HealthOptions{IngestLagMessages: 5, IngestLagAge: time.Second}})
	a := startTestAgent(t, "goliath", h.LeafURL(), HostSeedFile(auth, "goliath"))
	defer a.Close()
	ctx := context.Background()
	js := h.JetStream()
	if err := a.Publish(ctx, heartbeat(t, "goliath", 1), ""); err != nil {
		t.Fatal(err)
	}
	waitMsgs(t, js, HostsStream, "pinkie.host.goliath.heartbeat", 1, 20*time.Second)
	if code, _, body := healthzOf(t, h); code != 200 {
		t.Fatalf("/healthz before = %d %s", code, body)
	}
	if _, err := js.PauseConsumer(ctx, IngestStream, IngestConsumer, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(2); i <= 21; i++ {
		if err := a.Publish(ctx, heartbeat(t, "goliath", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	hl := waitHealthz(t, h, 20*time.Second, "the lag in messages and seconds", func(code int, hl Health) bool {
		return code == 503 && len(hl.Problems) == 2
	})
	if !strings.Contains(hl.Problems[0], "ingest lags: 20 messages not yet checked (threshold 5)") ||
		!strings.Contains(hl.Problems[1], "ingest lags: the oldest unchecked message arrived") || hl.Ingest == nil || hl.Ingest.Messages != 20 {
		t.Errorf("/healthz problems %q, ingest %+v", hl.Problems, hl.Ingest)
	}
	t.Logf("%s lag seen: %q", time.Now().Format("05.000"), hl.Problems)
	if _, err := js.ResumeConsumer(ctx, IngestStream, IngestConsumer); err != nil {
		t.Fatal(err)
	}
	waitHealthz(t, h, 20*time.Second, "ok once caught up", func(code int, hl Health) bool {
		return code == 200 && hl.OK && hl.Ingest != nil && hl.Ingest.Messages == 0
	})
	t.Logf("%s caught up", time.Now().Format("05.000"))
	waitMsgs(t, js, HostsStream, "pinkie.host.goliath.heartbeat", 21, 20*time.Second)
}

// failingService stops at once, every time.
type failingService struct{}

func (failingService) Name() string { return "broken" }
func (failingService) Run(context.Context, *Hub) error {
	return errors.New("cannot read its bucket")
}

// TestHealthzServiceLoopAndMissingStream: a hub service that keeps
// failing, and a consumer that cannot be recreated because its stream is
// gone, both make /healthz 503 with the reason.
func TestHealthzServiceLoopAndMissingStream(t *testing.T) {
	h, _ := startHubFor(t, []string{"goliath"}, HubOptions{
		Services: []HubService{failingService{}, DeployHubService{Tick: 100 * time.Millisecond}},
		Health:   HealthOptions{ConsumerCheck: 200 * time.Millisecond},
	})
	hl := waitHealthz(t, h, 20*time.Second, "the service loop", func(code int, hl Health) bool {
		return code == 503 && len(hl.Problems) > 0
	})
	if want := "hub service broken is restarting in a loop (3 stops in 5m0s; last error: cannot read its bucket)"; fmt.Sprint(hl.Problems) != "["+want+"]" {
		t.Errorf("/healthz problems %q, want [%s]", hl.Problems, want)
	}
	ctx := context.Background()
	waitFor := time.Now().Add(10 * time.Second)
	for {
		if _, err := consumerInfo(ctx, h.JetStream(), DeployStream, "AGENT_goliath"); err == nil {
			break
		} else if time.Now().After(waitFor) {
			t.Fatalf("AGENT_goliath: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := h.JetStream().DeleteStream(ctx, DeployStream); err != nil {
		t.Fatal(err)
	}
	hl = waitHealthz(t, h, 10*time.Second, "the missing consumer", func(code int, hl Health) bool {
		return code == 503 && strings.Contains(strings.Join(hl.Problems, "\n"), "1 deploy consumer(s) the hub owns are missing")
	})
	if d := strings.Join(hl.Details, "\n"); !strings.Contains(d, "consumer AGENT_goliath on DEPLOY is missing; recreating it failed") {
		t.Errorf("/healthz details %q", hl.Details)
	}
	if _, err := h.JetStream().Stream(ctx, DeployStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("DEPLOY came back (%v): the test expects it to stay gone", err)
	}
}

// TestIngestConsumerDeletedUnderLoad deletes the ingest consumer while the
// check is busy with a burst: the recreated one must go on from where the
// old one's forwards were stored, so that every event arrives in HOSTS,
// none skipped, none twice.
func TestIngestConsumerDeletedUnderLoad(t *testing.T) {
	const n = 5000
	h, auth := startHubFor(t, []string{"goliath"}, HubOptions{})
	a := startTestAgent(t, "goliath", h.LeafURL(), HostSeedFile(auth, "goliath"))
	defer a.Close()
	ctx := context.Background()
	js := h.JetStream()
	// Delete the consumer as the 200th event is forwarded (the check
	// publishes to HOSTS, so a subscriber at the hub sees it).
	seen := make(chan struct{})
	count := 0
	sub, err := h.Conn().Subscribe("pinkie.host.goliath.heartbeat", func(*nats.Msg) {
		if count++; count == 200 {
			close(seen)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for i := uint64(1); i <= n; i++ {
		if _, err := a.PublishAsync(heartbeat(t, "goliath", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-seen:
	case <-time.After(30 * time.Second):
		t.Fatal("no 200 events forwarded within 30s")
	}
	if err := js.DeleteConsumer(ctx, IngestStream, IngestConsumer); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, HostsStream)
	if got := st.CachedInfo().State.Msgs; got >= n {
		t.Fatalf("all %d events were in HOSTS before the deletion: the test did not delete mid-burst", got)
	} else {
		t.Logf("deleted the ingest consumer with %d of %d events in HOSTS", got, n)
	}
	select {
	case <-a.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("the OUTBOX did not take the burst")
	}
	waitMsgs(t, js, HostsStream, "pinkie.host.goliath.heartbeat", n, 60*time.Second)
	waitHealthz(t, h, 10*time.Second, "one recreation, ok", func(code int, hl Health) bool {
		return code == 200 && hl.ConsumersRecreated == 1
	})
	time.Sleep(500 * time.Millisecond) // a doubled event would arrive now
	waitMsgs(t, js, HostsStream, "pinkie.host.goliath.heartbeat", n, time.Second)
}
