package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/pinkiefleet/pinkie/events"
)

// Store keeps pending messages (jobs) across restarts. Jobs are written
// with compare-and-set on the revision last read or written, so two
// notifiers on one store (a clustered hub's old and new leader, for the
// second they overlap) never both send the same message: the one whose
// write fails takes the stored job instead.
type Store interface {
	List(ctx context.Context) (map[string]Entry, error)
	// Get returns the key's entry; found is false when there is none.
	Get(ctx context.Context, key string) (e Entry, found bool, err error)
	// Put writes the key whatever its revision.
	Put(ctx context.Context, key string, value []byte) error
	// Update writes the key if its revision is rev (0: if it does not
	// exist) and returns the new revision, or ErrConflict.
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Delete removes the key if its revision is rev (0: whatever it is),
	// or returns ErrConflict.
	Delete(ctx context.Context, key string, rev uint64) error
}

// Entry is a stored value and its revision (events.KVEntry, so a store
// implemented elsewhere, streams.KVStore, satisfies Store).
type Entry = events.KVEntry

// ErrConflict is a Store's refusal of a write whose revision is not the
// key's: another notifier changed it.
var ErrConflict = events.ErrKVConflict

// Job is a pending message for one channel.
type Job struct {
	// ID is the message id: derived from the channel and the first alert
	// event, so it is the same after a restart (the Matrix txnId).
	ID      string     `json:"id"`
	Channel string     `json:"channel"`
	Alerts  []JobAlert `json:"alerts"`
	// Due is when the group closes and the first attempt is made.
	Due          time.Time  `json:"due"`
	Attempt      int        `json:"attempt"`
	FirstAttempt *time.Time `json:"first_attempt,omitempty"`
	NextAttempt  time.Time  `json:"next_attempt"`
	LastError    string     `json:"last_error,omitempty"`
	// SendingUntil is set while an attempt is under way: no other
	// notifier attempts the job before then (a sender that died leaves
	// it to the next after that).
	SendingUntil *time.Time `json:"sending_until,omitempty"`
	// SendingBy is the node/instance that took the lease.
	SendingBy string `json:"sending_by,omitempty"`

	rev uint64 // the store revision last read or written
}

// due is when the job may be attempted next.
func (j *Job) due() time.Time {
	if j.SendingUntil != nil && j.SendingUntil.After(j.NextAttempt) {
		return *j.SendingUntil
	}
	return j.NextAttempt
}

// sendLease is how long an attempt holds a job against other notifiers:
// longer than a send may take.
const sendLease = 45 * time.Second

// JobAlert is one alert event in a job.
type JobAlert struct {
	EventID string       `json:"event_id"`
	Seq     uint64       `json:"seq"`
	Alert   events.Alert `json:"alert"`
}

func (j *Job) key() string { return "job." + j.Channel + "." + j.ID }

const (
	seenKey  = "_seen"
	routeKey = "_route"
)

// routeDecision is the channels an alert was routed to, stored before its
// jobs when a channel routes by tags: if handling it is interrupted (a
// crash, a store error) and the alert comes again, it goes to the same
// channels even if a newer declared fleet arrived in between.
type routeDecision struct {
	Seq      uint64   `json:"seq"`
	EventID  string   `json:"event_id"`
	FleetSeq uint64   `json:"fleet_seq"`
	Channels []string `json:"channels"`
}

// Notifier routes alert events to channels and delivers them.
type Notifier struct {
	groupWait, maxRetry time.Duration
	channels            []Channel
	store               Store
	pub                 events.Publisher
	clock               func() time.Time
	log                 *slog.Logger
	kind                events.Kind

	tagRoutes bool

	mu       sync.Mutex
	jobs     map[string]*Job // by key
	seen     uint64
	fleet    Fleet
	decision routeDecision
	wake     map[string]chan struct{}

	node, self string // the node this notifier runs on, and node/instance
}

