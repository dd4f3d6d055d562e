package streams

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// TestConsumerGateDecide checks the gate's decisions on request bodies as
// the nats CLI and nats.go send them; tests/roles_test.go runs the same
// through a real hub.
func TestConsumerGateDecide(t *testing.T) {
	hub := map[string]*jetstream.ConsumerConfig{
		"INGEST/ingest": {Durable: "ingest", AckPolicy: jetstream.AckAllPolicy},
	}
	newGate := func() *consumerGate {
		return &consumerGate{
			lookup: func(_ context.Context, stream, name string) (*jetstream.ConsumerConfig, error) {
				if c, ok := hub[stream+"/"+name]; ok {
					return c, nil
				}
				if stream == "NOPE" {
					return nil, jetstream.ErrStreamNotFound
				}
				// A consumer the gate let through exists as created.
				return &jetstream.ConsumerConfig{Name: name, AckPolicy: jetstream.AckNonePolicy}, jetstream.ErrConsumerNotFound
			},
			now:  time.Now,
			live: map[gateKey]*gateEntry{},
		}
	}
	pull := `{"stream_name":"HOSTS","config":{"name":"c1","deliver_policy":"all","ack_policy":"none"}}`
	cases := []struct {
		name, call, body string
		refused          string // "" means allowed
	}{
		{"ephemeral pull", "CONSUMER.CREATE.HOSTS.c1", pull, ""},
		{"ephemeral pull, legacy subject", "CONSUMER.CREATE.HOSTS", `{"stream_name":"HOSTS","config":{"ack_policy":"none"}}`, ""},
		{"ephemeral pull with a filter subject", "CONSUMER.CREATE.HOSTS.c1.pinkie.host.a.>", `{"stream_name":"HOSTS","config":{"name":"c1","filter_subject":"pinkie.host.a.>","ack_policy":"none"}}`, ""},
		{"push", "CONSUMER.CREATE.HOSTS.c1", `{"stream_name":"HOSTS","config":{"name":"c1","deliver_subject":"pinkie.deploy.k.requested","ack_policy":"none"}}`, "push consumers are refused"},
		{"push by flow control", "CONSUMER.CREATE.HOSTS.c1", `{"stream_name":"HOSTS","config":{"name":"c1","flow_control":true,"ack_policy":"none"}}`, "push consumers are refused"},
		{"durable", "CONSUMER.CREATE.HOSTS.d", `{"stream_name":"HOSTS","config":{"durable_name":"d","ack_policy":"none"}}`, "durable consumers are refused"},
		{"legacy durable", "CONSUMER.DURABLE.CREATE.HOSTS.d", `{}`, "durable consumers are refused"},
		{"acks", "CONSUMER.CREATE.HOSTS.c1", `{"stream_name":"HOSTS","config":{"name":"c1","ack_policy":"explicit"}}`, "consumers with acks are refused"},
		{"direct", "CONSUMER.CREATE.HOSTS.c1", `{"stream_name":"HOSTS","config":{"name":"c1","ack_policy":"none","direct":true}}`, "server's own"},
		{"long inactive threshold", "CONSUMER.CREATE.HOSTS.c1", `{"stream_name":"HOSTS","config":{"name":"c1","ack_policy":"none","inactive_threshold":3600000000000}}`, "inactive threshold"},
		{"the hub's consumer name", "CONSUMER.CREATE.INGEST.ingest", `{"stream_name":"INGEST","config":{"name":"ingest","ack_policy":"none"}}`, "exists and is not a client's"},
		{"an agent consumer name", "CONSUMER.CREATE.DEPLOY.AGENT_new", `{"stream_name":"DEPLOY","config":{"name":"AGENT_new","ack_policy":"none"}}`, "are the hub's"},
		{"name differs from subject", "CONSUMER.CREATE.HOSTS.c1", `{"stream_name":"HOSTS","config":{"name":"c2","ack_policy":"none"}}`, "differs"},
		{"stream differs from subject", "CONSUMER.CREATE.HOSTS.c1", `{"stream_name":"DEPLOY","config":{"name":"c1","ack_policy":"none"}}`, "differs"},
		{"no such stream", "CONSUMER.CREATE.NOPE.c1", `{"stream_name":"NOPE","config":{"name":"c1","ack_policy":"none"}}`, "no stream NOPE"},
		{"unknown field", "CONSUMER.CREATE.HOSTS.c1", `{"stream_name":"HOSTS","config":{"name":"c1","ack_policy":"none","deliver_subjekt":"x"}}`, "unknown field"},
		// The server would decode the second value over the first.
		{"two JSON values", "CONSUMER.CREATE.HOSTS.c1", pull + `{"stream_name":"HOSTS","config":{"name":"c1","deliver_subject":"x"}}`, "more than one JSON value"},
		{"pull from the hub's durable", "CONSUMER.MSG.NEXT.INGEST.ingest", `{"batch":1}`, "not created by a client"},
		{"delete the hub's durable", "CONSUMER.DELETE.INGEST.ingest", ``, "not created by a client"},
		{"an API call the gate does not take", "STREAM.DELETE.HOSTS", ``, "not a consumer call"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate()
			out, err := g.decide(context.Background(), tc.call, []byte(tc.body))
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				var req server.CreateConsumerRequest
				if err := json.Unmarshal(out, &req); err != nil {
					t.Fatal(err)
				}
				if req.Action != server.ActionCreate || req.Config.InactiveThreshold != gateDefaultInactive || req.Config.Name == "" {
					t.Errorf("forwarded %s, want action create, inactive threshold %s and a name", out, gateDefaultInactive)
				}
				return
			}
			var r *gateRefusal
			if !errors.As(err, &r) || !strings.Contains(r.reason, tc.refused) {
				t.Errorf("got %v, want a refusal with %q", err, tc.refused)
			}
		})
	}
}

