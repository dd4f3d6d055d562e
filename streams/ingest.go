package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/consumers/ingest"
	"github.com/pinkiefleet/pinkie/events"
)

// ingestSourceHeader carries the Nats-Stream-Source header of the INGEST
// message into HOSTS (the server reserves Nats-Stream-Source itself), so a
// reader can still see which source delivered an event.
const ingestSourceHeader = "Pinkie-Stream-Source"

// pendingPub is one INGEST message whose forward (to HOSTS or DEADLETTER)
// was published asynchronously and awaits its ack.
type pendingPub struct {
	src    *nats.Msg
	out    *nats.Msg
	future jetstream.PubAckFuture
	host   string
	kind   string
	dead   bool
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
	cfg := jetstream.ConsumerConfig{
		Durable:       IngestConsumer,
		Description:   "the hub's ingest check: valid events to HOSTS, others to DEADLETTER",
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: 20000,
	}
	if old, err := h.js.Consumer(ctx, IngestStream, IngestConsumer); err == nil {
		if floor := old.CachedInfo().AckFloor.Stream; floor > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
		}
		if err := h.js.DeleteConsumer(ctx, IngestStream, IngestConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("reset ingest consumer: %w", err)
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("read ingest consumer: %w", err)
	}
	if _, err := h.js.CreateOrUpdateConsumer(ctx, IngestStream, cfg); err != nil {
		return fmt.Errorf("create ingest consumer: %w", err)
	}
	// The check reads INGEST with the client's pull subscription, which
	// hands over *nats.Msg: its wire size tells whether the header block
	// is exactly what the client parsed (see ingest.Message.HeaderSize).
	legacy, err := h.nc.JetStream()
	if err != nil {
		return fmt.Errorf("ingest consumer: %w", err)
	}
	sub, err := legacy.PullSubscribe("", IngestConsumer, nats.Bind(IngestStream, IngestConsumer))
	if err != nil {
		return fmt.Errorf("start ingest consumer: %w", err)
	}
	checker := &ingest.Checker{Schemas: h.schemas, MaxSize: h.opts.MaxEventBytes, Known: h.sources, Orders: newBuildOrderIndex(h.js), Now: time.Now}
	// Three goroutines in a row: the fetcher checks each message, the
	// publisher forwards it, the acker settles it. Each keeps the stream's
	// order.
	h.checked = make(chan pendingPub, 4096)
	h.pending = make(chan pendingPub, 8192)
	h.ackerDone = make(chan struct{})
	fetchCtx, stopFetch := context.WithCancel(ctx)
	h.ingestStop = stopFetch
	h.fetchDone = make(chan struct{})
	go h.publishForwards(ctx)
	go h.ackForwards(ctx)
	go h.fetchIngest(fetchCtx, ctx, sub, checker)
	return nil
}

// fetchIngest pulls INGEST messages in batches and checks each, until ctx
// ends; then it unsubscribes, leaving whatever it did not take for the
// next start. A message it took is always handed on (until runCtx ends):
// acks are cumulative, so one dropped before a later one is acknowledged
// would be lost.
func (h *Hub) fetchIngest(ctx, runCtx context.Context, sub *nats.Subscription, checker *ingest.Checker) {
	defer close(h.fetchDone)
	defer func() { _ = sub.Unsubscribe() }()
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		batch, err := sub.FetchBatch(1000, nats.Context(fctx))
		if err != nil {
			cancel()
			if ctx.Err() == nil {
				h.log.Debug("ingest fetch", "err", err)
				sleepCtx(ctx, 100*time.Millisecond)
			}
			continue
		}
		for msg := range batch.Messages() {
			if ctx.Err() != nil {
				break // the rest is redelivered at the next start
			}
			h.forward(runCtx, checker, msg)
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			h.log.Debug("ingest fetch", "err", err)
		}
		cancel()
	}
}

