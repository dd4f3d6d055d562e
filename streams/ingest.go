package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// ingestSourceHeader carries the Nats-Stream-Source header of the INGEST
// message into HOSTS (the server reserves Nats-Stream-Source itself), so a
// reader can still see which source delivered an event.
const ingestSourceHeader = "Pinkie-Stream-Source"

// pendingPub is one INGEST message whose forward (to HOSTS or DEADLETTER)
// was published asynchronously and awaits its ack.
type pendingPub struct {
	src    *nats.Msg // the INGEST message; nil for a hub event
	out    *nats.Msg
	future jetstream.PubAckFuture
	host   string
	kind   string
	dead   bool
	// stop marks stopIngest's marker: everything before it is settled.
	stop bool
	// hubDone, for an event the hub itself writes into HOSTS (ingest.budget),
	// gets the outcome of its forward.
	hubDone chan error
}

// startIngest runs the ingest check: a durable consumer on INGEST whose
// handler decides about each message, a publisher that forwards it
// asynchronously to HOSTS or DEADLETTER, and an acker that waits for the
// forwards' acks, in order, and only then acknowledges (cumulatively) the
// INGEST messages. A crash in between delivers them again, and each
// forward's Nats-Msg-Id makes the second copy a duplicate.
func (h *Hub) startIngest(ctx context.Context) error {
	// The check acknowledges in order (ack-all), so the consumer's ack
	// floor is where it stands. Recreating the consumer at every start just
	// past that floor makes whatever a previous run took but did not finish
	// come first, so per-host order holds across restarts (instead of
	// waiting for AckWait and arriving after newer events). Forwards already
	// stored are dropped as duplicates by their Nats-Msg-Id.
	var floor uint64
	// Right after a restart the server may be too busy to answer in time
	// (a thousand agents reconnecting with their backlogs): each step is
	// retried, not fatal.
	err := h.whileBusy(ctx, "read ingest consumer", func(ctx context.Context) error {
		old, err := h.js.Consumer(ctx, IngestStream, IngestConsumer)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil
		}
		if err == nil {
			floor = old.CachedInfo().AckFloor.Stream
		}
		return err
	})
	if err != nil {
		return err
	}
	h.ingestMu.Lock()
	defer h.ingestMu.Unlock()
	return h.runIngestFrom(ctx, floor)
}

// runIngestFrom replaces the ingest consumer (if there is one) with a new
// one delivering from just past floor, starts a run of the check on it and
// has the watcher keep it. Each step is retried while the server is busy.
// The caller holds h.ingestMu.
func (h *Hub) runIngestFrom(ctx context.Context, floor uint64) error {
	err := h.whileBusy(ctx, "reset ingest consumer", func(ctx context.Context) error {
		err := h.js.DeleteConsumer(ctx, IngestStream, IngestConsumer)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := h.whileBusy(ctx, "start the ingest check", func(ctx context.Context) error { return h.runIngest(ctx, floor) }); err != nil {
		return err
	}
	h.keepConsumer(IngestStream, IngestConsumer, "ingest", floor, h.recreateIngest)
	return nil
}

// busyWait bounds how long a hub step retries while the server is too
// busy to answer.
const busyWait = 2 * time.Minute

// whileBusy runs step until it succeeds, retrying for up to busyWait
// while it fails with a timeout (the server too busy to answer in time);
// any other error, or the last timeout, is returned as what failed.
func (h *Hub) whileBusy(ctx context.Context, what string, step func(context.Context) error) error {
	deadline := time.Now().Add(busyWait)
	for pause := 100 * time.Millisecond; ; pause = min(pause*2, 5*time.Second) {
		err := step(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoStreamResponse) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		h.log.Warn("the server is slow to answer; retrying", "step", what, "err", err, "after", pause)
		if !sleepCtx(ctx, pause) {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
	}
}

// ingestRun is one run of the ingest check, from its consumer's creation
// to its stop.
type ingestRun struct {
	chain     *forwardChain
	stopFetch context.CancelFunc
	fetchDone chan struct{}
	cancel    context.CancelFunc
	pubDone   chan struct{}
	ackerDone chan struct{}
}

// ingestConsumerConfig is the ingest check's consumer, delivering from
// just past floor (the ack floor of its previous incarnation).
func ingestConsumerConfig(floor uint64) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       IngestConsumer,
		Description:   "the hub's ingest check: valid events to HOSTS, others to DEADLETTER",
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: 20000,
	}
	if floor > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
	}
	return cfg
}

