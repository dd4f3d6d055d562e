package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// FoldSource is one stream a fold reads, with the subjects it needs (none:
// every subject of the stream).
type FoldSource struct {
	Stream   string
	Subjects []string
}

// GroupFoldSources merges sources on the same stream into one, so one
// consumer and one checkpoint serve them.
func GroupFoldSources(in []FoldSource) []FoldSource {
	var out []FoldSource
	idx := map[string]int{}
	for _, s := range in {
		if i, ok := idx[s.Stream]; ok {
			out[i].Subjects = append(out[i].Subjects, s.Subjects...)
			continue
		}
		idx[s.Stream] = len(out)
		out = append(out, FoldSource{s.Stream, append([]string(nil), s.Subjects...)})
	}
	return out
}

// FoldOptions describe a fold for FoldService: a pure fold (events.Fold: a
// projection, the alerter, the deploy planner, last-deploy) over stream
// messages decoded with events.Decode, with its records in a KV bucket.
//
// Order of writes on each batch: the fold's outputs are published and
// acknowledged (with deterministic Nats-Msg-Ids), then the changed records
// are written, then the checkpoint key (last sequence per stream). A crash
// anywhere replays from the checkpoint: re-published outputs are dropped
// by deduplication and records skip sequences they already reflect, so
// restart is exact.
type FoldOptions struct {
	// Name names the service ("projector-inventory", "alerter"…).
	Name string
	// Bucket is the KV bucket of the fold's records and checkpoint; it is
	// created if missing.
	Bucket  string
	Sources []FoldSource
	// New returns the fold each run starts from, before its records are
	// loaded.
	New func() (events.Fold, error)
	// TickEvery > 0 calls Tick with the clock at this interval once the
	// fold has caught up with every source.
	TickEvery time.Duration
	// TickGrace delays the first tick after a start, so hosts whose events
	// queued while the hub was down are not reported silent.
	TickGrace time.Duration
	// TickOnCatchUp also ticks after every batch that leaves the fold
	// caught up with every source (and ticks at TickEvery only then): for
	// the deploy planner, whose orders are due as soon as a request is in,
	// and must not be issued before its own earlier orders are read back.
	TickOnCatchUp bool
	// Validate checks each event's data against its kind's schema, and
	// each output's before it is published.
	Validate bool
	// Rebuild purges the bucket on the first run, so the fold replays its
	// streams from the start.
	Rebuild bool
	// Clock is the time ticks get (default time.Now).
	Clock func() time.Time
	Log   *slog.Logger
}

// foldInput is one stored message for the fold, not yet decoded: the
// fold's own loop decodes it, so that a reader is never slower than the
// fold and batches stay large (each commit is several round trips).
type foldInput struct {
	stored  events.Stored
	data    []byte
	pending uint64
}

// FoldService returns the hub service that runs a fold: the one runner of
// every fold the hub keeps.
func FoldService(o FoldOptions) HubService {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &foldRunner{o: o, rebuild: o.Rebuild}
}

type foldRunner struct {
	o       FoldOptions
	rebuild bool
}

// Name implements HubService.
func (s *foldRunner) Name() string { return s.o.Name }

// caughtUpAt is a source reaching the end of its stream as it was when its
// reader started: seq is the last sequence it delivered before (0: none).
type caughtUpAt struct {
	stream string
	seq    uint64
}

