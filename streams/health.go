package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// HealthOptions say what the hub calls unhealthy and when it gives up.
// Zero values take the defaults.
type HealthOptions struct {
	// IngestLagMessages: more INGEST messages than this not yet checked
	// (stream last sequence − the ingest consumer's ack floor) is not ok
	// (default 10,000).
	IngestLagMessages uint64
	// IngestLagAge: the oldest unchecked INGEST message older than this is
	// not ok (default 60s).
	IngestLagAge time.Duration
	// ConsumerCheck is how often the hub looks up its own consumers, as a
	// backstop to the deletion advisories (default 5s).
	ConsumerCheck time.Duration
	// FailAfter: JetStream disabled (nats-server does that when the disk
	// is full) or forwards failing with storage errors for this long makes
	// the hub fail, so that its service manager restarts it (default 10s
	// for JetStream disabled; storage errors get three times as long).
	FailAfter time.Duration
	// ServiceLoop: a hub service that stopped this many times within
	// ServiceLoopWindow is restarting in a loop (defaults 3 and 5m).
	ServiceLoop       int
	ServiceLoopWindow time.Duration
}

func (o HealthOptions) withDefaults() HealthOptions {
	if o.IngestLagMessages == 0 {
		o.IngestLagMessages = 10000
	}
	if o.IngestLagAge <= 0 {
		o.IngestLagAge = time.Minute
	}
	if o.ConsumerCheck <= 0 {
		o.ConsumerCheck = 5 * time.Second
	}
	if o.FailAfter <= 0 {
		o.FailAfter = 10 * time.Second
	}
	if o.ServiceLoop <= 0 {
		o.ServiceLoop = 3
	}
	if o.ServiceLoopWindow <= 0 {
		o.ServiceLoopWindow = 5 * time.Minute
	}
	return o
}

// healthState is what the hub learns about itself as it runs.
type healthState struct {
	mu sync.Mutex
	// jsDownSince is when JetStream was first seen disabled.
	jsDownSince time.Time
	// storeErrSince is when forwards started failing with a storage
	// error (the disk), storeFullSince with the store at its limit;
	// both reset by a stored forward.
	storeErrSince, storeFullSince time.Time
	lastStoreErr                  string
	// stops are the recent stops of each hub service.
	stops   map[string][]time.Time
	stopErr map[string]string
	// failed is closed when the hub gives up; err says why.
	failed chan struct{}
	err    error
}

func (s *healthState) init() {
	s.stops, s.stopErr, s.failed = map[string][]time.Time{}, map[string]string{}, make(chan struct{})
}

// storeErrorKind sorts a failed forward: "full" when the store is at its
// limit (JetStream refuses it as insufficient resources; waiting can
// help, as old messages expire), "storage" when the store could not write
// (a full disk, an I/O error, or no answer at all: nats-server does not
// answer a publish its store failed to write).
func storeErrorKind(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == 10023 || apiErr.ErrorCode == 10047 || apiErr.ErrorCode == 10002):
		return "full"
	case errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum"):
		return "full"
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		return "unavailable"
	default:
		return "storage"
	}
}

func (s *healthState) storeFailed(err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastStoreErr = err.Error()
	switch storeErrorKind(err) {
	case "full":
		if s.storeFullSince.IsZero() {
			s.storeFullSince = now
		}
	case "storage":
		if s.storeErrSince.IsZero() {
			s.storeErrSince = now
		}
	}
}

func (s *healthState) stored() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeErrSince, s.storeFullSince, s.lastStoreErr = time.Time{}, time.Time{}, ""
}

func (s *healthState) serviceStopped(name string, err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stops[name] = append(s.stops[name], now)
	if n := len(s.stops[name]); n > 32 {
		s.stops[name] = s.stops[name][n-32:]
	}
	if err != nil {
		s.stopErr[name] = err.Error()
	}
}