// runIngest creates the ingest consumer from just past floor and starts a
// run of the check on it. The caller holds h.ingestMu.
func (h *Hub) runIngest(parent context.Context, floor uint64) error {
	ctx, cancel := context.WithCancel(parent)
	if _, err := h.js.CreateOrUpdateConsumer(ctx, IngestStream, ingestConsumerConfig(floor)); err != nil {
		cancel()
		return fmt.Errorf("create ingest consumer: %w", err)
	}
	// The check reads INGEST with the client's pull subscription, which
	// hands over *nats.Msg: its wire size tells whether the header block
	// is exactly what the client parsed (see events.IngestMessage.HeaderSize).
	legacy, err := h.nc.JetStream()
	if err != nil {
		cancel()
		return fmt.Errorf("ingest consumer: %w", err)
	}
	sub, err := legacy.PullSubscribe("", IngestConsumer, nats.Bind(IngestStream, IngestConsumer))
	if err != nil {
		cancel()
		return fmt.Errorf("start ingest consumer: %w", err)
	}
	checker := h.check
	// Three goroutines in a row: the fetcher checks each message, the
	// publisher forwards it, the acker settles it. Each keeps the stream's
	// order.
	fetchCtx, stopFetch := context.WithCancel(ctx)
	chain := newForwardChain(h)
	run := &ingestRun{chain: chain, stopFetch: stopFetch, fetchDone: make(chan struct{}), cancel: cancel, pubDone: make(chan struct{}), ackerDone: make(chan struct{})}
	h.ingestSettled.Store(floor)
	h.checked = make(chan pendingPub, 4096)
	h.pending = make(chan pendingPub, 8192)
	h.ackerDone = run.ackerDone
	h.ingest = run
	go func() {
		defer close(run.pubDone)
		h.publishForwards(ctx, chain)
	}()
	go h.ackForwards(ctx, chain)
	go func() {
		defer close(run.fetchDone)
		h.fetchIngest(fetchCtx, ctx, run, sub, checker)
	}()
	return nil
}

// fetchIngest pulls INGEST messages in batches and checks each, until ctx
// ends; then it unsubscribes, leaving whatever it did not take for the
// next start. A message it took is always handed on (until runCtx ends):
// acks are cumulative, so one dropped before a later one is acknowledged
// would be lost.
func (h *Hub) fetchIngest(ctx, runCtx context.Context, run *ingestRun, sub *nats.Subscription, checker IngestCheck) {
	defer func() { _ = sub.Unsubscribe() }()
	gaps := &outboxGaps{}
	var delivered uint64 // the consumer's delivery sequence of the last message taken
	for ctx.Err() == nil {
		if !h.leadsNow() {
			h.fenced()
			return
		}
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		batch, err := sub.FetchBatch(1000, nats.Context(fctx))
		if err != nil {
			cancel()
			if ctx.Err() == nil {
				if errors.Is(err, nats.ErrConsumerDeleted) || errors.Is(err, nats.ErrConsumerNotFound) {
					h.checkConsumersSoon()
				}
				h.log.Debug("ingest fetch", "err", err)
				sleepCtx(ctx, 100*time.Millisecond)
			}
			continue
		}
		for msg := range batch.Messages() {
			if ctx.Err() != nil {
				break // the rest is redelivered at the next start
			}
			if !h.leadsNow() {
				// Nothing after this is forwarded or acknowledged by
				// this run: the next leader takes it from the ack floor.
				cancel()
				h.fenced()
				return
			}
			if md, err := msg.Metadata(); err == nil {
				if dseq := md.Sequence.Consumer; dseq > delivered+1 {
					// Deliveries this run never received (lost in flight while
					// the consumer's leader changed): the next ack, being
					// cumulative, would acknowledge them unchecked.
					cancel()
					h.log.Warn("the ingest consumer delivered messages this check never received; restarting it from what is stored",
						"last_delivery", delivered, "delivery", dseq, "stream_seq", md.Sequence.Stream)
					h.metrics.ingestRestarts.Inc()
					go h.restartIngest(run)
					return
				} else if dseq > delivered {
					delivered = dseq
				}
			}
			h.forward(runCtx, checker, gaps, msg)
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			if errors.Is(err, nats.ErrConsumerDeleted) || errors.Is(err, nats.ErrConsumerNotFound) {
				h.checkConsumersSoon()
			}
			h.log.Debug("ingest fetch", "err", err)
		}
		cancel()
	}
}

