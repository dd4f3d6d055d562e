package streams

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/pinkiefleet/pinkie/events"
)

// TestForwardRefusedMidPipeline: HOSTS refuses one forward (larger than
// its MaxMsgSize) while the ones after it are already on their way. The
// refused event becomes a dead letter; the next ones, which the chain
// made fail ("wrong last sequence") rather than overtake it, are retried
// and stored in order, and none of them becomes a dead letter.
func TestForwardRefusedMidPipeline(t *testing.T) {
	hub, auth := startAuthedTestHub(t, "goliath")
	ctx := context.Background()
	js := hub.JetStream()
	st, err := js.Stream(ctx, HostsStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxMsgSize = 2048
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	a := startTestAgent(t, "goliath", hub.LeafURL(), HostSeedFile(auth, "goliath"))
	defer a.Close()
	pk, _ := events.Lookup("profile")
	const n = 200
	for i := uint64(1); i <= n; i++ {
		if i == 50 {
			locale := map[string]string{}
			for i := range 100 {
				locale["LC_"+string(rune('A'+i/26))+string(rune('A'+i%26))] = strings.Repeat("x", 40)
			}
			big, err := events.New(pk, "goliath", "profile", time.Now(), events.Profile{Hostname: "goliath", Kernel: "6.1", Arch: "x86_64", Locale: locale})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Publish(ctx, big, ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Publish(ctx, heartbeat(t, "goliath", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	waitMsgs(t, js, DeadLetterStream, ">", 1, 20*time.Second)
	waitMsgs(t, js, HostsStream, "pinkie.host.goliath.heartbeat", n, 20*time.Second)

	dl, err := js.Stream(ctx, DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dl.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	e, kind, err := events.Decode(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	d, err := events.DecodeData(e, kind)
	if err != nil {
		t.Fatal(err)
	}
	if r := d.(*events.DeadLetter).Reason; !strings.Contains(r, "HOSTS refused it") || !strings.HasSuffix(d.(*events.DeadLetter).Subject, ".evt.profile") {
		t.Fatalf("dead letter of %s: %q; want the big profile, refused by HOSTS", d.(*events.DeadLetter).Subject, r)
	}

	c, err := js.OrderedConsumer(ctx, HostsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"pinkie.host.goliath.heartbeat"}})
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= n; want++ {
		msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read heartbeat %d: %v", want, err)
		}
		e, kind, err := events.Decode(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		d, err := events.DecodeData(e, kind)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.(*events.Heartbeat).Counter; got != want {
			t.Fatalf("heartbeat %d stored where %d belongs", got, want)
		}
		// Forwards expect their predecessor, except the ones retried or
		// sent right after the refusal.
		if want < 50 && msg.Headers().Get(expectedLastSeqHeader) == "" {
			t.Errorf("heartbeat %d was forwarded without expecting the one before it", want)
		}
	}
}

// TestChainWaitsAfterAnUnchainedForward: when HOSTS's last sequence
// cannot be read, the forward goes unchained; the next forward must not
// chain from a sequence read while that one is still in flight (it would
// not fail when the unchained one fails, and would overtake it: a rolling
// restart of the cluster stored one heartbeat 1,349 places late). It
// waits until the acker has settled it, then reads the sequence again.
func TestChainWaitsAfterAnUnchainedForward(t *testing.T) {
	reads := 0
	c := &forwardChain{wake: make(chan struct{}, 1), log: slog.New(slog.DiscardHandler), lastSeq: func(context.Context) (uint64, error) {
		reads++
		if reads == 1 {
			return 0, errors.New("timeout")
		}
		return 41, nil
	}}
	forward := func() pendingPub {
		return pendingPub{out: &nats.Msg{Subject: events.HostSubject("goliath", "heartbeat", ""), Header: nats.Header{}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := forward()
	if !c.link(ctx, first) || first.out.Header.Get(expectedLastSeqHeader) != "" {
		t.Fatalf("with HOSTS's last sequence unreadable the forward should go unchained, got expectation %q", first.out.Header.Get(expectedLastSeqHeader))
	}
	c.sent++ // the publisher handed it to the acker
	second := forward()
	linked := make(chan bool, 1)
	go func() { linked <- c.link(ctx, second) }()
	select {
	case <-linked:
		t.Fatalf("the next forward was chained (expecting %q) while the unchained one was still in flight", second.out.Header.Get(expectedLastSeqHeader))
	case <-time.After(300 * time.Millisecond):
	}
	c.settled()
	select {
	case ok := <-linked:
		if !ok || second.out.Header.Get(expectedLastSeqHeader) != "41" {
			t.Fatalf("after the unchained forward settled: linked=%t expectation %q, want 41", ok, second.out.Header.Get(expectedLastSeqHeader))
		}
	case <-ctx.Done():
		t.Fatal("the next forward was not linked after the unchained one settled")
	}
	third := forward()
	if !c.link(ctx, third) || third.out.Header.Get(expectedLastSeqHeader) != "42" || reads != 2 {
		t.Fatalf("the chain goes on from 42 without reading again: expectation %q, %d reads", third.out.Header.Get(expectedLastSeqHeader), reads)
	}
}

// TestIngestRestartsAtALostDelivery: a delivery of INGEST's consumer that
// the check never receives (as when the consumer's leader changes while a
// message is in flight; here an outside pull takes it) must not be
// acknowledged by the check's next cumulative ack. The check sees the gap
// in the consumer's delivery sequence, settles what it took, and starts
// again from the last event stored: every heartbeat reaches HOSTS, each
// once and in order.
func TestIngestRestartsAtALostDelivery(t *testing.T) {
	hub, auth := startAuthedTestHub(t, "goliath")
	ctx := context.Background()
	js := hub.JetStream()
	a := startTestAgent(t, "goliath", hub.LeafURL(), HostSeedFile(auth, "goliath"))
	defer a.Close()

	// Pull from the check's own consumer while events flow, until one
	// delivery lands here instead of with the check.
	legacy, err := hub.Conn().JetStream()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := legacy.PullSubscribe("", IngestConsumer, nats.Bind(IngestStream, IngestConsumer))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	took := make(chan uint64, 1)
	pullCtx, stopPull := context.WithCancel(ctx)
	defer stopPull()
	go func() {
		defer close(took)
		for pullCtx.Err() == nil {
			msgs, err := sub.Fetch(1, nats.MaxWait(time.Second))
			if err != nil || len(msgs) == 0 {
				continue // nothing for us this time: the check was faster
			}
			if md, err := msgs[0].Metadata(); err == nil {
				t.Logf("took INGEST seq %d (delivery %d) away from the check", md.Sequence.Stream, md.Sequence.Consumer)
				took <- md.Sequence.Stream
				return
			}
		}
	}()
	// Publish until the outside pull has one, then 100 more (at most 5,000).
	var n, stolen uint64
	for after := 0; after < 100 && n < 5000; {
		n++
		if err := a.Publish(ctx, heartbeat(t, "goliath", n), ""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
		if stolen == 0 {
			select {
			case stolen = <-took:
			default:
			}
		} else {
			after++
		}
	}
	stopPull()
	if stolen == 0 {
		t.Fatalf("no delivery of %d came to the outside pull", n)
	}
	waitMsgs(t, js, HostsStream, "pinkie.host.goliath.heartbeat", n, 30*time.Second)
	seen := readCounters(t, js, int(n))
	for i, c := range seen {
		if c != uint64(i+1) {
			t.Fatalf("HOSTS holds heartbeat %d at place %d: lost, doubled or out of order (all: %v)", c, i+1, seen)
		}
	}
	var m dto.Metric
	if err := hub.metrics.ingestRestarts.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.GetCounter().GetValue() < 1 {
		t.Errorf("pinkie_ingest_restarts_total = %v, want at least 1", m.GetCounter().GetValue())
	}
}

// readCounters reads the counters of HOSTS's first n heartbeats, in order.
func readCounters(t *testing.T, js jetstream.JetStream, n int) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, HostsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"pinkie.host.goliath.heartbeat"}})
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for len(out) < n && ctx.Err() == nil {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			var hb struct {
				Data events.Heartbeat `json:"data"`
			}
			if err := json.Unmarshal(msg.Data(), &hb); err != nil {
				t.Fatal(err)
			}
			out = append(out, hb.Data.Counter)
		}
	}
	return out
}
