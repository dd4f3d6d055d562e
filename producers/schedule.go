package producers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// Sink stores an event; the agent's OUTBOX is the real one. Publish returns
// once the event is stored.
type Sink interface {
	Publish(ctx context.Context, e events.Event, object string) error
}

// finisher is implemented by producers that stop on their own (a heartbeat
// with a limit).
type finisher interface{ Done() bool }

// Run runs every built producer until ctx ends: collectors at once and then
// every interval, streamers continuously (restarted after a failure). Each
// observation becomes an event from pinkie://<host>/<producer> and goes to
// sink. A failing producer never stops the others; its error is logged
// when it starts or changes, not at every run.
func Run(ctx context.Context, env Env, built []Built, sink Sink) {
	var wg sync.WaitGroup
	for _, b := range built {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &runner{env: env, b: b, sink: sink}
			r.env.Log = env.Log.With("producer", b.Name)
			if b.Streamer != nil {
				r.stream(ctx)
			} else {
				r.collect(ctx)
			}
		}()
	}
	wg.Wait()
}

type runner struct {
	env     Env
	b       Built
	sink    Sink
	lastErr string
}

// report logs err when it differs from the last one, and a recovery once.
func (r *runner) report(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == r.lastErr {
		return
	}
	switch {
	case err == nil:
		r.env.Log.Info("producer recovered")
	case errors.Is(err, ErrNotApplicable):
		r.env.Log.Debug("producer has nothing to report on this host", "err", err)
	case errors.Is(err, ErrNoAccess):
		r.env.Log.Warn("producer may not read what it reports; until access is set up it reports nothing", "err", err)
	default:
		r.env.Log.Error("producer failed", "err", err)
	}
	r.lastErr = msg
}

func (r *runner) collect(ctx context.Context) {
	every := r.b.Interval
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if f, ok := r.b.Collector.(finisher); ok && f.Done() {
			r.env.Log.Info("producer finished")
			return
		}
		obs, err := r.b.Collector.Collect(ctx, r.env)
		if ctx.Err() != nil {
			return // stopped mid-collection: not the producer's failure
		}
		// A producer may report what it could and an error for the rest:
		// publish what it saw either way.
		perr := r.publish(ctx, obs)
		if err == nil {
			err = perr
		}
		r.report(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *runner) stream(ctx context.Context) {
	emit := func(ctx context.Context, o Observation) error { return r.publish(ctx, []Observation{o}) }
	for backoff := time.Second; ctx.Err() == nil; backoff = min(backoff*2, 5*time.Minute) {
		err := r.b.Streamer.Stream(ctx, r.env, emit)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrNotApplicable) {
			r.report(err) // nothing to follow on this host
			return
		}
		if err == nil {
			err = fmt.Errorf("stream ended")
		}
		r.report(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

func (r *runner) publish(ctx context.Context, obs []Observation) error {
	for _, o := range obs {
		e, err := BuildEvent(r.env.Host, r.b.Name, r.env.Now(), o)
		if err != nil {
			return err
		}
		if err := r.sink.Publish(ctx, e, o.Object); err != nil {
			return fmt.Errorf("publish %s: %w", o.Kind, err)
		}
	}
	return nil
}

// BuildEvent turns an observation of host's producer into its event.
func BuildEvent(host, producer string, t time.Time, o Observation) (events.Event, error) {
	k, ok := events.Lookup(o.Kind)
	if !ok {
		return events.Event{}, fmt.Errorf("producer %s observed unknown kind %q", producer, o.Kind)
	}
	var opts []events.Option
	if o.Object != "" {
		opts = append(opts, events.WithSubject(o.Object))
	}
	if o.ID != "" {
		opts = append(opts, events.WithID(o.ID))
	}
	return events.New(k, host, producer, t, o.Data, opts...)
}
