package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/consumers/alerter"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
)

// AlertLogStream stores silences (pinkie.silence.>) and the notifier's
// delivery audit (pinkie.notify.>).
const AlertLogStream = events.StreamAlertLog

// AlerterBucket holds the alerter's own state (pending and firing alerts,
// fitted series, silences), apart from the pinkie-alerts projection that
// readers use.
const AlerterBucket = events.BucketAlerter

// foldInput, foldOutput and folder are what the fold runner needs of a
// projection or the alerter.
type foldInput struct {
	stream, subject string
	seq             uint64
	data            []byte
	at              time.Time
	pending         uint64
}

type foldOutput struct {
	subject, id string
	data        []byte
}

type folder interface {
	apply(in foldInput) []foldOutput
	tick(now time.Time) []foldOutput
	flush() (map[string][]byte, error)
	load(key string, value []byte) error
}

// foldSource is one stream a fold reads, with the subjects it needs.
type foldSource struct {
	stream   string
	subjects []string
}

// groupSources merges sources on the same stream into one, so one
// consumer and one checkpoint serve them.
func groupSources(in []foldSource) []foldSource {
	var out []foldSource
	idx := map[string]int{}
	for _, s := range in {
		if i, ok := idx[s.stream]; ok {
			out[i].subjects = append(out[i].subjects, s.subjects...)
			continue
		}
		idx[s.stream] = len(out)
		out = append(out, foldSource{s.stream, append([]string(nil), s.subjects...)})
	}
	return out
}

// foldService runs a pure fold over stream messages with its state in a
// KV bucket. Order of writes on each batch: the fold's outputs are
// published and acknowledged (with deterministic Nats-Msg-Ids), then the
// changed records are written, then the checkpoint key (last sequence per
// stream). A crash anywhere replays from the checkpoint: re-published
// outputs are dropped by deduplication and records skip sequences they
// already reflect, so restart is exact.
type foldService struct {
	name    string
	bucket  string
	sources []foldSource
	newFold func() (folder, error)
	// tickEvery > 0 calls tick with the clock once the fold has caught up.
	tickEvery time.Duration
	// tickGrace delays the first tick after a start, so hosts whose events
	// queued while the hub was down are not reported silent.
	tickGrace time.Duration
	clock     func() time.Time
	rebuild   bool
	log       *slog.Logger
}

func (s *foldService) Name() string { return s.name }

func (s *foldService) Run(ctx context.Context, h *Hub) error {
	js := h.JetStream()
	// The hub creates the projection buckets; the alerter's own is made
	// here. An existing bucket is used as configured.
	kv, err := js.KeyValue(ctx, s.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.bucket, History: 1, Storage: jetstream.FileStorage, Replicas: h.Replicas()})
	}
	if err != nil {
		return fmt.Errorf("%s: open bucket %s: %w", s.name, s.bucket, err)
	}
	if s.rebuild {
		st, err := js.Stream(ctx, "KV_"+s.bucket)
		if err != nil {
			return fmt.Errorf("%s: rebuild: %w", s.name, err)
		}
		if err := st.Purge(ctx); err != nil {
			return fmt.Errorf("%s: rebuild: purge %s: %w", s.name, s.bucket, err)
		}
		s.rebuild = false
		s.log.Info("rebuilding projection from the start of its streams", "projection", s.name, "bucket", s.bucket)
	}
	f, err := s.newFold()
	if err != nil {
		return err
	}
	cp, err := loadFold(ctx, kv, f)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan foldInput, 1024)
	errc := make(chan error, len(s.sources))
	caughtUp := make(chan string, len(s.sources))
	for _, src := range s.sources {
		go func() {
			errc <- s.read(ctx, js, src, cp[src.stream], in, caughtUp)
		}()
	}
	started := s.clock()
	var tickC <-chan time.Time
	var ticker *time.Ticker
	waiting := len(s.sources)
	var outs []foldOutput
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("%s: %w", s.name, err)
		case <-caughtUp:
			if waiting--; waiting == 0 && s.tickEvery > 0 {
				ticker = time.NewTicker(s.tickEvery)
				defer ticker.Stop()
				tickC = ticker.C
			}
		case now := <-tickC:
			now = s.clock()
			if now.Sub(started) < s.tickGrace {
				continue
			}
			outs = append(outs[:0], f.tick(now)...)
			if err := s.commit(ctx, js, kv, f, cp, outs); err != nil {
				return err
			}
		case m := <-in:
			outs = append(outs[:0], f.apply(m)...)
			cp[m.stream] = m.seq
			// Take what else is waiting, up to a batch, then commit.
		batch:
			for n := 0; n < 1000; n++ {
				select {
				case m := <-in:
					outs = append(outs, f.apply(m)...)
					cp[m.stream] = m.seq
				default:
					break batch
				}
			}
			if err := s.commit(ctx, js, kv, f, cp, outs); err != nil {
				return err
			}
		}
	}
}

