package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// buildOrderIndex answers the ingest check's question "did the planner
// order this builder to build that request for that target?" from the
// build orders in DEPLOY. It reads orders it has not seen yet only when
// asked about one it does not know, so a forged phase costs one short read
// and a real one (whose order was stored before the builder heard of it)
// is found.
type buildOrderIndex struct {
	js jetstream.JetStream

	mu      sync.Mutex
	lastSeq uint64
	orders  map[buildOrderKey]bool
	// latest is when each builder was last ordered to build.
	latest map[string]time.Time
}

type buildOrderKey struct{ builder, request, target string }

func newBuildOrderIndex(js jetstream.JetStream) *buildOrderIndex {
	return &buildOrderIndex{js: js, orders: map[buildOrderKey]bool{}, latest: map[string]time.Time{}}
}

// BuildOrdered implements BuildOrders.
func (x *buildOrderIndex) BuildOrdered(builder, request, target string) (bool, error) {
	key := buildOrderKey{builder, request, target}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.orders[key] {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := x.catchUp(ctx); err != nil {
		return false, err
	}
	return x.orders[key], nil
}

// catchUp reads the build orders stored after lastSeq.
func (x *buildOrderIndex) catchUp(ctx context.Context) error {
	last, err := catchUpDeploy(ctx, x.js, []string{events.DeploySubject("*", "build.ordered")}, x.lastSeq,
		func(subject string, e events.Event, k events.Kind, v any) {
			if p, ok := v.(*events.DeployPhase); ok && k.Name == "deploy.build.ordered" && subject == events.DeploySubject(p.Builder, "build.ordered") {
				x.orders[buildOrderKey{p.Builder, p.RequestID, p.Host}] = true
				if t := e.Time(); t.After(x.latest[p.Builder]) {
					x.latest[p.Builder] = t
				}
			}
		})
	x.lastSeq = last
	if err != nil {
		return fmt.Errorf("read build orders: %w", err)
	}
	return nil
}

// catchUpDeploy feeds apply the readable events of DEPLOY on filters
// stored after sequence after, and returns the last sequence read.
func catchUpDeploy(ctx context.Context, js jetstream.JetStream, filters []string, after uint64, apply func(subject string, e events.Event, k events.Kind, data any)) (uint64, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := js.OrderedConsumer(ctx, DeployStream, cfg)
	if err != nil {
		return after, err
	}
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return after, err
		}
		n := 0
		var pending uint64
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			after, pending = md.Sequence.Stream, md.NumPending
			e, k, err := events.Decode(m.Data())
			if err != nil {
				continue
			}
			if v, err := events.DecodeData(e, k); err == nil {
				apply(m.Subject(), e, k, v)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return after, err
		}
		if n == 0 || pending == 0 {
			return after, nil
		}
	}
}

// OrderedSince reports whether builder was ordered to build anything at or
// after since (the nix cache takes hosts' uploads only from builders at
// work).
func (x *buildOrderIndex) OrderedSince(builder string, since time.Time) (bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.latest[builder].Before(since) {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := x.catchUp(ctx); err != nil {
		return false, err
	}
	return !x.latest[builder].Before(since), nil
}
