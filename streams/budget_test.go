package streams

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/consumers/ingest"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func kinds(cs []budgetChange) (out []string) {
	names := map[budgetChangeKind]string{budgetPaused: "paused", budgetResumed: "resumed", budgetWithin: "within"}
	for _, c := range cs {
		out = append(out, c.host+" "+names[c.kind])
	}
	return out
}

// TestBudgetBucket drives one host's budget through an episode with an
// injected clock: a burst within budget, running dry (paused), the
// cool-down and refill (resumed), running dry again (a longer pause), and
// quiet until within budget again.
func TestBudgetBucket(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	b := newBudgets(HostBudget{EventsPerSec: 10, BytesPerSec: 1 << 20, BurstEvents: 100, BurstBytes: 64 << 20, Cooldown: 5 * time.Second}, clk.now)
	send := func(host string, n, size int) {
		for range n {
			b.charge(host, size)
		}
	}
	// The whole burst at once: still within budget.
	send("goliath", 100, 100)
	if got := b.step(); len(got) != 0 || !b.sourced("goliath") {
		t.Fatalf("a burst within budget: changes %v, sourced %v", kinds(got), b.sourced("goliath"))
	}
	// One more: dry, paused at once (the wake channel says so).
	send("goliath", 1, 100)
	select {
	case <-b.wake:
	default:
		t.Error("running dry did not wake the controller")
	}
	if b.sourced("goliath") {
		t.Error("a dry host is still sourced")
	}
	// Events already in INGEST keep being charged while paused: debt.
	send("goliath", 19, 100)
	got := b.step()
	if diff := cmp.Diff([]string{"goliath paused"}, kinds(got)); diff != "" {
		t.Fatalf("changes (-want +got):\n%s", diff)
	}
	if p := got[0].b; !p.throttled || p.pauses != 1 || !p.resumeAfter.Equal(clk.t.Add(5*time.Second)) || p.reason != "sent more than 10 events/s (burst 100)" {
		t.Errorf("first pause: %+v", p)
	}
	// Cool-down over but the debt (-20) not yet paid back to 10 % of the
	// burst: 3 s refill 30 events, tokens 10: resumes at 5 s.
	clk.advance(3 * time.Second)
	if got := b.step(); len(got) != 0 {
		t.Errorf("before the cool-down: %v", kinds(got))
	}
	clk.advance(2 * time.Second)
	if diff := cmp.Diff([]string{"goliath resumed"}, kinds(b.step())); diff != "" {
		t.Fatalf("after the cool-down (-want +got):\n%s", diff)
	}
	if !b.sourced("goliath") {
		t.Error("resumed host is not sourced")
	}
	// It floods again: the second pause waits twice as long.
	send("goliath", 31, 100)
	got = b.step()
	if diff := cmp.Diff([]string{"goliath paused"}, kinds(got)); diff != "" {
		t.Fatalf("second flood (-want +got):\n%s", diff)
	}
	if p := got[0].b; p.pauses != 2 || !p.resumeAfter.Equal(clk.t.Add(10*time.Second)) || !p.since.Equal(clk.t.Add(-5*time.Second)) {
		t.Errorf("second pause: %+v", p)
	}
	// Another host is not affected.
	send("koishi", 50, 100)
	if !b.sourced("koishi") {
		t.Error("koishi paused by goliath's flood")
	}
	// Quiet: resumed after 10 s, within budget once half the burst is back.
	clk.advance(10 * time.Second)
	if diff := cmp.Diff([]string{"goliath resumed"}, kinds(b.step())); diff != "" {
		t.Fatalf("after the second cool-down (-want +got):\n%s", diff)
	}
	clk.advance(4 * time.Second) // tokens 100 (from 10+ 10 s) capped: already ≥ 50
	got = b.step()
	if diff := cmp.Diff([]string{"goliath within"}, kinds(got)); diff != "" {
		t.Fatalf("quiet (-want +got):\n%s", diff)
	}
	if p := got[0].b; p.throttled || p.paused || p.reason != "" || p.pauses != 2 {
		t.Errorf("within budget: %+v", p)
	}
	// A new episode starts over at the first cool-down.
	send("goliath", 101, 100)
	got = b.step()
	if len(got) != 1 || got[0].b.pauses != 1 || !got[0].b.resumeAfter.Equal(clk.t.Add(5*time.Second)) {
		t.Errorf("new episode: %+v", got)
	}
}

