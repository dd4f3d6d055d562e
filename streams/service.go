package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// HubService is a long-running consumer inside the hub (projector,
// alerter, notifier, deploy planner). Run gets the hub once its streams and
// buckets exist and returns when ctx ends; an error is logged and the
// service restarted after a pause.
type HubService interface {
	Name() string
	Run(ctx context.Context, h *Hub) error
}

// AgentService is a long-running part of an agent besides its producers
// (the deploy activator, the builder).
type AgentService interface {
	Name() string
	Run(ctx context.Context, a *Agent) error
}

// ErrPermanent marks a handler error that redelivery cannot fix: the
// message is terminated (not redelivered) with the error as the reason.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err as a permanent failure.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// Handler decides about one message: nil acknowledges it, a Permanent
// error terminates it, any other error redelivers it after a backoff.
type Handler func(ctx context.Context, m jetstream.Msg) error

// backoff is the redelivery delay after n failed deliveries.
func backoff(n uint64) time.Duration {
	steps := []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}
	if n == 0 {
		n = 1
	}
	if int(n) > len(steps) {
		return steps[len(steps)-1]
	}
	return steps[n-1]
}

// Consume runs handler over a durable consumer (created or updated from
// cfg, explicit acks) until ctx ends. Messages are handled one at a time,
// in order.
func Consume(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig, handler Handler) error {
	if cfg.AckPolicy == jetstream.AckNonePolicy {
		cfg.AckPolicy = jetstream.AckExplicitPolicy
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	err = eachMessage(ctx, cons, []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(256)}, func(m jetstream.Msg) error {
		herr := handler(ctx, m)
		switch {
		case herr == nil:
			_ = m.Ack()
		case errors.Is(herr, ErrPermanent):
			_ = m.TermWithReason(herr.Error())
		default:
			var n uint64 = 1
			if md, err := m.Metadata(); err == nil {
				n = md.NumDelivered
			}
			_ = m.NakWithDelay(backoff(n))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("consume %s: %w", cfg.Durable, err)
	}
	return nil
}

// eachMessage hands fn each message cons delivers, in order, until ctx
// ends (nil), the iterator fails or fn returns an error; the iterator is
// stopped on every return.
func eachMessage(ctx context.Context, cons jetstream.Consumer, opts []jetstream.PullMessagesOpt, fn func(jetstream.Msg) error) error {
	it, err := cons.Messages(opts...)
	if err != nil {
		return err
	}
	defer it.Stop()
	defer context.AfterFunc(ctx, it.Stop)()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return err
		}
		if err := fn(m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// ConsumeRecent runs handler over the durable consumer cfg of stream, as
// Consume does. A consumer that does not exist yet starts with the
// messages of the last `recent` (a first configuration does not replay all
// of the stream's history); an existing one keeps its configuration.
func ConsumeRecent(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig, recent time.Duration, handler Handler) error {
	if c, err := js.Consumer(ctx, stream, cfg.Durable); err == nil {
		cfg = c.CachedInfo().Config
	} else {
		start := time.Now().Add(-recent)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	return Consume(ctx, js, stream, cfg, handler)
}

// runServices runs each service until ctx ends, restarting a failed one.
func runServices[T any](ctx context.Context, log interface {
	Error(string, ...any)
}, services []T, name func(T) string, run func(context.Context, T) error, done func()) {
	for _, s := range services {
		go func() {
			defer done()
			for pause := time.Second; ctx.Err() == nil; pause = min(pause*2, time.Minute) {
				err := run(ctx, s)
				if ctx.Err() != nil {
					return
				}
				log.Error("service stopped; restarting", "service", name(s), "err", err, "after", pause)
				select {
				case <-ctx.Done():
					return
				case <-time.After(pause):
				}
			}
		}()
	}
}
