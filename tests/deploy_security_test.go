package tests

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// TestDeployAgentCannotTakeAnotherHostsRequests runs goliath's agent in the
// test process with goliath's key and has it try every way to read or take
// koishi's deploy requests: source koishi's consumer into a stream of its
// own, subscribe to koishi's deliveries and requests, reset koishi's
// consumer, create a consumer of its own on DEPLOY. Its own requests, the
// positive control, must still arrive.
func TestDeployAgentCannotTakeAnotherHostsRequests(t *testing.T) {
	f := newFleet(t, "goliath", "koishi")
	f.startHub()
	ctx := context.Background()
	var mu sync.Mutex
	var mine []string
	got := make(chan struct{}, 16)
	a, err := streams.StartAgent(ctx, streams.AgentOptions{
		Host: "goliath", HubURLs: []string{f.leafURL()}, NkeyFile: streams.HostSeedFile(f.auth, "goliath"),
		DataDir: t.TempDir(), ReconnectInterval: 100 * time.Millisecond, Log: discardLogger(),
		Services: []streams.AgentService{streams.DeployAgentConsumer{
			Durable: streams.DeployActivatorConsumer, Phases: []string{"requested"},
			Handle: func(_ context.Context, _ *streams.Agent, d streams.DeployDelivery) error {
				mu.Lock()
				mine = append(mine, d.Data.(*events.DeployRequested).Host)
				mu.Unlock()
				got <- struct{}{}
				return nil
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	deadline := time.Now().Add(20 * time.Second)
	for !a.Connected() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	js := a.JetStream()
	// 1. A stream of goliath's own sourcing koishi's consumer.
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "STEAL", Storage: jetstream.FileStorage,
		Sources: []*jetstream.StreamSource{{
			Name:     streams.DeployStream,
			External: &jetstream.ExternalStream{APIPrefix: "$JS.hub.API", DeliverPrefix: "_pinkie.deploy.koishi"},
			Consumer: &jetstream.StreamConsumerSource{Name: "AGENT_koishi", DeliverSubject: "_pinkie.deploy.koishi.d"},
		}},
	}); err != nil {
		t.Fatal(err)
	}
	// 2. Core subscriptions on koishi's deliveries and request subject.
	nc, err := nats.Connect("", nats.InProcessServer(a.Server()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	seen := make(chan *nats.Msg, 64)
	for _, s := range []string{"_pinkie.deploy.koishi.>", "pinkie.deploy.koishi.>", "$JS.FC.DEPLOY.AGENT_koishi.>"} {
		if _, err := nc.ChanSubscribe(s, seen); err != nil {
			t.Fatal(err)
		}
	}
	_ = nc.Flush()
	// 3. JetStream API calls into the hub: reset koishi's consumer, make
	// a consumer of its own on DEPLOY.
	for _, subj := range []string{
		"$JS.hub.API.CONSUMER.RESET.DEPLOY.AGENT_koishi",
		"$JS.hub.API.CONSUMER.CREATE.DEPLOY.steal.pinkie.deploy.koishi.requested",
		"$JS.hub.API.CONSUMER.INFO.DEPLOY.AGENT_koishi",
	} {
		if m, err := nc.Request(subj, []byte(`{}`), 500*time.Millisecond); err == nil {
			t.Errorf("%s answered %s", subj, m.Data)
		}
	}
	time.Sleep(500 * time.Millisecond) // let interest propagate, so the hub would forward if allowed

	c := f.client()
	for _, host := range []string{"koishi", "koishi", "goliath"} {
		out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", f.operator(), "deploy.requested", "host="+host)
		if code != 0 {
			t.Fatalf("pub for %s: %s", host, out)
		}
	}
	// Positive control: goliath's own request arrives through its inbox.
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("goliath's own request did not reach its inbox")
	}
	// And koishi's consumer still holds both of koishi's requests, untaken.
	cons, err := c.JS.PushConsumer(ctx, streams.DeployStream, "AGENT_koishi")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumPending+uint64(ci.NumAckPending) < 2 || ci.Delivered.Consumer != 0 {
		t.Errorf("koishi's consumer: pending %d, ack pending %d, delivered %d; want its 2 requests undelivered", ci.NumPending, ci.NumAckPending, ci.Delivered.Consumer)
	}
	st, err := js.Stream(ctx, "STEAL")
	if err != nil {
		t.Fatal(err)
	}
	si, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.State.Msgs != 0 {
		t.Errorf("goliath's STEAL stream took %d of koishi's requests", si.State.Msgs)
	}
	select {
	case m := <-seen:
		t.Errorf("goliath's agent received %s", m.Subject)
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	for _, h := range mine {
		if h != "goliath" {
			t.Errorf("goliath's inbox delivered a request for %s", h)
		}
	}
}
