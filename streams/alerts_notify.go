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

	"github.com/pinkiefleet/pinkie/consumers/notifier"
	"github.com/pinkiefleet/pinkie/events"
)

// Notifier names. The durable consumer name is API: never rename it.
const (
	NotifierConsumer = "notifier"
	NotifierBucket   = events.BucketNotifier
	// NotifyTestSubject is where `pinkie notify test CHANNEL` asks the
	// hub's notifier to send a test message (operators only: readers may
	// not publish).
	NotifyTestSubject = events.NotifyTestSubject
)

// NotifyTestRequest and NotifyTestReply are the test request's payloads.
type NotifyTestRequest struct {
	Channel string `json:"channel"`
}

type NotifyTestReply struct {
	Channel  string   `json:"channel"`
	Type     string   `json:"type,omitempty"`
	OK       bool     `json:"ok"`
	Error    string   `json:"error,omitempty"`
	Channels []string `json:"channels,omitempty"`
}

// NotifierOptions configure the notifier service.
type NotifierOptions struct {
	Config   notifier.Config
	Channels []notifier.Channel
	Log      *slog.Logger
}

type notifierService struct{ o NotifierOptions }

// NotifierService returns the notifier hub service: a durable consumer of
// ALERTS delivering to the configured channels.
func NotifierService(o NotifierOptions) HubService { return &notifierService{o} }

func (s *notifierService) Name() string { return "notifier" }

type kvStore struct{ kv jetstream.KeyValue }

func (k kvStore) List(ctx context.Context) (map[string]notifier.Entry, error) {
	out := map[string]notifier.Entry{}
	lister, err := k.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	for key := range lister.Keys() {
		e, found, err := k.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if found {
			out[key] = e
		}
	}
	return out, nil
}

func (k kvStore) Get(ctx context.Context, key string) (notifier.Entry, bool, error) {
	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return notifier.Entry{}, false, nil
	}
	if err != nil {
		return notifier.Entry{}, false, err
	}
	return notifier.Entry{Value: e.Value(), Rev: e.Revision()}, true, nil
}

func (k kvStore) Put(ctx context.Context, key string, v []byte) error {
	_, err := k.kv.Put(ctx, key, v)
	return err
}

// Update is a compare-and-set through the bucket's stream leader, so two
// hub nodes that both believe they lead cannot both win it.
func (k kvStore) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	var (
		n   uint64
		err error
	)
	if rev == 0 {
		n, err = k.kv.Create(ctx, key, v)
	} else {
		n, err = k.kv.Update(ctx, key, v, rev)
	}
	if kvConflict(err) {
		return 0, fmt.Errorf("%w: %v", notifier.ErrConflict, err)
	}
	return n, err
}

func (k kvStore) Delete(ctx context.Context, key string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err := k.kv.Delete(ctx, key, opts...)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if kvConflict(err) {
		return fmt.Errorf("%w: %v", notifier.ErrConflict, err)
	}
	return err
}

// kvConflict reports whether err is a KV write refused for its revision.
func kvConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