// Options configure a Notifier.
type Options struct {
	Config   Config
	Channels []Channel
	Store    Store
	Pub      events.Publisher
	Clock    func() time.Time
	Log      *slog.Logger
	// Node names the hub node this notifier runs on. A lease on a job
	// (SendingUntil) taken by an earlier run on the same node is void:
	// that run is gone, so a restarted hub retries at once.
	Node string
}

// New builds a notifier.
func New(o Options) *Notifier {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	n := &Notifier{
		groupWait: durationOr(o.Config.GroupWait, 30*time.Second),
		maxRetry:  o.Config.MaxRetry.D(),
		channels:  o.Channels, store: o.Store, pub: o.Pub, clock: o.Clock, log: o.Log,
		jobs: map[string]*Job{}, wake: map[string]chan struct{}{},
		node: o.Node, self: o.Node + "/" + strings.ReplaceAll(events.NewID(o.Clock()), "-", ""),
	}
	if n.maxRetry <= 0 {
		n.maxRetry = 24 * time.Hour
	}
	n.kind, _ = events.Lookup("notify.delivery")
	for _, c := range o.Channels {
		n.wake[c.Name()] = make(chan struct{}, 1)
		if len(c.Route().Tags) > 0 {
			n.tagRoutes = true
		}
	}
	return n
}

// RoutesByTag reports whether a channel routes by tags, so the notifier
// needs the declared fleet (SetFleet) before it handles alerts.
func (n *Notifier) RoutesByTag() bool { return n.tagRoutes }

// SetFleet makes f the declared fleet tag routes read, unless the notifier
// already has a later one (a higher FLEET sequence). It reports whether f
// was taken.
func (n *Notifier) SetFleet(f Fleet) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if f.Seq <= n.fleet.Seq && n.fleet.Tags != nil {
		return false
	}
	n.fleet = f
	return true
}

// Fleet returns the declared fleet tag routes read.
func (n *Notifier) Fleet() Fleet {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fleet
}

// Channels returns the configured channels.
func (n *Notifier) Channels() []Channel { return n.channels }