// read feeds one stream's messages from after seq, in order.
func (s *foldService) read(ctx context.Context, js jetstream.JetStream, src foldSource, seq uint64, in chan<- foldInput, caughtUp chan<- string) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: src.subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if seq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	cons, err := js.OrderedConsumer(ctx, src.stream, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", src.stream, err)
	}
	info, err := cons.Info(ctx)
	signalled := false
	if err == nil && info.NumPending == 0 {
		caughtUp <- src.stream
		signalled = true
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read %s: %w", src.stream, err)
	}
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("read %s: %w", src.stream, err)
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		select {
		case in <- foldInput{stream: src.stream, subject: m.Subject(), seq: md.Sequence.Stream, data: m.Data(), at: md.Timestamp, pending: md.NumPending}:
		case <-ctx.Done():
			return nil
		}
		if !signalled && md.NumPending == 0 {
			caughtUp <- src.stream
			signalled = true
		}
	}
}

func loadFold(ctx context.Context, kv jetstream.KeyValue, f folder) (map[string]uint64, error) {
	cp := map[string]uint64{}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kv.Bucket(), err)
	}
	for key := range lister.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return nil, fmt.Errorf("read %s %s: %w", kv.Bucket(), key, err)
		}
		if key == projections.CheckpointKey {
			if err := json.Unmarshal(e.Value(), &cp); err != nil {
				return nil, fmt.Errorf("checkpoint of %s: %w", kv.Bucket(), err)
			}
			continue
		}
		if err := f.load(key, e.Value()); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// commit publishes outputs, then writes changed records, then the
// checkpoint.
func (s *foldService) commit(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, f folder, cp map[string]uint64, outs []foldOutput) error {
	var futures []jetstream.PubAckFuture
	for _, o := range outs {
		m := nats.NewMsg(o.subject)
		m.Data = o.data
		m.Header.Set(events.HeaderContentType, events.ContentType)
		m.Header.Set(events.HeaderMsgID, o.id)
		fut, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("%s: publish %s: %w", s.name, o.subject, err)
		}
		futures = append(futures, fut)
	}
	for _, fut := range futures {
		select {
		case <-fut.Ok():
		case err := <-fut.Err():
			return fmt.Errorf("%s: publish %s: %w", s.name, fut.Msg().Subject, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%s: publish %s: no acknowledgement in 30s", s.name, fut.Msg().Subject)
		}
	}
	puts, err := f.flush()
	if err != nil {
		return err
	}
	for key, v := range puts {
		if v == nil {
			if err := kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("%s: delete %s: %w", s.name, key, err)
			}
			continue
		}
		if _, err := kv.Put(ctx, key, v); err != nil {
			return fmt.Errorf("%s: write %s: %w", s.name, key, err)
		}
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, projections.CheckpointKey, b); err != nil {
		return fmt.Errorf("%s: write checkpoint: %w", s.name, err)
	}
	return nil
}

// projectionFold adapts a projection to the runner.
type projectionFold struct{ p projections.Projection }