// Run implements HubService.
func (s *foldRunner) Run(ctx context.Context, h *Hub) error {
	kv, err := s.bucket(ctx, h)
	if err != nil {
		return err
	}
	f, err := s.o.New()
	if err != nil {
		return fmt.Errorf("%s: %w", s.o.Name, err)
	}
	cp, checkpointed, records, err := loadFold(ctx, kv, f)
	if err != nil {
		return fmt.Errorf("%s: %w", s.o.Name, err)
	}
	// hold: a bucket with records but no checkpoint (a fold that kept
	// none before, such as last-deploy) is rebuilt once from the start of
	// its streams, into a fresh fold, and committed only once caught up,
	// so readers never see a record step back to an older state.
	hold := !checkpointed && records > 0
	if hold {
		s.o.Log.Info("bucket has no checkpoint: rebuilding from the start of the streams", "fold", s.o.Name, "bucket", s.o.Bucket, "records", records)
		if f, err = s.o.New(); err != nil {
			return fmt.Errorf("%s: %w", s.o.Name, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan foldInput, 1024)
	errc := make(chan error, len(s.o.Sources))
	caughtUp := make(chan caughtUpAt, len(s.o.Sources))
	for _, src := range s.o.Sources {
		go func() {
			errc <- s.read(ctx, h, src, cp[src.Stream], in, caughtUp)
		}()
	}
	started := s.o.Clock()
	var tickC <-chan time.Time
	waiting := len(s.o.Sources)
	// reached is, per stream, the last sequence its reader delivered before
	// signalling it had caught up: the fold has caught up once it has
	// applied them all.
	reached := map[string]uint64{}
	// pending is each stream's count of messages not yet delivered, as of
	// its latest message.
	pending := map[string]uint64{}
	// backlogDone: every source has caught up and the fold has applied
	// what they delivered before.
	backlogDone := func() bool {
		if waiting > 0 {
			return false
		}
		for st, seq := range reached {
			if cp[st] < seq {
				return false
			}
		}
		return true
	}
	caught := func() bool {
		if !backlogDone() {
			return false
		}
		for _, n := range pending {
			if n > 0 {
				return false
			}
		}
		return true
	}
	// held are outputs not yet committed while hold.
	var outs, held []events.Output
	// settle commits what is held once caught up, and with TickOnCatchUp
	// ticks first.
	settle := func() error {
		if !caught() || !(hold || s.o.TickOnCatchUp) {
			return nil
		}
		if s.o.TickOnCatchUp {
			held = append(held, f.Tick(s.o.Clock())...)
		}
		hold = false
		err := s.commit(ctx, h, kv, f, cp, held)
		held = held[:0]
		return err
	}
	if waiting == 0 {
		if err := settle(); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("%s: %w", s.o.Name, err)
		case c := <-caughtUp:
			reached[c.stream] = c.seq
			if waiting--; waiting == 0 {
				if s.o.TickEvery > 0 {
					ticker := time.NewTicker(s.o.TickEvery)
					defer ticker.Stop()
					tickC = ticker.C
				}
				if err := settle(); err != nil {
					return err
				}
			}
		case <-tickC:
			now := s.o.Clock()
			if now.Sub(started) < s.o.TickGrace || hold || !backlogDone() || (s.o.TickOnCatchUp && !caught()) {
				continue
			}
			outs = append(outs[:0], f.Tick(now)...)
			if err := s.commit(ctx, h, kv, f, cp, outs); err != nil {
				return err
			}
		case m := <-in:
			outs = s.apply(h, f, m, cp, pending, outs[:0])
			// Take what else is waiting, up to a batch, then commit.
		batch:
			for n := 0; n < 1000; n++ {
				select {
				case m := <-in:
					outs = s.apply(h, f, m, cp, pending, outs)
				default:
					break batch
				}
			}
			if hold || s.o.TickOnCatchUp {
				held = append(held, outs...)
				if hold && !caught() {
					continue
				}
				if !caught() {
					// Not caught up: commit what the batch did, and tick
					// at the next batch that catches up.
					err := s.commit(ctx, h, kv, f, cp, held)
					held = held[:0]
					if err != nil {
						return err
					}
					continue
				}
				if err := settle(); err != nil {
					return err
				}
				continue
			}
			if err := s.commit(ctx, h, kv, f, cp, outs); err != nil {
				return err
			}
		}
	}
}

// apply decodes one message and folds it in; a message that does not
// decode (or validate) is skipped, but its sequence is checkpointed.
func (s *foldRunner) apply(h *Hub, f events.Fold, m foldInput, cp, pending map[string]uint64, outs []events.Output) []events.Output {
	var err error
	m.stored.Event, m.stored.Kind, err = events.Decode(m.data)
	if err == nil && s.o.Validate {
		err = h.schemas.ValidateData(m.stored.Event.Type(), m.stored.Event.Data())
	}
	if err == nil {
		outs = append(outs, f.Apply(m.stored)...)
	} else {
		s.o.Log.Warn("stream holds an unreadable event; skipping it", "fold", s.o.Name, "stream", m.stored.Stream, "subject", m.stored.Subject, "seq", m.stored.Seq, "err", err)
	}
	cp[m.stored.Stream] = m.stored.Seq
	pending[m.stored.Stream] = m.pending
	return outs
}

// bucket opens the fold's KV bucket, creating it if missing (the hub
// creates the projections'; an existing bucket is used as configured),
// and purges it for a rebuild.
func (s *foldRunner) bucket(ctx context.Context, h *Hub) (jetstream.KeyValue, error) {
	if s.o.Bucket == "" {
		return nil, fmt.Errorf("%s: a fold needs a bucket", s.o.Name)
	}
	js := h.JetStream()
	kv, err := js.KeyValue(ctx, s.o.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.o.Bucket, History: 1, Storage: jetstream.FileStorage, Replicas: h.Replicas()})
	}
	if err != nil {
		return nil, fmt.Errorf("%s: open bucket %s: %w", s.o.Name, s.o.Bucket, err)
	}
	if s.rebuild {
		st, err := js.Stream(ctx, "KV_"+s.o.Bucket)
		if err != nil {
			return nil, fmt.Errorf("%s: rebuild: %w", s.o.Name, err)
		}
		if err := st.Purge(ctx); err != nil {
			return nil, fmt.Errorf("%s: rebuild: purge %s: %w", s.o.Name, s.o.Bucket, err)
		}
		s.rebuild = false
		s.o.Log.Info("rebuilding projection from the start of its streams", "projection", s.o.Name, "bucket", s.o.Bucket)
	}
	return kv, nil
}

