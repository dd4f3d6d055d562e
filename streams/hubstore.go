package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// HubStore reads the hub's projections and streams over the hub's own
// connection, for the dashboard (dashboard.Store) and /metrics/fleet
// (fleetmetrics.Store). It is made before the hub runs and answers once
// Bind has given it the running hub; until then calls wait.
type HubStore struct {
	once  sync.Once
	ready chan struct{}
	js    jetstream.JetStream
	nc    *nats.Conn
	hub   *Hub
}

// NewHubStore returns a store that answers once bound to a hub.
func NewHubStore() *HubStore { return &HubStore{ready: make(chan struct{})} }

// Bind gives the store the running hub; later calls do nothing.
func (s *HubStore) Bind(h *Hub) {
	s.once.Do(func() {
		s.js, s.nc, s.hub = h.JetStream(), h.Conn(), h
		close(s.ready)
	})
}

func (s *HubStore) wait(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hub not ready: %w", ctx.Err())
	}
}

// Hub is the bound hub, once there is one.
func (s *HubStore) Hub(ctx context.Context) (*Hub, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.hub, nil
}

// Bucket returns records of a KV bucket without projection checkpoints:
// all for an empty prefix, the keys below a prefix that ends in ".", else
// the one key named.
func (s *HubStore) Bucket(ctx context.Context, bucket, prefix string) (map[string][]byte, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	// An exact key, or keys below a prefix ending in ".", read directly;
	// anything else lists the bucket.
	if prefix != "" && !strings.HasSuffix(prefix, ".") && !strings.ContainsAny(prefix, "*>") {
		v, found, err := ReadKey(ctx, s.js, bucket, prefix)
		var open *KeyOpenError
		switch {
		case errors.As(err, &open):
			return nil, err
		case err != nil:
			return nil, fmt.Errorf("read %s %s: %w", bucket, prefix, err)
		case !found:
			return map[string][]byte{}, nil
		}
		return map[string][]byte{prefix: v}, nil
	}
	return readProjection(ctx, s.js, bucket, prefix)
}

// History returns up to max messages of stream on subjects matching any
// of filters, stored since since, oldest first (the newest max when there
// are more).
func (s *HubStore) History(ctx context.Context, stream string, filters []string, since time.Time, max int) ([]events.Stored, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	// One ephemeral pull consumer per read, deleted when done (the
	// inactive threshold is only the backstop): a busy page must not pile
	// consumers up. An ordered consumer would make a new one per fetch.
	filter := strings.Join(filters, ",")
	cfg := jetstream.ConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: 30 * time.Second, MemoryStorage: true}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := s.js.CreateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", stream, filter, err)
	}
	info := cons.CachedInfo()
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.js.DeleteConsumer(dctx, stream, info.Name)
	}()
	if info.NumPending == 0 {
		return nil, nil
	}
	total := int(info.NumPending)
	var out []events.Stored
	for got := 0; got < total; {
		batch, err := cons.Fetch(min(total-got, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return out, fmt.Errorf("read %s %s: %w", stream, filter, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, _ := m.Metadata()
			e, k, err := events.Decode(m.Data())
			if err != nil || md == nil {
				continue
			}
			out = append(out, events.Stored{Subject: m.Subject(), Seq: md.Sequence.Stream, Time: eventTime(e, md.Timestamp), Event: e, Kind: k})
			if len(out) > 2*max {
				out = append(out[:0], out[len(out)-max:]...)
			}
		}
		if n == 0 {
			break
		}
		got += n
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out, nil
}

// Last returns the newest message on subject, or nil.
func (s *HubStore) Last(ctx context.Context, stream, subject string) (*events.Stored, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return ReadLast(ctx, s.js, stream, subject)
}

// eventTime is when an event was observed, or else when it was stored.
func eventTime(e events.Event, stored time.Time) time.Time {
	if t := e.Time(); !t.IsZero() {
		return t
	}
	return stored
}

// Publish stores an event on the hub.
func (s *HubStore) Publish(ctx context.Context, subject string, e events.Event) error {
	_, err := s.publish(ctx, subject, e)
	return err
}

func (s *HubStore) publish(ctx context.Context, subject string, e events.Event) (events.Ack, error) {
	if err := s.wait(ctx); err != nil {
		return events.Ack{}, err
	}
	return PublishEvent(ctx, s.js, subject, e)
}

// Publisher is the store as an events.Publisher.
func (s *HubStore) Publisher() events.Publisher { return events.PublisherFunc(s.publish) }

// Watch calls fn with the subject of every change the hub stores
// (projection updates, deploy phases, fleet declarations) until ctx ends.
func (s *HubStore) Watch(ctx context.Context, fn func(string)) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	var subs []*nats.Subscription
	for _, subj := range []string{events.KVSubjects(events.BucketInventory), events.KVSubjects(events.BucketDrives), events.KVSubjects(events.BucketAlerts), events.KVSubjects(events.BucketLastDeploy), events.KVSubjects(events.BucketGuests),
		events.DeploySubjects, events.FleetSubjects} {
		sub, err := s.nc.Subscribe(subj, func(m *nats.Msg) { fn(m.Subject) })
		if err != nil {
			return fmt.Errorf("watch %s: %w", subj, err)
		}
		sub.SetPendingLimits(-1, 64<<20)
		subs = append(subs, sub)
	}
	<-ctx.Done()
	for _, sub := range subs {
		_ = sub.Unsubscribe()
	}
	return nil
}