func (h *Hub) forward(ctx context.Context, checker *ingest.Checker, msg *nats.Msg) {
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
	h.budget.charge(d.Host, len(m.Payload))
	var out *nats.Msg
	p := pendingPub{src: msg, host: d.Host, kind: d.Kind}
	if d.Accepted() {
		out = nats.NewMsg(d.Subject)
		out.Data = msg.Data
		out.Header.Set(events.HeaderContentType, events.ContentType)
		// Deduplicate per host: another host's event with the same id
		// must not make this one a "duplicate".
		out.Header.Set(events.HeaderMsgID, events.HostMsgID(d.Host, d.ID))
		out.Header.Set(ingestSourceHeader, m.StreamSource())
	} else {
		var err error
		if out, err = deadLetterMsg(m, d); err != nil {
			// Keep the reason even if the payload cannot be carried; a
			// nak would be lost to the cumulative acks.
			h.log.Error("build dead letter; keeping it without its payload", "subject", m.Subject, "err", err)
			if out, err = deadLetterMsg(ingest.Message{Subject: m.Subject, Seq: m.Seq}, d); err != nil {
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
func ingestMessage(msg *nats.Msg) ingest.Message {
	m := ingest.Message{Subject: msg.Subject, Payload: msg.Data, Header: msg.Header}
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

// publishForwards publishes checked messages asynchronously, in order,
// and hands them to the acker.
func (h *Hub) publishForwards(ctx context.Context) {
	for {
		var p pendingPub
		select {
		case <-ctx.Done():
			return
		case p = <-h.checked:
		}
		if p.src != nil {
			f, err := h.js.PublishMsgAsync(p.out)
			if err != nil {
				// Could not even queue it: the acker retries it in order.
				f = nil
			}
			p.future = f
		}
		select {
		case h.pending <- p:
		case <-ctx.Done():
			return
		}
		if p.src == nil { // stopIngest's marker
			return
		}
	}
}

func deadLetterMsg(m ingest.Message, d ingest.Decision) (*nats.Msg, error) {
	e, subj, err := ingest.DeadLetter(m, d, time.Now())
	if err != nil {
		return nil, err
	}
	b, err := events.Encode(e)
	if err != nil {
		return nil, err
	}
	out := nats.NewMsg(subj)
	out.Data = b
	out.Header.Set(events.HeaderContentType, events.ContentType)
	out.Header.Set(events.HeaderMsgID, e.ID())
	return out, nil
}

// deadLetterFor turns an accepted message that its stream refused into a
// dead letter.
func (h *Hub) deadLetterFor(p pendingPub, reason string) (*nats.Msg, error) {
	m := ingestMessage(p.src)
	h.log.Warn("event refused", "host", p.host, "subject", m.Subject, "reason", reason)
	return deadLetterMsg(m, ingest.Decision{Host: p.host, Kind: p.kind, Reason: reason})
}

// ackForwards waits for each forward's ack in order, retries a failed one
// until it is stored, then acks its INGEST message.
func (h *Hub) ackForwards(ctx context.Context) {
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
			if p.src == nil { // stopIngest's marker: everything before it is settled
				return
			}
			if !h.settle(ctx, p) {
				// Shutting down with this one unsettled: acknowledge only
				// what came before it (acks are cumulative).
				return
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
// reports whether the message is done and may be acknowledged.
func (h *Hub) settle(ctx context.Context, p pendingPub) bool {
	var err error
	var ack *jetstream.PubAck
	if p.future != nil {
		select {
		case ack = <-p.future.Ok():
			err = nil
		case err = <-p.future.Err():
		case <-ctx.Done():
			return false
		}
	} else {
		err = fmt.Errorf("async publish not queued")
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 400 && !p.dead {
		// The stream refused this message for good (too large, a bad
		// header): retrying cannot help, so it becomes a dead letter.
		if dl, derr := h.deadLetterFor(p, "HOSTS refused it: "+apiErr.Description); derr == nil {
			p.out, p.dead = dl, true
			ack, err = h.js.PublishMsg(ctx, p.out)
		}
	}
	if errors.As(err, &apiErr) && apiErr.Code == 400 && p.dead {
		h.log.Error("dead letter refused by its stream; dropping it", "subject", p.out.Subject, "err", err)
		return true
	}
	if ack, err = h.retryForward(ctx, p, ack, err); err != nil {
		return false
	}
	if ack != nil && ack.Duplicate && !p.dead {
		// Same host, same id: a redelivery is the same event again; the
		// same id with other content is refused, not silently dropped.
		if reason := h.duplicateConflict(ctx, p, ack); reason != "" {
			dl, derr := h.deadLetterFor(p, reason)
			if derr != nil {
				h.log.Error("build dead letter for a conflicting duplicate", "subject", p.out.Subject, "err", derr)
				return true
			}
			p.out, p.dead = dl, true
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			ack, err = h.js.PublishMsg(pctx, p.out)
			cancel()
			if _, err = h.retryForward(ctx, p, ack, err); err != nil {
				return false
			}
		}
	}
	if p.dead {
		h.metrics.deadLetters.WithLabelValues(p.host).Inc()
	} else {
		h.metrics.ingested.WithLabelValues(p.host, p.kind).Inc()
	}
	return true
}

// retryForward retries p's forward until it is stored or ctx ends.
func (h *Hub) retryForward(ctx context.Context, p pendingPub, ack *jetstream.PubAck, err error) (*jetstream.PubAck, error) {
	for backoff := 100 * time.Millisecond; err != nil; backoff = min(backoff*2, 5*time.Second) {
		h.log.Warn("forward failed, retrying", "subject", p.out.Subject, "err", err)
		if !sleepCtx(ctx, backoff) {
			return nil, ctx.Err()
		}
		_ = p.src.InProgress() // keep it ours while we retry, so it is not redelivered behind newer events
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err = h.js.PublishMsg(pctx, p.out)
		cancel()
	}
	return ack, nil
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
	if stored.Subject == p.out.Subject && ingest.SameEvent(stored.Data, p.out.Data) {
		return ""
	}
	return fmt.Sprintf("event id already stored with other content (%s seq %d, %s): a repeated id must repeat the same event", ack.Stream, ack.Sequence, stored.Subject)
}

// stopIngest stops taking new INGEST messages and lets the forwards already
// taken finish, so a clean shutdown leaves nothing half done.
func (h *Hub) stopIngest() {
	if h.ingestStop == nil {
		return
	}
	h.ingestStop()
	select {
	case <-h.fetchDone:
	case <-time.After(10 * time.Second):
		h.log.Warn("ingest fetch did not stop in time")
	}
	select {
	case h.checked <- pendingPub{}:
	case <-h.ackerDone:
		return
	}
	select {
	case <-h.ackerDone:
	case <-time.After(10 * time.Second):
		h.log.Warn("shutdown with ingest forwards pending; they are redelivered at the next start", "pending", len(h.pending))
	}
}

// sources reports whether the hub sources host's events (with an auth
// file: whether the host is in it).
func (h *Hub) sources(host string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hosts[host]
}