func (h *Hub) forward(ctx context.Context, checker IngestCheck, gaps *outboxGaps, msg *nats.Msg) {
	m := ingestMessage(msg)
	d := checker.Check(m)
	for backoff := 100 * time.Millisecond; d.Retry != nil; backoff = min(backoff*2, 5*time.Second) {
		h.log.Warn("ingest check could not decide; retrying", "subject", m.Subject, "err", d.Retry)
		_ = msg.InProgress()
		if !sleepCtx(ctx, backoff) {
			return
		}
		d = checker.Check(m)
	}
	if first, n := gaps.observe(d.Host, m.StreamSource()); n > 0 {
		h.log.Error("events of this host never reached the hub: its OUTBOX source skipped them, or they expired in the OUTBOX; they are lost",
			"host", d.Host, "outbox_seq", first, "count", n)
		h.metrics.outboxLost.WithLabelValues(d.Host).Add(float64(n))
	}
	h.budget.charge(d.Host, len(m.Payload))
	var out *nats.Msg
	p := pendingPub{src: msg, host: d.Host, kind: d.Kind}
	if d.Accepted() {
		// Deduplicate per host: another host's event with the same id
		// must not make this one a "duplicate".
		out = encodedEventMsg(d.Subject, msg.Data, events.HostMsgID(d.Host, d.ID))
		out.Header.Set(ingestSourceHeader, m.StreamSource())
	} else {
		var err error
		if out, err = deadLetterMsg(checker, m, d); err != nil {
			// Keep the reason even if the payload cannot be carried; a
			// nak would be lost to the cumulative acks.
			h.log.Error("build dead letter; keeping it without its payload", "subject", m.Subject, "err", err)
			if out, err = deadLetterMsg(checker, events.IngestMessage{Subject: m.Subject, Seq: m.Seq}, d); err != nil {
				// Only the JSON encoding of a few strings can fail here.
				h.log.Error("build dead letter; the event is dropped", "subject", m.Subject, "err", err)
				return
			}
		}
		p.dead = true
		h.log.Warn("event refused", "host", d.Host, "subject", m.Subject, "reason", d.Reason)
	}
	p.out = out
	if ctx.Err() != nil {
		return
	}
	select {
	case h.checked <- p:
	case <-ctx.Done():
	}
}

// ingestMessage is what the check needs of an INGEST message: its header
// as parsed and the size of the header block on the wire.
func ingestMessage(msg *nats.Msg) events.IngestMessage {
	m := events.IngestMessage{Subject: msg.Subject, Payload: msg.Data, Header: msg.Header}
	if md, err := msg.Metadata(); err == nil {
		m.Seq = md.Sequence.Stream
	}
	// Size is the wire size the client recorded: subject, reply, header
	// block and payload.
	m.HeaderSize = msg.Size() - len(msg.Subject) - len(msg.Reply) - len(msg.Data)
	return m
}

