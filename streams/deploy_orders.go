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

// BuildOrdered implements ingest.BuildOrders.
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
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.DeploySubject("*", "build.ordered")}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if x.lastSeq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, x.lastSeq+1
	}
	cons, err := x.js.OrderedConsumer(ctx, DeployStream, cfg)
	if err != nil {
		return fmt.Errorf("read build orders: %w", err)
	}
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return fmt.Errorf("read build orders: %w", err)
		}
		n := 0
		var pending uint64
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			x.lastSeq, pending = md.Sequence.Stream, md.NumPending
			e, k, err := events.Decode(m.Data())
			if err != nil || k.Name != "deploy.build.ordered" {
				continue
			}
			v, err := events.DecodeData(e, k)
			if err != nil {
				continue
			}
			if p, ok := v.(*events.DeployPhase); ok && m.Subject() == events.DeploySubject(p.Builder, "build.ordered") {
				x.orders[buildOrderKey{p.Builder, p.RequestID, p.Host}] = true
				if t := e.Time(); t.After(x.latest[p.Builder]) {
					x.latest[p.Builder] = t
				}
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read build orders: %w", err)
		}
		if n == 0 || pending == 0 {
			return nil
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