// TestConsumerGateOwnConsumers: a client pulls from and deletes only what
// it created through the gate, and only until the gate forgets it.
func TestConsumerGateOwnConsumers(t *testing.T) {
	now := time.Now()
	g := &consumerGate{
		lookup: func(_ context.Context, stream, name string) (*jetstream.ConsumerConfig, error) {
			return nil, jetstream.ErrConsumerNotFound
		},
		now:  func() time.Time { return now },
		live: map[gateKey]*gateEntry{},
	}
	ctx := context.Background()
	body := `{"stream_name":"HOSTS","config":{"name":"c1","ack_policy":"none","inactive_threshold":60000000000}}`
	if _, err := g.decide(ctx, "CONSUMER.CREATE.HOSTS.c1", []byte(body)); err != nil {
		t.Fatal(err)
	}
	// Now it exists, as created.
	g.lookup = func(_ context.Context, stream, name string) (*jetstream.ConsumerConfig, error) {
		return &jetstream.ConsumerConfig{Name: name, AckPolicy: jetstream.AckNonePolicy}, nil
	}
	if _, err := g.decide(ctx, "CONSUMER.MSG.NEXT.HOSTS.c1", []byte(`{"batch":10,"expires":30000000000}`)); err != nil {
		t.Errorf("pull from its own consumer: %v", err)
	}
	if _, err := g.decide(ctx, "CONSUMER.MSG.NEXT.HOSTS.c1", []byte(`{"batch":1,"expires":3600000000000}`)); err == nil {
		t.Error("a pull waiting an hour was let through")
	}
	if _, err := g.decide(ctx, "CONSUMER.MSG.NEXT.OTHER.c1", []byte(`1`)); err == nil {
		t.Error("a pull from the same name on another stream was let through")
	}
	// Past its inactive threshold (plus the longest pull) the gate forgets it.
	now = now.Add(time.Minute + 3*gateMaxPullWait)
	if _, err := g.decide(ctx, "CONSUMER.MSG.NEXT.HOSTS.c1", []byte(`1`)); err == nil {
		t.Error("a pull after the consumer expired was let through")
	}
	if _, err := g.decide(ctx, "CONSUMER.CREATE.HOSTS.c2", []byte(strings.ReplaceAll(body, "c1", "c2"))); err == nil {
		t.Error("a create of a name that exists and is not the gate's was let through")
	}
	// On a clustered hub another node's gate created c3 (its mark is in
	// the metadata): this gate lets the client pull from and delete it.
	g.lookup = func(_ context.Context, stream, name string) (*jetstream.ConsumerConfig, error) {
		if name == "c3" {
			return &jetstream.ConsumerConfig{Name: name, AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute, Metadata: map[string]string{gateMetaKey: "client"}}, nil
		}
		return &jetstream.ConsumerConfig{Name: name, AckPolicy: jetstream.AckNonePolicy}, nil
	}
	if _, err := g.decide(ctx, "CONSUMER.MSG.NEXT.HOSTS.c3", []byte(`1`)); err != nil {
		t.Errorf("pull from a client consumer another node's gate made: %v", err)
	}
	if _, err := g.decide(ctx, "CONSUMER.DELETE.HOSTS.c3", nil); err != nil {
		t.Errorf("delete of a client consumer another node's gate made: %v", err)
	}
	if _, err := g.decide(ctx, "CONSUMER.DELETE.HOSTS.c4", nil); err == nil {
		t.Error("delete of an unmarked consumer was let through")
	}
	// A client cannot set the mark itself.
	marked := `{"stream_name":"HOSTS","config":{"name":"c5","ack_policy":"none","metadata":{"pinkie.gate":"client"}}}`
	if _, err := g.decide(ctx, "CONSUMER.CREATE.HOSTS.c5", []byte(marked)); err == nil || !strings.Contains(err.Error(), "metadata key pinkie.gate") {
		t.Errorf("a create carrying the gate's mark: %v, want a refusal", err)
	}
}