// sleepCtx waits for d or ctx, reporting whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// forwardChain keeps a run's forwards to HOSTS in the order the check
// made them. Forwards are pipelined; without it, one that fails (HOSTS
// without a leader for a moment) and is retried lands after newer ones
// that went through. So each forward to HOSTS says which stream sequence
// it expects to follow (Nats-Expected-Last-Sequence: the ingest check is
// HOSTS's only writer, so the next sequence is known): once one fails,
// every newer one fails too instead of overtaking it. The acker then
// retries them in order, without the expectation (everything before is
// settled by then), and the publisher holds new forwards until the acker
// has settled all it sent, so the pipeline starts again from a stored
// message. (Nats-Expected-Last-Msg-Id would need no sequence, but a
// clustered stream checks it only when applying, and nats-server 2.15
// takes a mismatch there for a write error that stalls the stream.)
type forwardChain struct {
	// lastSeq reads HOSTS's last sequence, where the chain starts.
	lastSeq func(context.Context) (uint64, error)
	next    uint64        // publisher: the sequence the next forward to HOSTS expects to follow; 0: read it from HOSTS first
	sent    uint64        // publisher: forwards handed to the acker
	done    atomic.Uint64 // acker: forwards settled
	broken  atomic.Bool   // a forward to HOSTS failed; set by the acker
	wake    chan struct{} // the acker settled one (capacity 1)
	log     *slog.Logger
}

// newForwardChain is a run's chain, starting from HOSTS's last sequence.
func newForwardChain(h *Hub) *forwardChain {
	return &forwardChain{wake: make(chan struct{}, 1), log: h.log, lastSeq: func(ctx context.Context) (uint64, error) {
		st, err := h.js.Stream(ctx, HostsStream)
		if err != nil {
			return 0, err
		}
		return st.CachedInfo().State.LastSeq, nil
	}}
}

// expectedLastSeqHeader is the JetStream header that makes a publish fail
// unless the stream's newest message has the given sequence.
const expectedLastSeqHeader = "Nats-Expected-Last-Sequence"

// wrongLastSequence reports whether err is JetStream's refusal of a
// publish whose Nats-Expected-Last-Sequence is not the stream's last.
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == 10071 || apiErr.ErrorCode == 10164)
}

// chained reports whether p's forward is ordered by the chain: accepted
// events for HOSTS, whose only writer is the ingest check.
func chained(p pendingPub) bool {
	return !p.dead && strings.HasPrefix(p.out.Subject, events.HostSubjectPrefix)
}

// link sets p's expectation on the forward before it. The chain starts
// (again) from HOSTS's last sequence at the run's start, after a break and
// after a failed read of it; each time it first waits until the acker has
// settled every forward sent, because one still in flight is not counted
// in that sequence: a forward chained past it would not fail when it
// fails, and would overtake it. It is false when ctx ends first.
func (c *forwardChain) link(ctx context.Context, p pendingPub) bool {
	if c.broken.Load() {
		c.next = 0
	}
	if !chained(p) {
		return true
	}
	if c.next == 0 {
		for c.done.Load() < c.sent {
			select {
			case <-c.wake:
			case <-ctx.Done():
				return false
			}
		}
		c.broken.Store(false)
		// Without HOSTS's last sequence p goes unchained, which is safe:
		// everything before it is settled. The next forward asks again,
		// once p is settled too.
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		last, err := c.lastSeq(ictx)
		if err != nil {
			c.log.Debug("read HOSTS's last sequence for the forward chain", "err", err)
			return true
		}
		c.next = last
	}
	p.out.Header.Set(expectedLastSeqHeader, strconv.FormatUint(c.next, 10))
	c.next++
	return true
}