func TestBudgetLimits(t *testing.T) {
	tests := []struct {
		name   string
		budget HostBudget
		n      int
		size   int
		paused bool
		reason string
	}{
		{name: "bytes run dry first", budget: HostBudget{EventsPerSec: 1000, BytesPerSec: 1000, BurstEvents: 1000, BurstBytes: 10000},
			n: 11, size: 1000, paused: true, reason: "sent more than 1000 B/s (burst 9.766 KiB)"},
		{name: "events run dry first", budget: HostBudget{EventsPerSec: 1, BytesPerSec: 1 << 20, BurstEvents: 5, BurstBytes: 1 << 30},
			n: 6, size: 10, paused: true, reason: "sent more than 1 events/s (burst 5)"},
		{name: "defaults take a day of a busy host at once", budget: HostBudget{}, n: 50000, size: 1200},
		{name: "off", budget: HostBudget{Off: true, EventsPerSec: 1, BurstEvents: 1}, n: 100, size: 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1e9, 0)}
			b := newBudgets(tc.budget, clk.now)
			for range tc.n {
				b.charge("goliath", tc.size)
			}
			if b.sourced("goliath") == tc.paused {
				t.Fatalf("sourced %v, want %v", b.sourced("goliath"), !tc.paused)
			}
			if b == nil {
				return
			}
			got := b.step()
			if !tc.paused {
				if len(got) != 0 {
					t.Errorf("changes %v", kinds(got))
				}
				return
			}
			if len(got) != 1 || got[0].b.reason != tc.reason {
				t.Errorf("changes %+v, want one pause for %q", got, tc.reason)
			}
		})
	}
}

// TestBudgetPauseBounded: a host deep in debt resumes after maxHostPause
// at the latest, so an event sent again after a pause still falls within
// the streams' duplicate windows.
func TestBudgetPauseBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	b := newBudgets(HostBudget{EventsPerSec: 0.001, BurstEvents: 10, Cooldown: time.Second}, clk.now)
	for range 100 {
		b.charge("goliath", 1)
	}
	b.step()
	clk.advance(maxHostPause - time.Second)
	if got := b.step(); len(got) != 0 {
		t.Fatalf("resumed early: %v", kinds(got))
	}
	clk.advance(time.Second)
	if diff := cmp.Diff([]string{"goliath resumed"}, kinds(b.step())); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if maxHostPause >= time.Hour {
		t.Errorf("maxHostPause %s is not under INGEST's and HOSTS's hour of duplicate detection", maxHostPause)
	}
}

// TestBudgetEvent: the events the budgets publish validate against their
// schema and land on pinkie.host.<host>.ingest.budget.
func TestBudgetEvent(t *testing.T) {
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	b := newBudgets(HostBudget{BurstEvents: 1}, clk.now)
	b.charge("goliath", 10)
	b.charge("goliath", 10)
	clk.advance(time.Hour)
	for _, c := range b.step() {
		c := c
		c.b.throttled = c.kind != budgetWithin
		e, subj, err := b.event(c)
		if err != nil {
			t.Fatal(err)
		}
		if subj != "pinkie.host.goliath.ingest.budget" {
			t.Errorf("subject %s", subj)
		}
		raw, _ := events.Encode(e)
		if _, k, err := set.Validate(raw); err != nil || k.Name != "ingest.budget" {
			t.Errorf("%s event does not validate: %v", subj, err)
		}
	}
}

