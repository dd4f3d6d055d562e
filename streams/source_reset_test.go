package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestOutboxResetReportsAckFloor pins the nats-server behaviour that
// durable sourcing of the OUTBOX relies on. When the hub's INGEST source
// sees a gap or a stall, it resets the agent's HUB consumer back to its ack
// floor and
// takes the reset response's Delivered.Stream as "already stored": it
// ignores every message at or below it, and its next flow-control reply
// acknowledges them, which drops them from the (interest-retention)
// OUTBOX. nats-server 2.15.2 read Delivered.Stream after delivery had
// resumed, so a consumer busy delivering reported messages the hub never
// got; the hub skipped them and the agent deleted them: the loss seen
// once in TestStoreAndForward/link_cut (2,857 of 10,000 missing, every
// source at lag 0). 2.15.3 reports the reset point itself (consumer.go
// resetInfo). With 2.15.2 this test fails in 9 runs of 10. This test resets an OUTBOX consumer that has a
// backlog and a live reader, repeatedly: the response must always say
// delivered = ack floor = reset point − 1.
func TestOutboxResetReportsAckFloor(t *testing.T) {
	a, err := StartAgent(context.Background(), AgentOptions{Host: "goliath", DataDir: t.TempDir(), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	const n = 5000
	for i := 1; i <= n; i++ {
		if _, err := a.PublishAsync(heartbeat(t, "goliath", uint64(i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-a.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("OUTBOX did not store the backlog within 30s")
	}
	// A reader on the deliver subject stands in for the hub: it makes the
	// consumer active and answers flow control without acknowledging (no
	// sequence headers), so the backlog stays and delivery never stalls.
	nc, err := nats.Connect("", nats.InProcessServer(a.Server()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var got atomic.Int64
	sub, err := nc.Subscribe(deliverSubject("goliath"), func(m *nats.Msg) {
		if m.Header.Get("Status") == "100" { // idle heartbeat or flow control
			if m.Reply != "" {
				_ = m.Respond(nil)
			}
			return
		}
		got.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	resetSubj := fmt.Sprintf("$JS.API.CONSUMER.RESET.%s.%s", OutboxStream, OutboxConsumer)
	var before int64 // delivered before the last reset
	for round := 1; round <= 50; round++ {
		// Let it deliver, then reset it while it is busy.
		for deadline := time.Now().Add(10 * time.Second); got.Load() < before+100; {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the HUB consumer delivered %d messages in 10s, want 100 more\n%s", round, got.Load()-before, OutboxReport(ctx, a.JetStream(), "goliath"))
			}
			time.Sleep(time.Millisecond)
		}
		before = got.Load()
		msg, err := nc.RequestWithContext(ctx, resetSubj, nil)
		if err != nil {
			t.Fatalf("round %d: reset HUB consumer: %v", round, err)
		}
		var resp struct {
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
			ResetSeq  uint64 `json:"reset_seq"`
			Delivered struct {
				Stream uint64 `json:"stream_seq"`
			} `json:"delivered"`
			AckFloor struct {
				Stream uint64 `json:"stream_seq"`
			} `json:"ack_floor"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			t.Fatalf("round %d: reset response %q: %v", round, msg.Data, err)
		}
		if resp.Error != nil {
			t.Fatalf("round %d: reset refused: %s", round, resp.Error.Description)
		}
		if resp.ResetSeq == 0 || resp.Delivered.Stream != resp.ResetSeq-1 || resp.AckFloor.Stream != resp.ResetSeq-1 {
			t.Fatalf("round %d: reset to %d reports delivered=%d ack floor=%d, want both %d: a sourcing stream would skip %d messages it never received",
				round, resp.ResetSeq, resp.Delivered.Stream, resp.AckFloor.Stream, resp.ResetSeq-1, int64(resp.Delivered.Stream)-int64(resp.ResetSeq-1))
		}
	}
}
