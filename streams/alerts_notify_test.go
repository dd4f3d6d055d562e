package streams

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/consumers/alerter"
	"github.com/pinkiefleet/pinkie/consumers/notifier"
	"github.com/pinkiefleet/pinkie/events"
)

// countingChannel counts what reaches it, across notifiers.
type countingChannel struct {
	mu   *sync.Mutex
	got  map[string]int
	slow time.Duration
}

func (c countingChannel) Name() string          { return "ops" }
func (c countingChannel) Type() string          { return "ntfy" }
func (c countingChannel) Route() notifier.Route { return notifier.Route{} }
func (c countingChannel) Send(ctx context.Context, m notifier.Message) error {
	time.Sleep(c.slow)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got[m.ID]++
	return nil
}

// TestTwoNotifiersSendOnce: two notifiers share the real KV bucket (a
// clustered hub's old and new leader in the second both believe they
// lead); both hold the same pending notifications and run at once. Each
// notification is sent once: the compare-and-set on the bucket lets one
// take it and makes the other follow.
func TestTwoNotifiersSendOnce(t *testing.T) {
	hub, _ := startAuthedTestHub(t, "goliath")
	ctx := context.Background()
	k, _ := events.Lookup("alert.firing")
	for round := range 10 {
		kv, err := hub.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "notifier-test", History: 1})
		if err != nil {
			t.Fatal(err)
		}
		mu, got := &sync.Mutex{}, map[string]int{}
		ch := countingChannel{mu: mu, got: got, slow: time.Duration(round) * time.Millisecond}
		cfg := notifier.Config{GroupWait: func() *alerter.Duration { d := alerter.Duration(0); return &d }()}
		first := notifier.New(notifier.Options{Config: cfg, Channels: []notifier.Channel{ch}, Store: NewKVStore(kv), Pub: discardPub{}, Log: testLog(t), Node: "hub1"})
		const alerts = 5
		for i := range alerts {
			a := events.Alert{Host: "goliath", Rule: "fs.usage", Object: "/", Severity: "warning", Status: "firing", Reason: "started",
				StartsAt: time.Now().UTC(), Fingerprint: alerter.Fingerprint("goliath", "fs.usage", string(rune('a'+i)))}
			e, err := events.New(k, "goliath", "alerter", time.Now(), a)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := events.Encode(e)
			if err := first.HandleAlert(ctx, uint64(i+1), b); err != nil {
				t.Fatal(err)
			}
		}
		second := notifier.New(notifier.Options{Config: cfg, Channels: []notifier.Channel{ch}, Store: NewKVStore(kv), Pub: discardPub{}, Log: testLog(t), Node: "hub2"})
		if err := second.Load(ctx); err != nil {
			t.Fatal(err)
		}
		want := len(second.Pending())
		if want == 0 || len(first.Pending()) != want {
			t.Fatalf("round %d: pending %d and %d, want the same jobs in both", round, len(first.Pending()), want)
		}
		rctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, n := range []*notifier.Notifier{first, second} {
			wg.Add(1)
			go func() { defer wg.Done(); _ = n.Run(rctx) }()
		}
		sent := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(got)
		}
		deadline := time.Now().Add(20 * time.Second)
		for sent() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // a second send would come now
		cancel()
		wg.Wait()
		mu.Lock()
		if len(got) != want {
			t.Errorf("round %d: %d of %d notifications sent (%v)", round, len(got), want, got)
		}
		for id, n := range got {
			if n != 1 {
				t.Errorf("round %d: notification %s sent %d times", round, id, n)
			}
		}
		mu.Unlock()
		// The sender removed each job; the other notifier may still hold
		// one until the sender's lease ends, then finds it gone.
		lister, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for key := range lister.Keys() {
			if strings.HasPrefix(key, "job.") {
				t.Errorf("round %d: %s still stored after it was sent", round, key)
			}
		}
		if err := hub.JetStream().DeleteKeyValue(ctx, "notifier-test"); err != nil {
			t.Fatal(err)
		}
	}
}

type discardPub struct{}

func (discardPub) Publish(context.Context, string, events.Event) (events.Ack, error) {
	return events.Ack{}, nil
}
