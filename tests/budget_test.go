package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// TestFloodingHost is issue 11's attack 4: one host floods valid events at
// full speed into its OUTBOX while a second host's heartbeats and an
// operator's deploy request keep flowing. The hub (a real process with a
// small store and low budgets) throttles the flooder at its source and
// alerts on it; its store never passes its limits; and once the flood
// stops every event the flooder's OUTBOX accepted arrives in HOSTS, once,
// in order.
func TestFloodingHost(t *testing.T) {
	const maxStore = 64 << 20
	f := newFleet(t, "flood", "quiet")
	hub := f.startHub("--max-store", fmt.Sprint(maxStore), "--host-rate", "1000,1048576", "--host-burst", "5000,4194304", "--host-cooldown", "200ms")
	f.startAgent("quiet", t.TempDir(), "", "--producers", "heartbeat", "--heartbeat", "200ms")
	ctx := context.Background()
	// The flooder runs in the test process (the same code as 'pinkie agent',
	// with its own key), so the test can publish into its OUTBOX at full
	// speed. Its OUTBOX is small, so the flood fills it within seconds.
	fl, err := streams.StartAgent(ctx, streams.AgentOptions{
		Host: "flood", HubURLs: []string{f.leafURL()}, NkeyFile: streams.HostSeedFile(f.auth, "flood"),
		DataDir: t.TempDir(), OutboxMaxBytes: 8 << 20, ReconnectInterval: 100 * time.Millisecond, Log: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	c := f.client()
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.quiet.heartbeat", 1, 30*time.Second)
	if err := fl.Publish(ctx, mustEvent(t, "heartbeat", "flood", "heartbeat", events.Heartbeat{Counter: 1, Instance: "flood"}), ""); err != nil {
		t.Fatal(err)
	}
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.flood.heartbeat", 1, 30*time.Second)

	// The flood: heartbeats with rising counters, as fast as the OUTBOX
	// takes them, for 15 s or 200k events.
	type sent struct {
		id     string
		future jetstream.PubAckFuture
	}
	var all []sent
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		k, _ := events.Lookup("heartbeat")
		end := time.Now().Add(15 * time.Second)
		for i := uint64(2); i < 200000 && time.Now().Before(end); i++ {
			e, err := events.New(k, "flood", "heartbeat", time.Now(), events.Heartbeat{Counter: i, Instance: "flood", AgentVersion: strings.Repeat("x", 120)})
			if err != nil {
				t.Error(err)
				return
			}
			for {
				fut, err := fl.PublishAsync(e, "")
				if err == nil {
					all = append(all, sent{e.ID(), fut})
					break
				}
				if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
					t.Errorf("publish into the OUTBOX: %v", err)
					return
				}
				<-fl.PublishAsyncComplete()
			}
		}
		<-fl.PublishAsyncComplete()
	}()

	// While it floods: the quiet host's heartbeats keep arriving, the store
	// stays within its limits, and an operator's deploy request goes through.
	hostsSt, err := c.JS.Stream(ctx, streams.HostsStream)
	if err != nil {
		t.Fatal(err)
	}
	var maxLatency time.Duration
	deployed := false
	seenThrottled := false
	floodStart := time.Now()
	checkStore := func() {
		t.Helper()
		for _, name := range []string{streams.IngestStream, streams.HostsStream, streams.DeadLetterStream} {
			st, err := c.JS.Stream(ctx, name)
			if err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			info := st.CachedInfo()
			if info.Config.MaxBytes <= 0 || info.State.Bytes > uint64(info.Config.MaxBytes) {
				t.Errorf("%s holds %d bytes, limit %d", name, info.State.Bytes, info.Config.MaxBytes)
			}
		}
		ai, err := c.JS.AccountInfo(ctx)
		if err != nil {
			t.Fatalf("account info: %v", err)
		}
		if ai.Store > maxStore {
			t.Errorf("the store holds %d bytes, over --max-store %d", ai.Store, maxStore)
		}
	}
flood:
	for {
		select {
		case <-floodDone:
			break flood
		case <-time.After(250 * time.Millisecond):
		}
		m, err := hostsSt.GetLastMsgForSubject(ctx, "pinkie.host.quiet.heartbeat")
		if err != nil {
			t.Fatalf("quiet's last heartbeat: %v", err)
		}
		e, _, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if lat := time.Since(e.Time()); lat > maxLatency {
			maxLatency = lat
		}
		checkStore()
		if !deployed && time.Since(floodStart) > 3*time.Second {
			out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", f.operator(), "--timeout", "5s", "deploy.requested", "host=quiet", "--json")
			if code != 0 {
				t.Errorf("operator's deploy request during the flood failed (%d):\n%s", code, out)
			}
			deployed = true
		}
		if !seenThrottled && strings.Contains(httpGet(t, f.httpURL()+"/metrics"), `pinkie_ingest_throttled{host="flood"} 1`) {
			seenThrottled = true
		}
	}
	t.Logf("quiet's heartbeats: at most %s old during the flood", maxLatency.Round(time.Millisecond))
	if maxLatency > 5*time.Second {
		t.Errorf("quiet's heartbeats were up to %s late during the flood, want at most 5s", maxLatency)
	}
	if n := countSubjects(t, c.JS, streams.DeployStream, "pinkie.deploy.quiet.requested"); n != 1 {
		t.Errorf("DEPLOY holds %d requests for quiet, want 1", n)
	}
	if !seenThrottled {
		t.Error(`/metrics never showed pinkie_ingest_throttled{host="flood"} 1 during the flood`)
	}

	// What the flooder's OUTBOX accepted, and what it refused when full.
	accepted := map[string]bool{}
	refused := 0
	for _, s := range all {
		select {
		case <-s.future.Ok():
			accepted[s.id] = true
		case <-s.future.Err():
			refused++
		case <-time.After(10 * time.Second):
			t.Fatal("a publish into the OUTBOX was never settled")
		}
	}
	t.Logf("flood: %d events offered in %s, %d accepted by the OUTBOX, %d refused (full)", len(all), time.Since(floodStart).Round(time.Millisecond), len(accepted), refused)
	if refused == 0 {
		t.Error("the flooder's OUTBOX never filled: the flood was not throttled at its source")
	}

	// After the flood: every accepted event arrives, once, in order.
	deadline := time.Now().Add(2 * time.Minute)
	var got []storedEvent
	for {
		got = readStream(t, c.JS, streams.HostsStream, "pinkie.host.flood.heartbeat")
		if len(got) >= len(accepted)+1 || time.Now().After(deadline) {
			break
		}
		checkStore()
		time.Sleep(500 * time.Millisecond)
	}
	seen := map[string]bool{}
	var last uint64
	for _, g := range got {
		id := g.event.ID()
		if seen[id] {
			t.Errorf("event %s is in HOSTS twice", id)
		}
		seen[id] = true
		var hb events.Heartbeat
		if err := json.Unmarshal(g.event.Data(), &hb); err != nil {
			t.Fatal(err)
		}
		if hb.Counter <= last {
			t.Errorf("flood heartbeat %d after %d: order lost", hb.Counter, last)
		}
		last = hb.Counter
	}
	missing := 0
	for id := range accepted {
		if !seen[id] {
			missing++
		}
	}
	if missing > 0 || len(got) != len(accepted)+1 {
		ob := "OUTBOX: ?"
		if st, err := fl.JetStream().Stream(ctx, streams.OutboxStream); err == nil {
			ob = fmt.Sprintf("OUTBOX: %+v", st.CachedInfo().State)
		}
		if cons, err := fl.JetStream().PushConsumer(ctx, streams.OutboxStream, streams.OutboxConsumer); err == nil {
			ci := cons.CachedInfo()
			ob += fmt.Sprintf("\nHUB consumer: delivered=%+v ackfloor=%+v pending=%d ackpending=%d redelivered=%d", ci.Delivered, ci.AckFloor, ci.NumPending, ci.NumAckPending, ci.NumRedelivered)
		}
		t.Errorf("HOSTS holds %d flood heartbeats, want the %d the OUTBOX accepted plus the first; %d missing\n%s\n%s", len(got), len(accepted), missing, diagnose(c.JS), ob)
	}
	checkStore()

	// The throttle was alerted on and, the flood over, resolved.
	budget := readStream(t, c.JS, streams.HostsStream, "pinkie.host.flood.ingest.budget")
	pauses := 0
	for _, b := range budget {
		var d events.IngestBudget
		if err := json.Unmarshal(b.event.Data(), &d); err != nil {
			t.Fatal(err)
		}
		if d.Throttled {
			pauses++
		}
	}
	if pauses == 0 {
		t.Error("HOSTS holds no ingest.budget event saying flood is throttled")
	}
	if n := hub.count("host over its ingest budget"); n != pauses {
		t.Errorf("the hub logged %d pauses, published %d", n, pauses)
	}
	t.Logf("flood paused %d times", pauses)
	// Every episode fired the alert once and resolved it once.
	waitFor(t, 60*time.Second, func() bool {
		alerts := readStream(t, c.JS, streams.AlertsStream, "pinkie.alert.flood.ingest.throttled")
		firing, resolved := 0, 0
		for _, a := range alerts {
			switch a.kind.Name {
			case "alert.firing":
				firing++
			case "alert.resolved":
				resolved++
			}
		}
		return firing > 0 && firing == resolved && alerts[len(alerts)-1].kind.Name == "alert.resolved"
	})
	metrics := httpGet(t, f.httpURL()+"/metrics")
	for _, want := range []string{`pinkie_ingest_throttled{host="flood"} 0`, `pinkie_ingest_throttled{host="quiet"} 0`, `pinkie_ingest_pauses_total{host="quiet"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(metrics, "pinkie_ingest"))
		}
	}
	if n := countSubjects(t, c.JS, streams.HostsStream, "pinkie.host.quiet.ingest.budget"); n != 0 {
		t.Errorf("quiet was throttled %d times", n)
	}
	if n := hub.count("level=ERROR"); n > 0 {
		t.Errorf("the hub logged %d errors:\n%s", n, grepLines(hub.out.String(), "level=ERROR"))
	}
	if t.Failed() || os.Getenv("PINKIE_BUDGET_LOG") != "" {
		t.Logf("hub warnings:\n%s", grepLines(hub.out.String(), "level=WARN"))
	}
}