// read feeds one stream's messages from after seq, in order.
func (s *foldRunner) read(ctx context.Context, h *Hub, src FoldSource, seq uint64, in chan<- foldInput, caughtUp chan<- caughtUpAt) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: src.Subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if seq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	cons, err := h.JetStream().OrderedConsumer(ctx, src.Stream, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", src.Stream, err)
	}
	info, err := cons.Info(ctx)
	signalled := false
	if err == nil && info.NumPending == 0 {
		caughtUp <- caughtUpAt{stream: src.Stream}
		signalled = true
	}
	err = eachMessage(ctx, cons, nil, func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return nil
		}
		fi := foldInput{stored: events.Stored{Stream: src.Stream, Seq: md.Sequence.Stream, Subject: m.Subject(), At: md.Timestamp}, data: m.Data(), pending: md.NumPending}
		select {
		case in <- fi:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !signalled && md.NumPending == 0 {
			caughtUp <- caughtUpAt{stream: src.Stream, seq: md.Sequence.Stream}
			signalled = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", src.Stream, err)
	}
	return nil
}

// loadFold restores f from its bucket: the checkpoint (checkpointed false
// when the bucket has none), and records, the count of other keys loaded.
func loadFold(ctx context.Context, kv jetstream.KeyValue, f events.Fold) (cp map[string]uint64, checkpointed bool, records int, err error) {
	cp = map[string]uint64{}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, false, 0, fmt.Errorf("list %s: %w", kv.Bucket(), err)
	}
	for key := range lister.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return nil, false, 0, fmt.Errorf("read %s %s: %w", kv.Bucket(), key, err)
		}
		if key == events.CheckpointKey {
			if err := json.Unmarshal(e.Value(), &cp); err != nil {
				return nil, false, 0, fmt.Errorf("checkpoint of %s: %w", kv.Bucket(), err)
			}
			checkpointed = true
			continue
		}
		if err := f.Load(key, e.Value()); err != nil {
			return nil, false, 0, err
		}
		records++
	}
	return cp, checkpointed, records, nil
}

// commit publishes outputs, then writes changed records, then the
// checkpoint.
func (s *foldRunner) commit(ctx context.Context, h *Hub, kv jetstream.KeyValue, f events.Fold, cp map[string]uint64, outs []events.Output) error {
	js := h.JetStream()
	var futures []jetstream.PubAckFuture
	for _, o := range outs {
		if s.o.Validate {
			if err := h.schemas.ValidateData(o.Event.Type(), o.Event.Data()); err != nil {
				return fmt.Errorf("%s: %w", s.o.Name, err)
			}
		}
		m, err := EventMsg(o.Subject, o.Event)
		if err != nil {
			s.o.Log.Error("fold output cannot be encoded; dropping it", "fold", s.o.Name, "subject", o.Subject, "err", err)
			continue
		}
		fut, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("%s: publish %s: %w", s.o.Name, o.Subject, err)
		}
		futures = append(futures, fut)
	}
	for _, fut := range futures {
		select {
		case <-fut.Ok():
		case err := <-fut.Err():
			return fmt.Errorf("%s: publish %s: %w", s.o.Name, fut.Msg().Subject, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%s: publish %s: no acknowledgement in 30s", s.o.Name, fut.Msg().Subject)
		}
	}
	puts, err := f.Flush()
	if err != nil {
		return fmt.Errorf("%s: %w", s.o.Name, err)
	}
	keys := make([]string, 0, len(puts))
	for k := range puts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		v := puts[key]
		if v == nil {
			if err := kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("%s: delete %s: %w", s.o.Name, key, err)
			}
			continue
		}
		if _, err := kv.Put(ctx, key, v); err != nil {
			return fmt.Errorf("%s: write %s: %w", s.o.Name, key, err)
		}
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, events.CheckpointKey, b); err != nil {
		return fmt.Errorf("%s: write checkpoint: %w", s.o.Name, err)
	}
	return nil
}