func (s *notifierService) Run(ctx context.Context, h *Hub) error {
	js := h.JetStream()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: NotifierBucket, History: 1, Storage: jetstream.FileStorage, Replicas: h.Replicas(),
		Description: "the notifier's pending messages (job.<channel>.<id>) and its position in ALERTS (_seen)"})
	if err != nil {
		return fmt.Errorf("notifier: open bucket %s: %w", NotifierBucket, err)
	}
	n := notifier.New(notifier.Options{Config: s.o.Config, Channels: s.o.Channels, Store: kvStore{kv}, Pub: JetStreamPublisher(js), Log: s.o.Log, Node: h.srv.Name()})
	if err := n.Load(ctx); err != nil {
		return err
	}
	log := s.o.Log
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Tag routes read the declared fleet: the latest one is read before
	// any alert is handled, and newer ones are followed while it runs. If
	// following fails, the service stops (and is restarted).
	fleetErr := make(chan error, 1)
	if n.RoutesByTag() {
		seq, err := loadFleet(ctx, js, n, log)
		if err != nil {
			return err
		}
		go func() {
			err := followFleet(ctx, js, seq, n, log)
			fleetErr <- err
			if err != nil {
				cancel()
			}
		}()
	} else {
		fleetErr <- nil
	}
	defer func() { cancel(); <-fleetErr }()
	sub, err := h.Conn().Subscribe(NotifyTestSubject, func(m *nats.Msg) {
		var req NotifyTestRequest
		_ = json.Unmarshal(m.Data, &req)
		rep := NotifyTestReply{Channel: req.Channel}
		for _, c := range n.Channels() {
			rep.Channels = append(rep.Channels, c.Name())
			if c.Name() == req.Channel {
				rep.Type = c.Type()
			}
		}
		if err := n.Test(ctx, req.Channel); err != nil {
			rep.Error = err.Error()
		} else {
			rep.OK = true
		}
		b, _ := json.Marshal(rep)
		_ = m.Respond(b)
	})
	if err != nil {
		return fmt.Errorf("notifier: subscribe %s: %w", NotifyTestSubject, err)
	}
	defer sub.Unsubscribe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = n.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	// A new consumer starts with alerts of the last 10 minutes (a hub
	// that just got its first notify configuration does not re-send 90
	// days of history); an existing one keeps its configuration.
	cfg := jetstream.ConsumerConfig{
		Durable: NotifierConsumer, Description: "the notifier: alerts to ntfy, Matrix, email",
		FilterSubject: events.AlertSubjects, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, AckWait: time.Minute,
	}
	if c, err := js.Consumer(ctx, AlertsStream, NotifierConsumer); err == nil {
		cfg = c.CachedInfo().Config
	} else {
		start := time.Now().Add(-10 * time.Minute)
		cfg.OptStartTime = &start
	}
	err = Consume(ctx, js, AlertsStream, cfg, func(ctx context.Context, m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if err := n.HandleAlert(ctx, md.Sequence.Stream, m.Data()); err != nil {
			if errors.Is(err, notifier.ErrPermanent) {
				return Permanent(err)
			}
			return err
		}
		return nil
	})
	select {
	case ferr := <-fleetErr:
		fleetErr <- ferr // for the deferred wait
		if ferr != nil {
			return ferr
		}
	default:
	}
	return err
}

// loadFleet gives the notifier the latest declared fleet in FLEET (none
// if nothing was declared yet) and returns its stream sequence.
func loadFleet(ctx context.Context, js jetstream.JetStream, n *notifier.Notifier, log *slog.Logger) (uint64, error) {
	st, err := js.Stream(ctx, FleetStream)
	if err != nil {
		return 0, fmt.Errorf("notifier: stream %s: %w", FleetStream, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, events.FleetDeclaredSubject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		n.SetFleet(notifier.Fleet{Tags: map[string][]string{}})
		log.Warn("notifier: no declared fleet yet; channels routed by tags take no alerts until pinkie fleet sync publishes one")
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("notifier: read the declared fleet: %w", err)
	}
	applyFleet(n, m.Sequence, m.Data, log)
	return m.Sequence, nil
}

// followFleet applies each fleet declared after FLEET sequence seq, until
// ctx ends.
func followFleet(ctx context.Context, js jetstream.JetStream, seq uint64, n *notifier.Notifier, log *slog.Logger) error {
	cons, err := js.OrderedConsumer(ctx, FleetStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.FleetDeclaredSubject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1,
	})
	if err != nil {
		return fmt.Errorf("notifier: follow the declared fleet: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("notifier: follow the declared fleet: %w", err)
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
			return fmt.Errorf("notifier: follow the declared fleet: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("notifier: follow the declared fleet: %w", err)
		}
		applyFleet(n, md.Sequence.Stream, m.Data(), log)
	}
}

// applyFleet decodes a stored fleet.declared event and hands it to the
// notifier; one that does not decode is logged and skipped (the previous
// fleet stays).
func applyFleet(n *notifier.Notifier, seq uint64, data []byte, log *slog.Logger) {
	f, err := notifier.FleetFromEvent(seq, data)
	if err != nil {
		log.Error("notifier: ignoring a declared fleet that does not decode; tag routes keep the previous one", "fleet_seq", seq, "err", err)
		return
	}
	if n.SetFleet(f) {
		log.Info("notifier: routing by the declared fleet", "fleet_seq", seq, "flake", f.Flake, "hosts", len(f.Tags))
	}
}