// TestStreamLimits: the streams hosts fill get their shares of the store,
// nats-server reserves them, and an existing data dir whose HOSTS holds
// more than its new share is cut down to it on the next start (DiscardOld
// applies a lowered MaxBytes at once).
func TestStreamLimits(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	start := func(maxStore int64) *Hub {
		h, err := StartHub(ctx, HubOptions{IngestCheck: testIngestCheck, DataDir: dir, NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			MaxStore: maxStore, Log: testLog(t)})
		if err != nil {
			t.Fatalf("StartHub: %v", err)
		}
		return h
	}
	h := start(1 << 30)
	// Fill HOSTS past what a 64 MiB store leaves it (60 %: 38.4 MiB).
	payload := make([]byte, 60<<10)
	for i := range 800 {
		if _, err := h.js.PublishAsync("pinkie.host.goliath.fill", payload); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	<-h.js.PublishAsyncComplete()
	info := streamInfo(t, h, HostsStream)
	if info.State.Bytes < 45<<20 {
		t.Fatalf("HOSTS holds %d bytes, want more than 45 MiB", info.State.Bytes)
	}
	_, reserved, err := h.srv.JetStreamReservedResources()
	if err != nil {
		t.Fatal(err)
	}
	if want := limitsFor(1 << 30); reserved != want.hosts+want.ingest+want.deadLetter {
		t.Errorf("reserved store %d, want the three shares %d", reserved, want.hosts+want.ingest+want.deadLetter)
	}
	h.Close()

	h = start(64 << 20)
	defer h.Close()
	want := limitsFor(64 << 20)
	for name, max := range map[string]int64{HostsStream: want.hosts, IngestStream: want.ingest, DeadLetterStream: want.deadLetter} {
		info := streamInfo(t, h, name)
		if info.Config.MaxBytes != max {
			t.Errorf("%s MaxBytes %d, want %d", name, info.Config.MaxBytes, max)
		}
		if info.State.Bytes > uint64(max) {
			t.Errorf("%s holds %d bytes after the upgrade, over its %d", name, info.State.Bytes, max)
		}
	}
	if info := streamInfo(t, h, HostsStream); info.State.Msgs == 0 || info.State.LastSeq != 800 {
		t.Errorf("HOSTS kept %d messages up to %d, want the newest up to 800", info.State.Msgs, info.State.LastSeq)
	}
	if ds := streamInfo(t, h, DeadLetterStream).Config; ds.MaxMsgsPerSubject != deadLettersPerHost {
		t.Errorf("DEADLETTER MaxMsgsPerSubject %d", ds.MaxMsgsPerSubject)
	}
	// What is left stays free for the rest: DEPLOY takes a request.
	if _, err := h.js.Publish(ctx, "pinkie.deploy.goliath.requested", []byte("{}")); err != nil {
		t.Errorf("DEPLOY after the upgrade: %v", err)
	}
	// A store too small for the shares is refused with the reason.
	if _, err := StartHub(ctx, HubOptions{IngestCheck: testIngestCheck, DataDir: t.TempDir(), NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		MaxStore: 1 << 20, Log: testLog(t)}); err == nil {
		t.Error("a 1 MiB store was accepted")
	}
}

func streamInfo(t *testing.T, h *Hub, name string) *jetstream.StreamInfo {
	t.Helper()
	st, err := h.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return st.CachedInfo()
}

// TestBudgetCooldownGrowth: pauses in a row double, up to twice the time
// the rates take to refill a tenth of the bursts.
func TestBudgetCooldownGrowth(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	// A tenth of the burst refills in 5 s (events; bytes in 0.1 s): the
	// longest cool-down is 10 s.
	b := newBudgets(HostBudget{EventsPerSec: 20, BytesPerSec: 1 << 30, BurstEvents: 1000, BurstBytes: 1 << 30, Cooldown: time.Second}, clk.now)
	var got []time.Duration
	for range 6 {
		for b.sourced("goliath") {
			b.charge("goliath", 1)
		}
		for _, c := range b.step() {
			if c.kind == budgetPaused {
				got = append(got, c.b.resumeAfter.Sub(c.at))
			}
		}
		for !b.sourced("goliath") {
			clk.advance(100 * time.Millisecond)
			b.step()
		}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cool-downs (-want +got):\n%s", diff)
	}
}

// BenchmarkIngestHook measures the ingest check's per-message work with and
// without the budget hook (limits too high to throttle), over 100 hosts.
func BenchmarkIngestHook(b *testing.B) {
	set, err := schemas.Load()
	if err != nil {
		b.Fatal(err)
	}
	checker := &ingest.Checker{Schemas: set, MaxSize: events.MaxSize}
	k, _ := events.Lookup("heartbeat")
	var msgs []events.IngestMessage
	for i := range 100 {
		host := fmt.Sprintf("host%d", i)
		e, err := events.New(k, host, "heartbeat", time.Now(), events.Heartbeat{Counter: 1, Instance: "bench", UptimeSeconds: 12345.6,
			Load1: 0.5, Load5: 0.4, Load15: 0.3, MemTotalBytes: 25 << 30, MemAvailableBytes: 20 << 30, AgentVersion: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		p, _ := events.Encode(e)
		hdr := map[string][]string{events.HeaderStreamSource: {"OUTBOX:Ab12Cd34:C=Ef56Gh78 17 > pinkie.ingest." + host + ".> evt.heartbeat"}}
		msgs = append(msgs, events.IngestMessage{Subject: "pinkie.ingest." + host + ".evt.heartbeat", Payload: p, Header: hdr, HeaderSize: ingest.HeaderBlockSize(hdr)})
	}
	if d := checker.Check(msgs[0]); !d.Accepted() {
		b.Fatalf("bench message refused: %s", d.Reason)
	}
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "without", true: "with"}[on], func(b *testing.B) {
			bud := newBudgets(HostBudget{Off: !on, EventsPerSec: 1e9, BytesPerSec: 1e12, BurstEvents: 1e9, BurstBytes: 1e12}, time.Now)
			i := 0
			for b.Loop() {
				m := msgs[i%len(msgs)]
				i++
				d := checker.Check(m)
				bud.charge(d.Host, len(m.Payload))
			}
		})
	}
}

// BenchmarkBudgetCharge is the hook alone, over 100 hosts.
func BenchmarkBudgetCharge(b *testing.B) {
	bud := newBudgets(HostBudget{EventsPerSec: 1e9, BytesPerSec: 1e12, BurstEvents: 1e9, BurstBytes: 1e12}, time.Now)
	hosts := make([]string, 100)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("host%d", i)
	}
	i := 0
	for b.Loop() {
		bud.charge(hosts[i%len(hosts)], 400)
		i++
	}
}