// settled records that the acker finished one forward.
func (c *forwardChain) settled() {
	c.done.Add(1)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// publishForwards publishes checked messages asynchronously, in order,
// and hands them to the acker.
func (h *Hub) publishForwards(ctx context.Context, chain *forwardChain) {
	for {
		var p pendingPub
		select {
		case <-ctx.Done():
			return
		case p = <-h.checked:
		}
		if !p.stop {
			if !chain.link(ctx, p) {
				return
			}
			f, err := h.js.PublishMsgAsync(p.out)
			if err != nil {
				// Could not even queue it: the acker retries it in order.
				f = nil
			}
			p.future = f
		}
		select {
		case h.pending <- p:
			chain.sent++
		case <-ctx.Done():
			return
		}
		if p.stop {
			return
		}
	}
}

func deadLetterMsg(check IngestCheck, m events.IngestMessage, d events.IngestDecision) (*nats.Msg, error) {
	e, subj, err := check.DeadLetter(m, d)
	if err != nil {
		return nil, err
	}
	return EventMsg(subj, e)
}

// deadLetterFor turns an accepted message that its stream refused into a
// dead letter.
func (h *Hub) deadLetterFor(p pendingPub, reason string) (*nats.Msg, error) {
	m := ingestMessage(p.src)
	h.log.Warn("event refused", "host", p.host, "subject", m.Subject, "reason", reason)
	return deadLetterMsg(h.check, m, events.IngestDecision{Host: p.host, Kind: p.kind, Reason: reason})
}

// ackForwards waits for each forward's ack in order, retries a failed one
// until it is stored, then acks its INGEST message.
func (h *Hub) ackForwards(ctx context.Context, chain *forwardChain) {
	defer close(h.ackerDone)
	// Acks are cumulative (ack-all): acknowledge the newest settled message
	// when the queue runs dry or every ackEvery messages.
	const ackEvery = 512
	var last *nats.Msg
	unacked := 0
	flush := func() {
		if last != nil {
			if err := last.Ack(); err != nil {
				h.log.Debug("ack ingest messages", "err", err)
			}
			last, unacked = nil, 0
		}
	}
	defer flush()
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-h.pending:
			if p.stop { // everything before it is settled
				return
			}
			// Acks are cumulative: once one message is given up (the run
			// is stopping), none after it may be acknowledged.
			if ctx.Err() != nil || !h.settle(ctx, chain, p) {
				if p.hubDone != nil {
					p.hubDone <- errors.New("the ingest check stopped before the event was stored")
				}
				return
			}
			chain.settled()
			if p.hubDone != nil {
				p.hubDone <- nil
				continue
			}
			last = p.src
			unacked++
			if unacked >= ackEvery || len(h.pending) == 0 {
				flush()
			}
		}
	}
}