func (f projectionFold) apply(in foldInput) []foldOutput {
	f.p.Apply(projections.Input{Stream: in.stream, Seq: in.seq, Subject: in.subject, Data: in.data})
	return nil
}
func (projectionFold) tick(time.Time) []foldOutput           { return nil }
func (f projectionFold) flush() (map[string][]byte, error)   { return f.p.Flush() }
func (f projectionFold) load(key string, value []byte) error { return f.p.Load(key, value) }
func projectionSources(p projections.Projection) (s []foldSource) {
	for _, src := range p.Sources() {
		s = append(s, foldSource{src.Stream, []string{src.Subject}})
	}
	return groupSources(s)
}

// ProjectorServices returns one hub service per projection (inventory,
// drives, alerts). With rebuild, each purges its bucket on its first run
// and replays its streams from the start.
func ProjectorServices(rebuild bool, log *slog.Logger) []HubService {
	var out []HubService
	for _, p := range projections.All() {
		newP := p
		first := true
		out = append(out, &foldService{
			name: "projector-" + p.Name(), bucket: p.Bucket(), sources: projectionSources(p), rebuild: rebuild, log: log, clock: time.Now,
			newFold: func() (folder, error) {
				if first {
					first = false
					return projectionFold{newP}, nil
				}
				for _, q := range projections.All() {
					if q.Name() == newP.Name() {
						return projectionFold{q}, nil
					}
				}
				return nil, fmt.Errorf("no projection %s", newP.Name())
			},
		})
	}
	return out
}

// alerterFold adapts the alert engine to the runner.
type alerterFold struct{ e *alerter.Engine }

func (f alerterFold) apply(in foldInput) []foldOutput {
	return alertOutputs(f.e.Apply(alerter.Input{Stream: in.stream, Seq: in.seq, Subject: in.subject, Data: in.data, At: in.at}))
}
func (f alerterFold) tick(now time.Time) []foldOutput     { return alertOutputs(f.e.Tick(now)) }
func (f alerterFold) flush() (map[string][]byte, error)   { return f.e.Flush() }
func (f alerterFold) load(key string, value []byte) error { return f.e.Load(key, value) }
func alertOutputs(outs []alerter.Output) []foldOutput {
	var r []foldOutput
	for _, o := range outs {
		b, err := events.Encode(o.Event)
		if err != nil {
			continue
		}
		r = append(r, foldOutput{subject: o.Subject, id: o.Event.ID(), data: b})
	}
	return r
}

// AlerterOptions configure the alerter service.
type AlerterOptions struct {
	Config alerter.Config
	// TickEvery is how often time-based rules are evaluated (default:
	// the config's evaluation_interval, else 5s).
	TickEvery time.Duration
	// TickGrace delays time-based rules after a start (default: the
	// config's startup_grace, else 1m; negative: none).
	TickGrace time.Duration
	Log       *slog.Logger
}

// AlerterService returns the alerter hub service: it reads HOSTS, DEPLOY,
// silences and the fleet declaration (declared services), and publishes
// alerts on pinkie.alert.<host>.<rule>.
func AlerterService(o AlerterOptions) (HubService, error) {
	rules, err := o.Config.Compile()
	if err != nil {
		return nil, err
	}
	if o.TickEvery <= 0 {
		o.TickEvery = o.Config.EvaluationInterval.D()
	}
	if o.TickEvery <= 0 {
		o.TickEvery = 5 * time.Second
	}
	switch {
	case o.Config.StartupGrace != nil:
		o.TickGrace = o.Config.StartupGrace.D()
	case o.TickGrace < 0:
		o.TickGrace = 0
	case o.TickGrace == 0:
		o.TickGrace = time.Minute
	}
	opts := o.Config.Options()
	return &foldService{
		name: "alerter", bucket: AlerterBucket, log: o.Log, clock: time.Now, tickEvery: o.TickEvery, tickGrace: o.TickGrace,
		sources: []foldSource{{HostsStream, []string{events.HostSubjects}}, {DeployStream, []string{events.DeploySubjects}}, {AlertLogStream, []string{events.SilenceSubjects}},
			{FleetStream, []string{events.FleetDeclaredSubject}}},
		newFold: func() (folder, error) {
			// Rules are compiled once; each run starts from a fresh engine
			// restored from the bucket.
			return alerterFold{alerter.NewEngine(append([]alerter.Rule(nil), rules...), opts)}, nil
		},
	}, nil
}