// Failed is closed when the hub has given up (JetStream disabled, storage
// failing): the caller should Close it and exit non-zero, so that the
// service manager starts it again. Err says why.
func (h *Hub) Failed() <-chan struct{} { return h.health.failed }

// Err is why the hub failed, or nil.
func (h *Hub) Err() error {
	h.health.mu.Lock()
	defer h.health.mu.Unlock()
	return h.health.err
}

func (h *Hub) fail(err error) {
	h.health.mu.Lock()
	defer h.health.mu.Unlock()
	if h.health.err != nil {
		return
	}
	h.health.err = err
	close(h.health.failed)
	h.log.Error("the hub cannot go on; exiting so that its service manager restarts it", "err", err)
}

// watchHealth notices JetStream disabled and storage failing for good,
// and makes the hub fail after FailAfter. JetStream stays disabled once
// nats-server has turned it off (out of disk space), and a store that
// failed to write keeps failing until it is opened again, so the way back
// is a restart: it reopens the store, recovers its last good state, and
// starts the ingest check just past its ack floor, where nothing
// acknowledged is lost.
func (h *Hub) watchHealth(ctx context.Context) {
	defer h.wg.Done()
	o := h.opts.Health
	t := time.NewTicker(min(time.Second, o.FailAfter/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		on := h.srv.JetStreamEnabled()
		h.health.mu.Lock()
		var down, storeErr time.Duration
		if on {
			h.health.jsDownSince = time.Time{}
		} else if h.health.jsDownSince.IsZero() {
			h.health.jsDownSince = now
			h.log.Error("JetStream is disabled (nats-server turns it off when the disk is full)", "exit_after", o.FailAfter)
		} else {
			down = now.Sub(h.health.jsDownSince)
		}
		if !h.health.storeErrSince.IsZero() {
			storeErr = now.Sub(h.health.storeErrSince)
		}
		lastErr := h.health.lastStoreErr
		h.health.mu.Unlock()
		switch {
		case down >= o.FailAfter:
			h.fail(fmt.Errorf("JetStream disabled for %s (out of disk space?)", down.Round(time.Second)))
		case storeErr >= 3*o.FailAfter:
			h.fail(fmt.Errorf("storing forwards failed for %s: %s", storeErr.Round(time.Second), lastErr))
		}
	}
}

// IngestLag is how far the ingest check is behind.
type IngestLag struct {
	// Messages in INGEST not yet checked.
	Messages uint64 `json:"messages"`
	// Seconds since the oldest of them arrived.
	Seconds float64 `json:"seconds"`
}

// ingestLag reads INGEST and the ingest consumer.
func (h *Hub) ingestLag(ctx context.Context) (IngestLag, error) {
	st, err := h.js.Stream(ctx, IngestStream)
	if err != nil {
		return IngestLag{}, fmt.Errorf("read %s: %w", IngestStream, err)
	}
	c, err := h.js.Consumer(ctx, IngestStream, IngestConsumer)
	if err != nil {
		return IngestLag{}, fmt.Errorf("read the ingest consumer: %w", err)
	}
	state := st.CachedInfo().State
	floor := max(c.CachedInfo().AckFloor.Stream, state.FirstSeq-min(state.FirstSeq, 1))
	if state.LastSeq <= floor {
		return IngestLag{}, nil
	}
	lag := IngestLag{Messages: state.LastSeq - floor}
	if m, err := st.GetMsg(ctx, floor+1, jetstream.WithGetMsgSubject(">")); err == nil {
		lag.Seconds = max(time.Since(m.Time).Seconds(), 0)
	}
	return lag, nil
}

// Health is what /healthz reports. Problems never name a host; Hosts,
// Connected and Details, which do, go to trusted clients only (loopback,
// or the metrics bearer token).
type Health struct {
	OK        bool     `json:"ok"`
	JetStream bool     `json:"jetstream"`
	Problems  []string `json:"problems,omitempty"`
	// Ingest is how far the ingest check is behind (absent when it cannot
	// be read).
	Ingest *IngestLag `json:"ingest,omitempty"`
	// ConsumersRecreated counts the hub's own consumers it found missing
	// and recreated since it started.
	ConsumersRecreated uint64       `json:"consumers_recreated"`
	Recreated          []recreation `json:"recreated,omitempty"`
	Hosts              []string     `json:"hosts,omitempty"`
	Connected          []string     `json:"connected,omitempty"`
	Details            []string     `json:"details,omitempty"`
}

// health assesses the hub now.
func (h *Hub) healthNow(ctx context.Context, trusted bool) Health {
	o := h.opts.Health
	hl := Health{JetStream: h.srv.JetStreamEnabled()}
	var details []string
	if !hl.JetStream {
		hl.Problems = append(hl.Problems, "JetStream is disabled (nats-server turns it off when the disk is full); the hub exits so that it is restarted")
	}
	if h.nc.Status() != 1 { // nats.CONNECTED
		hl.Problems = append(hl.Problems, "hub services are not connected")
	}
	if hl.JetStream {
		if lag, err := h.ingestLag(ctx); err == nil {
			hl.Ingest = &lag
			if lag.Messages > o.IngestLagMessages {
				hl.Problems = append(hl.Problems, fmt.Sprintf("ingest lags: %d messages not yet checked (threshold %d)", lag.Messages, o.IngestLagMessages))
			}
			if lag.Seconds > o.IngestLagAge.Seconds() {
				hl.Problems = append(hl.Problems, fmt.Sprintf("ingest lags: the oldest unchecked message arrived %.0fs ago (threshold %s)", lag.Seconds, o.IngestLagAge))
			}
		} else if errors.Is(err, jetstream.ErrConsumerNotFound) {
			hl.Problems = append(hl.Problems, "the ingest consumer is missing: nothing is checked until the hub recreates it")
			h.checkConsumersSoon()
		} else {
			hl.Problems = append(hl.Problems, "ingest lag unknown: "+err.Error())
		}
	}
	hl.Problems = append(hl.Problems, h.clusterProblems()...)
	problems, missing := h.missingConsumers()
	hl.Problems = append(hl.Problems, problems...)
	details = append(details, missing...)
	h.health.mu.Lock()
	now := time.Now()
	if since := h.health.storeErrSince; !since.IsZero() {
		hl.Problems = append(hl.Problems, fmt.Sprintf("the store fails to write (for %s): %s", now.Sub(since).Round(time.Second), h.health.lastStoreErr))
	}
	if since := h.health.storeFullSince; !since.IsZero() {
		hl.Problems = append(hl.Problems, fmt.Sprintf("the store is full (for %s): ingest cannot forward: %s", now.Sub(since).Round(time.Second), h.health.lastStoreErr))
	}
	var looping []string
	for name, stops := range h.health.stops {
		n := 0
		for _, at := range stops {
			if now.Sub(at) <= o.ServiceLoopWindow {
				n++
			}
		}
		if n >= o.ServiceLoop {
			looping = append(looping, fmt.Sprintf("hub service %s is restarting in a loop (%d stops in %s; last error: %s)", name, n, o.ServiceLoopWindow, h.health.stopErr[name]))
		}
	}
	h.health.mu.Unlock()
	sort.Strings(looping)
	hl.Problems = append(hl.Problems, looping...)
	hl.OK = len(hl.Problems) == 0
	h.watch.mu.Lock()
	hl.ConsumersRecreated = h.watch.count
	if trusted {
		hl.Recreated = append([]recreation(nil), h.watch.recreated...)
	}
	h.watch.mu.Unlock()
	if trusted {
		hl.Hosts, hl.Connected, hl.Details = h.Hosts(), []string{}, details
		for host := range h.connectedAgents() {
			hl.Connected = append(hl.Connected, host)
		}
		sort.Strings(hl.Connected)
	}
	return hl
}

func (h *Hub) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	hl := h.healthNow(ctx, h.trusted(r))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !hl.OK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(hl)
}