// settle waits for a forward's ack, retrying it until it is stored. It
// reports whether the message is done and may be acknowledged: not when
// the run stops, nor when the hub is closing and the forward still fails
// (INGEST keeps the message and delivers it again at the next start).
func (h *Hub) settle(ctx context.Context, chain *forwardChain, p pendingPub) bool {
	done, ack, err := h.awaitAck(ctx, p.future)
	if !done {
		return false
	}
	var apiErr *jetstream.APIError
	if err != nil && chained(p) {
		// Newer forwards fail behind this one; every one before it is
		// settled, so its retry needs no expectation.
		chain.broken.Store(true)
		p.out.Header.Del(expectedLastSeqHeader)
	}
	if p.src == nil && errors.As(err, &apiErr) && apiErr.Code == 400 && !wrongLastSequence(err) {
		h.log.Error("HOSTS refused an event of the hub's own; dropping it", "subject", p.out.Subject, "err", err)
		return true
	}
	if errors.As(err, &apiErr) && apiErr.Code == 400 && !p.dead && !wrongLastSequence(err) {
		// The stream refused this message for good (too large, a bad
		// header): retrying cannot help, so it becomes a dead letter.
		if dl, derr := h.deadLetterFor(p, "HOSTS refused it: "+apiErr.Description); derr == nil {
			p.out, p.dead = dl, true
			ack, err = h.js.PublishMsg(ctx, p.out)
		}
	}
	if errors.As(err, &apiErr) && apiErr.Code == 400 && p.dead {
		h.log.Error("dead letter refused by its stream; dropping it", "subject", p.out.Subject, "err", err)
		h.noteSettled(p)
		return true
	}
	if ack, err = h.retryForward(ctx, p, ack, err); err != nil {
		return false
	}
	if ack != nil && ack.Duplicate && !p.dead && p.src != nil {
		// Same host, same id: a redelivery is the same event again; the
		// same id with other content is refused, not silently dropped.
		if reason := h.duplicateConflict(ctx, p, ack); reason != "" {
			dl, derr := h.deadLetterFor(p, reason)
			if derr != nil {
				h.log.Error("build dead letter for a conflicting duplicate", "subject", p.out.Subject, "err", derr)
			} else {
				p.out, p.dead = dl, true
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				ack, err = h.js.PublishMsg(pctx, p.out)
				cancel()
				if _, err = h.retryForward(ctx, p, ack, err); err != nil {
					return false
				}
			}
		}
	}
	h.health.stored()
	h.noteSettled(p)
	switch {
	case p.src == nil: // the hub's own event: not ingested from the host
	case p.dead:
		h.metrics.deadLetters.WithLabelValues(p.host).Inc()
	default:
		h.metrics.ingested.WithLabelValues(p.host, p.kind).Inc()
	}
	return true
}

