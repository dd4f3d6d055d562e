package streams

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestOutboxGaps(t *testing.T) {
	src := func(seq uint64, ident string) string {
		return strings.TrimSpace(fmt.Sprintf("OUTBOX:abc %d > pinkie.ingest.goliath.> evt.heartbeat %s", seq, ident))
	}
	type step struct {
		host, header string
		first, n     uint64
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"contiguous", []step{{"goliath", src(10, "i1"), 0, 0}, {"goliath", src(11, "i1"), 0, 0}, {"goliath", src(12, "i1"), 0, 0}}},
		{"skip", []step{{"goliath", src(10, "i1"), 0, 0}, {"goliath", src(11, "i1"), 0, 0}, {"goliath", src(2868, "i1"), 12, 2856}}},
		{"redelivered after a restart of the check", []step{{"goliath", src(10, "i1"), 0, 0}, {"goliath", src(11, "i1"), 0, 0}, {"goliath", src(10, "i1"), 0, 0}, {"goliath", src(11, "i1"), 0, 0}, {"goliath", src(12, "i1"), 0, 0}}},
		{"new OUTBOX numbers anew", []step{{"goliath", src(10, "i1"), 0, 0}, {"goliath", src(1796641157777369, "i2"), 0, 0}, {"goliath", src(1796641157777370, "i2"), 0, 0}}},
		{"no identity (an older server)", []step{{"goliath", src(10, ""), 0, 0}, {"goliath", src(13, ""), 11, 2}}},
		{"hosts apart", []step{{"goliath", src(10, "i1"), 0, 0}, {"koishi", src(500, "k1"), 0, 0}, {"goliath", src(11, "i1"), 0, 0}, {"koishi", src(502, "k1"), 501, 1}}},
		{"header missing or bad", []step{{"goliath", src(10, "i1"), 0, 0}, {"goliath", "", 0, 0}, {"goliath", "OUTBOX x > a b", 0, 0}, {"goliath", src(11, "i1"), 0, 0}}},
		{"host unknown", []step{{"", src(10, "i1"), 0, 0}, {"", src(20, "i1"), 0, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g outboxGaps
			for i, s := range tc.steps {
				if first, n := g.observe(s.host, s.header); first != s.first || n != s.n {
					t.Errorf("step %d (%s %q): skipped %d from %d, want %d from %d", i, s.host, s.header, n, first, s.n, s.first)
				}
			}
		})
	}
}

// TestOutboxGapIsReported: events that vanish from a host's OUTBOX before
// the hub takes them (here deleted while the agent ran without a hub, as a
// skipping source or MaxAge would) are reported as lost, with an ERROR
// naming the host and the OUTBOX sequences, and counted in
// pinkie_outbox_events_lost_total; the rest arrive.
func TestOutboxGapIsReported(t *testing.T) {
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"goliath"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := t.TempDir()
	// Stored without a hub: 5 events, the 3rd and 4th then deleted.
	a, err := StartAgent(ctx, AgentOptions{Host: "goliath", DataDir: data, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := a.Publish(ctx, heartbeat(t, "goliath", uint64(i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	st, err := a.JetStream().Stream(ctx, OutboxStream)
	if err != nil {
		t.Fatal(err)
	}
	first := st.CachedInfo().Config.FirstSeq
	for _, seq := range []uint64{first + 2, first + 3} {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatalf("delete OUTBOX seq %d: %v", seq, err)
		}
	}
	a.Close()

	logs := &lockedBuffer{}
	hub, err := StartHub(ctx, HubOptions{IngestCheck: testIngestCheck,
		DataDir: t.TempDir(), NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		AuthDir: auth, Log: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	a, err = StartAgent(ctx, AgentOptions{
		Host: "goliath", HubURLs: []string{hub.LeafURL()}, NkeyFile: HostSeedFile(auth, "goliath"), DataDir: data,
		ReconnectInterval: 100 * time.Millisecond, Log: testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	waitMsgs(t, hub.JetStream(), HostsStream, "pinkie.host.goliath.heartbeat", 3, 30*time.Second)
	want := fmt.Sprintf("level=ERROR msg=\"events of this host never reached the hub: its OUTBOX source skipped them, or they expired in the OUTBOX; they are lost\" host=goliath outbox_seq=%d count=2", first+2)
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("hub log lacks\n%s\n---\n%s", want, logs.String())
	}
	var m dto.Metric
	if err := hub.metrics.outboxLost.WithLabelValues("goliath").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 2 {
		t.Errorf("pinkie_outbox_events_lost_total{host=goliath} = %v, want 2", got)
	}
	if n := strings.Count(logs.String(), "never reached the hub"); n != 1 {
		t.Errorf("the gap was reported %d times, want once", n)
	}
	// The report tests print on failure says the same.
	report := IngestGapReport(ctx, hub.JetStream())
	if want := fmt.Sprintf("goliath: OUTBOX seq %d..%d, 1 gaps, 2 missing", first, first+4); !strings.Contains(report, want) {
		t.Errorf("IngestGapReport lacks %q:\n%s", want, report)
	}
	// The source acknowledges by flow control, within a heartbeat or two.
	want = fmt.Sprintf("stored 5 events (seq %d..%d), still holds 0", first, first+4)
	var outbox string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !strings.Contains(outbox, want); time.Sleep(100 * time.Millisecond) {
		outbox = OutboxReport(ctx, a.JetStream(), "goliath")
	}
	if !strings.Contains(outbox, want) {
		t.Errorf("OutboxReport lacks %q:\n%s", want, outbox)
	}
}