// Load restores pending jobs and the last handled alert sequence.
func (n *Notifier) Load(ctx context.Context) error {
	all, err := n.store.List(ctx)
	if err != nil {
		return fmt.Errorf("load pending notifications: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, e := range all {
		v := e.Value
		if k == seenKey {
			if err := json.Unmarshal(v, &n.seen); err != nil {
				return fmt.Errorf("notifier %s: %w", k, err)
			}
			continue
		}
		if k == routeKey {
			if err := json.Unmarshal(v, &n.decision); err != nil {
				return fmt.Errorf("notifier %s: %w", k, err)
			}
			continue
		}
		var j Job
		if err := json.Unmarshal(v, &j); err != nil {
			return fmt.Errorf("notifier %s: %w", k, err)
		}
		if n.channel(j.Channel) == nil {
			n.log.Warn("pending notification for a channel no longer configured; dropping it", "channel", j.Channel, "message_id", j.ID)
			_ = n.store.Delete(ctx, k, e.Rev)
			continue
		}
		j.rev = e.Rev
		n.voidOwnLease(&j)
		n.jobs[k] = &j
	}
	return nil
}

func (n *Notifier) channel(name string) Channel {
	for _, c := range n.channels {
		if c.Name() == name {
			return c
		}
	}
	return nil
}

// HandleAlert takes one stored alert event (stream sequence seq): each
// channel whose route matches gets it in its open group or a new job. It
// returns only once the jobs are stored, so the caller may then
// acknowledge the alert. A sequence already handled is ignored.
func (n *Notifier) HandleAlert(ctx context.Context, seq uint64, data []byte) error {
	var ev event.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return fmt.Errorf("%w: alert seq %d: %v", ErrPermanent, seq, err)
	}
	if ev.Type() != events.TypeOf("alert.firing") && ev.Type() != events.TypeOf("alert.resolved") {
		return nil
	}
	var a events.Alert
	if err := json.Unmarshal(ev.Data(), &a); err != nil {
		return fmt.Errorf("%w: alert seq %d: %v", ErrPermanent, seq, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if seq > 0 && seq <= n.seen {
		return nil
	}
	now := n.clock()
	if !a.Silenced {
		chans, err := n.route(ctx, seq, ev.ID(), a)
		if err != nil {
			return err
		}
		for _, c := range chans {
			if n.holds(c.Name(), ev.ID()) {
				// Stored before an interrupted handling of this alert.
				continue
			}
			j := n.openJob(c.Name(), now)
			if j == nil {
				due := now.Add(n.groupWait)
				j = &Job{ID: MessageID(c.Name(), ev.ID()), Channel: c.Name(), Due: due, NextAttempt: due}
			}
			j.Alerts = append(j.Alerts, JobAlert{EventID: ev.ID(), Seq: seq, Alert: a})
			if err := n.putJob(ctx, j); err != nil {
				if errors.Is(err, ErrConflict) {
					// Another notifier changed the group: take its
					// version; the alert comes again and joins that.
					n.adopt(ctx, j)
				} else {
					j.Alerts = j.Alerts[:len(j.Alerts)-1]
				}
				return err
			}
			n.jobs[j.key()] = j
			n.poke(c.Name())
		}
	}
	if seq > 0 {
		b, _ := json.Marshal(seq)
		if err := n.store.Put(ctx, seenKey, b); err != nil {
			return fmt.Errorf("store notifier position: %w", err)
		}
		n.seen = seq
	}
	return nil
}

// route returns the channels whose routes take the alert. With tag routes
// the decision is stored first, and an alert handled before (seq not yet
// marked seen) keeps the channels it was routed to then.
func (n *Notifier) route(ctx context.Context, seq uint64, eventID string, a events.Alert) ([]Channel, error) {
	var out []Channel
	if n.tagRoutes && seq > 0 && n.decision.Seq == seq && n.decision.EventID == eventID {
		for _, name := range n.decision.Channels {
			if c := n.channel(name); c != nil {
				out = append(out, c)
			}
		}
		return out, nil
	}
	for _, c := range n.channels {
		if c.Route().Matches(a, n.fleet) {
			out = append(out, c)
		}
	}
	if n.tagRoutes && seq > 0 && len(out) > 0 {
		d := routeDecision{Seq: seq, EventID: eventID, FleetSeq: n.fleet.Seq}
		for _, c := range out {
			d.Channels = append(d.Channels, c.Name())
		}
		b, _ := json.Marshal(d)
		if err := n.store.Put(ctx, routeKey, b); err != nil {
			return nil, fmt.Errorf("store notifier routing of alert seq %d: %w", seq, err)
		}
		n.decision = d
	}
	return out, nil
}

// holds reports whether a pending job of channel holds alert event eventID.
func (n *Notifier) holds(channel, eventID string) bool {
	for _, j := range n.jobs {
		if j.Channel != channel {
			continue
		}
		for _, a := range j.Alerts {
			if a.EventID == eventID {
				return true
			}
		}
	}
	return false
}

// MessageID is the id of the message that starts with alert event
// eventID on channel: the same on every retry and after restarts.
func MessageID(channel, eventID string) string {
	return "pinkie-" + strings.ReplaceAll(events.DeterministicID("notify", channel, eventID), "-", "")
}

// openJob returns the channel's group still collecting alerts, if any.
func (n *Notifier) openJob(channel string, now time.Time) *Job {
	for _, j := range n.jobs {
		if j.Channel == channel && j.Attempt == 0 && now.Before(j.Due) {
			return j
		}
	}
	return nil
}

func (n *Notifier) putJob(ctx context.Context, j *Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	rev, err := n.store.Update(ctx, j.key(), b, j.rev)
	if err != nil {
		return fmt.Errorf("store notification %s: %w", j.ID, err)
	}
	j.rev = rev
	return nil
}

// adopt replaces j (in memory) by what the store holds for it, written
// by another notifier; without one, j is dropped. The caller holds n.mu.
func (n *Notifier) adopt(ctx context.Context, j *Job) {
	e, found, err := n.store.Get(ctx, j.key())
	if err != nil {
		n.log.Error("read a notification another notifier changed", "channel", j.Channel, "message_id", j.ID, "err", err)
		// Keep it, but not before another notifier's lease would end.
		until := n.clock().Add(sendLease)
		j.SendingUntil = &until
		return
	}
	if !found {
		n.log.Info("another notifier finished this notification", "channel", j.Channel, "message_id", j.ID)
		delete(n.jobs, j.key())
		return
	}
	var stored Job
	if err := json.Unmarshal(e.Value, &stored); err != nil {
		n.log.Error("read a notification another notifier changed", "channel", j.Channel, "message_id", j.ID, "err", err)
		delete(n.jobs, j.key())
		return
	}
	n.log.Info("another notifier has this notification; following its state", "channel", j.Channel, "message_id", j.ID, "attempt", stored.Attempt)
	stored.rev = e.Rev
	n.voidOwnLease(&stored)
	*j = stored
}

// voidOwnLease drops a lease an earlier run on this node took: that run
// ended (crashed or stopped) before it could clear it.
func (n *Notifier) voidOwnLease(j *Job) {
	if n.node != "" && j.SendingUntil != nil && j.SendingBy != n.self && strings.HasPrefix(j.SendingBy, n.node+"/") {
		j.SendingUntil, j.SendingBy = nil, ""
	}
}

func (n *Notifier) poke(channel string) {
	select {
	case n.wake[channel] <- struct{}{}:
	default:
	}
}

// Run delivers pending jobs, one loop per channel, until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, c := range n.channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.runChannel(ctx, c)
		}()
	}
	wg.Wait()
	return nil
}