// storeHubEvent writes an event of the hub's own into HOSTS (ingest.budget)
// in line with the ingest check's forwards, so it takes its place in the
// forward chain instead of a sequence a pipelined forward expects. With no
// run of the check going, it publishes directly while holding ingestMu, so
// no run starts (and reads HOSTS's last sequence) meanwhile.
func (h *Hub) storeHubEvent(ctx context.Context, m *nats.Msg) error {
	h.ingestMu.Lock()
	run := h.ingest
	if run == nil {
		defer h.ingestMu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := h.js.PublishMsg(pctx, m)
		return err
	}
	checked := h.checked
	h.ingestMu.Unlock()
	done := make(chan error, 1)
	select {
	case checked <- pendingPub{out: m, hubDone: done, host: subjectHost(m.Subject)}:
	case <-run.pubDone:
		return errors.New("the ingest check stopped; retrying")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-run.ackerDone:
		return errors.New("the ingest check stopped before the event was stored; retrying")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// subjectHost is the host of a pinkie.host.<host>.… subject.
func subjectHost(subject string) string {
	host, _, _ := strings.Cut(strings.TrimPrefix(subject, events.HostSubjectPrefix), ".")
	return host
}

// retryForward retries p's forward until it is stored; it gives up (with
// an error, leaving the message unacknowledged for the next start) when ctx
// ends or the hub is closing.
func (h *Hub) retryForward(ctx context.Context, p pendingPub, ack *jetstream.PubAck, err error) (*jetstream.PubAck, error) {
	if err == nil {
		return ack, nil
	}
	h.metrics.storeErrors.WithLabelValues(storeErrorKind(err)).Inc()
	// The first retry goes at once. Forwards are pipelined: while HOSTS
	// had no leader (a node lost, a new one being elected) thousands of
	// them fail at once, and by the time the acker reaches them HOSTS is
	// usually back; waiting before each would take minutes.
	h.log.Debug("forward failed; sending it again", "subject", p.out.Subject, "err", err)
	ack, err = h.publishForward(ctx, p)
	var described time.Time
	for backoff := 100 * time.Millisecond; err != nil; backoff = min(backoff*2, 5*time.Second) {
		if errors.Is(err, jetstream.ErrNoStreamResponse) && time.Since(described) > 5*time.Second {
			// Nobody took the publish: say how the stream looks from here.
			described = time.Now()
			h.describeStream(ctx, p.out.Subject)
		}
		h.health.storeFailed(err, time.Now())
		h.metrics.storeErrors.WithLabelValues(storeErrorKind(err)).Inc()
		select {
		case <-h.closing:
			h.log.Warn("hub closing with a forward failing; INGEST delivers it again at the next start", "subject", p.out.Subject, "err", err)
			return nil, err
		default:
		}
		h.log.Warn("forward failed, retrying", "subject", p.out.Subject, "err", err, "after", backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-h.closing:
			h.log.Warn("hub closing with a forward failing; INGEST delivers it again at the next start", "subject", p.out.Subject, "err", err)
			return nil, err
		case <-time.After(backoff):
		}
		ack, err = h.publishForward(ctx, p)
	}
	return ack, nil
}

// publishForward sends p's forward again and waits for its ack.
func (h *Hub) publishForward(ctx context.Context, p pendingPub) (*jetstream.PubAck, error) {
	if p.src != nil {
		_ = p.src.InProgress() // keep it ours while we retry, so it is not redelivered behind newer events
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return h.js.PublishMsg(pctx, p.out)
}

// describeStream logs how the stream that stores subject looks from this
// node (its leader and replicas) when a forward to it found nobody.
func (h *Hub) describeStream(ctx context.Context, subject string) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	name, err := h.js.StreamNameBySubject(ctx, subject)
	if err != nil {
		h.log.Warn("a forward found no stream to take it, and none answers for its subject", "subject", subject, "err", err)
		return
	}
	st, err := h.js.Stream(ctx, name)
	if err != nil {
		h.log.Warn("a forward found no stream to take it; its info does not answer either", "stream", name, "err", err)
		return
	}
	info := st.CachedInfo()
	if info.Cluster == nil {
		h.log.Warn("a forward found no stream to take it", "stream", name)
		return
	}
	var peers []string
	for _, r := range info.Cluster.Replicas {
		peers = append(peers, fmt.Sprintf("%s(current=%t offline=%t lag=%d active=%s)", r.Name, r.Current, r.Offline, r.Lag, r.Active.Round(time.Millisecond)))
	}
	h.log.Warn("a forward found no stream to take it", "stream", name, "leader", info.Cluster.Leader, "replicas", strings.Join(peers, " "), "server", h.srv.Name())
}

// duplicateConflict compares a forward the stream called a duplicate with
// the message stored under its id; it returns why they conflict, or "".
func (h *Hub) duplicateConflict(ctx context.Context, p pendingPub, ack *jetstream.PubAck) string {
	st, err := h.js.Stream(ctx, ack.Stream)
	if err != nil {
		h.log.Warn("read stream of a duplicate", "stream", ack.Stream, "err", err)
		return ""
	}
	stored, err := st.GetMsg(ctx, ack.Sequence)
	if err != nil {
		h.log.Warn("read the original of a duplicate", "stream", ack.Stream, "seq", ack.Sequence, "err", err)
		return ""
	}
	if stored.Subject == p.out.Subject && h.check.SameEvent(stored.Data, p.out.Data) {
		return ""
	}
	return fmt.Sprintf("event id already stored with other content (%s seq %d, %s): a repeated id must repeat the same event", ack.Stream, ack.Sequence, stored.Subject)
}

// awaitAck waits for an asynchronous forward's ack or error; once the hub
// is closing, for at most closingGrace more (a store that failed to write
// does not answer). done is false when it gave up.
func (h *Hub) awaitAck(ctx context.Context, f jetstream.PubAckFuture) (done bool, ack *jetstream.PubAck, err error) {
	if f == nil {
		return true, nil, errors.New("async publish not queued")
	}
	closing := h.closing
	var grace <-chan time.Time
	for {
		select {
		case ack := <-f.Ok():
			return true, ack, nil
		case err := <-f.Err():
			return true, nil, err
		case <-ctx.Done():
			return false, nil, nil
		case <-closing:
			closing, grace = nil, time.After(closingGrace)
		case <-grace:
			h.log.Warn("hub closing with a forward unanswered; INGEST delivers it again at the next start", "subject", f.Msg().Subject)
			return false, nil, nil
		}
	}
}

// closingGrace is how long a closing hub still waits for a forward's ack.
const closingGrace = 2 * time.Second

// noteSettled records how far the run's forwards are stored, for a
// recreation of the consumer.
func (h *Hub) noteSettled(p pendingPub) {
	if p.src == nil {
		return
	}
	md, err := p.src.Metadata()
	if err != nil {
		return
	}
	s := &h.ingestSettled
	for cur := s.Load(); md.Sequence.Stream > cur && !s.CompareAndSwap(cur, md.Sequence.Stream); cur = s.Load() {
	}
}

// stopIngest stops taking new INGEST messages and lets the forwards already
// taken finish, so a clean shutdown leaves nothing half done; by deadline
// it gives up on what is left, unacknowledged. The caller holds h.ingestMu.
func (h *Hub) stopIngest(deadline time.Time) {
	run := h.ingest
	if run == nil {
		return
	}
	timeout := time.NewTimer(max(time.Until(deadline), 0))
	defer timeout.Stop()
	run.stopFetch()
	// The acker stops early when a forward keeps failing: then nothing
	// more can be acknowledged, and there is no point waiting.
	select {
	case <-run.fetchDone:
	case <-run.ackerDone:
	case <-timeout.C:
		h.log.Warn("ingest consumer did not drain in time")
	}
	select {
	case h.checked <- pendingPub{stop: true}:
	case <-run.ackerDone:
	case <-timeout.C:
	}
	select {
	case <-run.ackerDone:
	case <-timeout.C:
		h.log.Warn("shutdown with ingest forwards pending; they are redelivered at the next start", "pending", len(h.pending))
	}
	run.cancel()
	h.ingest = nil
}

// restartIngest replaces run, which stopped taking from INGEST at a gap in
// its deliveries: it finishes and acknowledges what run forwarded, then
// starts a new run on a new consumer from just past the last forward
// stored, so the messages it never received come again. A node that no
// longer leads, or a hub closing, only stops the run.
func (h *Hub) restartIngest(run *ingestRun) {
	h.ingestMu.Lock()
	defer h.ingestMu.Unlock()
	if h.ingest != run {
		return // stopped or replaced meanwhile
	}
	h.stopIngest(time.Now().Add(5 * time.Second))
	select {
	case <-h.closing:
		return
	default:
	}
	if !h.leadsNow() {
		return // the leader's check goes on from the ack floor
	}
	floor := h.ingestSettled.Load()
	if err := h.runIngestFrom(h.ingestParent(), floor); err != nil {
		// Without a run nothing is checked: a restart of the hub starts one.
		h.fail(fmt.Errorf("restart the ingest check: %w", err))
		return
	}
	h.log.Info("ingest check restarted", "deliver_from", floor+1)
}

// abortIngest stops a run of the ingest check without finishing what it
// took (its consumer is gone: acknowledgements would reach nobody, or a
// new consumer of the same name). It returns the stream sequence up to
// which forwards are stored, and an error if the run did not stop in time.
// The caller holds h.ingestMu.
func (h *Hub) abortIngest() (uint64, error) {
	run := h.ingest
	if run == nil {
		return 0, nil
	}
	run.stopFetch()
	run.cancel()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for _, done := range []<-chan struct{}{run.fetchDone, run.pubDone, run.ackerDone} {
		select {
		case <-done:
		case <-timeout.C:
			return 0, errors.New("the ingest check did not stop within 10s")
		}
	}
	h.ingest = nil
	return h.ingestSettled.Load(), nil
}

// sources reports whether the hub sources host's events (with an auth
// file: whether the host is in it).
func (h *Hub) sources(host string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hosts[host]
}