// next returns the channel's job due first.
func (n *Notifier) next(channel string) *Job {
	n.mu.Lock()
	defer n.mu.Unlock()
	var best *Job
	for _, j := range n.jobs {
		if j.Channel == channel && (best == nil || j.due().Before(best.due()) ||
			(j.due().Equal(best.due()) && j.ID < best.ID)) {
			best = j
		}
	}
	return best
}

func (n *Notifier) runChannel(ctx context.Context, c Channel) {
	for ctx.Err() == nil {
		j := n.next(c.Name())
		wait := time.Hour
		if j != nil {
			n.mu.Lock()
			wait = j.due().Sub(n.clock())
			n.mu.Unlock()
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-n.wake[c.Name()]:
				t.Stop()
				continue
			case <-t.C:
				continue
			}
		}
		n.attempt(ctx, c, j)
	}
}

// backoffFor is the delay after attempt n: 1s, 2s, 4s … at most 5 min.
func backoffFor(n int) time.Duration {
	d := time.Second
	for i := 1; i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

func (n *Notifier) attempt(ctx context.Context, c Channel, j *Job) {
	n.mu.Lock()
	now := n.clock()
	if _, ok := n.jobs[j.key()]; !ok || now.Before(j.due()) {
		// Taken over by another notifier since it was picked.
		n.mu.Unlock()
		return
	}
	prev := *j
	j.Attempt++
	if j.FirstAttempt == nil {
		j.FirstAttempt = &now
	}
	lease := now.Add(sendLease)
	j.SendingUntil, j.SendingBy = &lease, n.self
	// Persist the attempt before sending: the group is closed from now
	// on, and no other notifier sends it while the lease holds.
	if err := n.putJob(ctx, j); err != nil {
		if errors.Is(err, ErrConflict) {
			n.adopt(ctx, j)
			n.mu.Unlock()
			return
		}
		*j = prev
		n.mu.Unlock()
		n.log.Error("store notification attempt", "channel", c.Name(), "message_id", j.ID, "err", err)
		n.sleep(ctx, time.Second)
		return
	}
	msg := Message{ID: j.ID}
	for _, a := range j.Alerts {
		msg.Alerts = append(msg.Alerts, a.Alert)
	}
	n.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	start := time.Now()
	err := c.Send(sctx, msg)
	cancel()
	took := time.Since(start)
	if ctx.Err() != nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now = n.clock()
	outcome := events.OutcomeDelivered
	switch {
	case err == nil:
	case errors.Is(err, ErrPermanent) || now.Sub(*j.FirstAttempt) >= n.maxRetry:
		outcome = events.OutcomeFailed
	default:
		outcome = events.OutcomeRetrying
	}
	if outcome == events.OutcomeRetrying {
		j.NextAttempt, j.LastError, j.SendingUntil, j.SendingBy = now.Add(backoffFor(j.Attempt)), err.Error(), nil, ""
		if perr := n.putJob(ctx, j); errors.Is(perr, ErrConflict) {
			n.adopt(ctx, j)
		} else if perr != nil {
			n.log.Error("store notification retry", "channel", c.Name(), "message_id", j.ID, "err", perr)
		}
		n.log.Warn("notification not delivered; will retry", "channel", c.Name(), "message_id", j.ID, "attempt", j.Attempt, "next", j.NextAttempt, "err", err)
	} else {
		if derr := n.store.Delete(ctx, j.key(), j.rev); derr != nil {
			n.log.Error("remove delivered notification", "channel", c.Name(), "message_id", j.ID, "err", derr)
		}
		delete(n.jobs, j.key())
		if err != nil {
			n.log.Error("notification failed; giving up", "channel", c.Name(), "message_id", j.ID, "attempt", j.Attempt, "err", err)
		} else {
			n.log.Info("notification delivered", "channel", c.Name(), "message_id", j.ID, "alerts", len(j.Alerts), "attempt", j.Attempt)
		}
	}
	n.audit(ctx, c, j, outcome, err, took)
}

func (n *Notifier) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (n *Notifier) audit(ctx context.Context, c Channel, j *Job, outcome string, err error, took time.Duration) {
	d := events.NotifyDelivery{Channel: c.Name(), Type: c.Type(), Outcome: outcome, MessageID: j.ID, Attempt: j.Attempt, DurationMs: took.Milliseconds()}
	for _, a := range j.Alerts {
		d.AlertEventIDs = append(d.AlertEventIDs, a.EventID)
	}
	if err != nil {
		d.Error = err.Error()
	}
	if outcome == events.OutcomeRetrying {
		t := j.NextAttempt.UTC()
		d.NextAttempt = &t
	}
	e, berr := events.New(n.kind, "hub", "notifier", n.clock(), d,
		events.WithID(events.DeterministicID("notify", j.ID, fmt.Sprint(j.Attempt), outcome)), events.WithSubject(j.ID))
	if berr != nil {
		n.log.Error("build delivery audit", "err", berr)
		return
	}
	if _, perr := n.pub.Publish(ctx, events.NotifySubject(c.Name(), outcome), e); perr != nil {
		n.log.Error("publish delivery audit", "channel", c.Name(), "err", perr)
	}
}

// Pending returns the pending jobs, sorted by channel and id (for tests
// and diagnostics).
func (n *Notifier) Pending() []Job {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Job
	for _, j := range n.jobs {
		out = append(out, *j)
	}
	sort.Slice(out, func(i, k int) bool {
		if out[i].Channel != out[k].Channel {
			return out[i].Channel < out[k].Channel
		}
		return out[i].ID < out[k].ID
	})
	return out
}

// Test sends a test message to a channel at once and returns the result.
func (n *Notifier) Test(ctx context.Context, channel string) error {
	c := n.channel(channel)
	if c == nil {
		var names []string
		for _, c := range n.channels {
			names = append(names, c.Name())
		}
		return fmt.Errorf("no channel %q (configured: %s)", channel, strings.Join(names, ", "))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.Send(ctx, Message{ID: "pinkie-test-" + strings.ReplaceAll(events.NewID(n.clock()), "-", ""), Test: true})
}
