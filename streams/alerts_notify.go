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
	NotifierBucket   = "pinkie-notifier"
	// NotifyTestSubject is where `pinkie notify test CHANNEL` asks the
	// hub's notifier to send a test message (operators only: readers may
	// not publish).
	NotifyTestSubject = "pinkie.hub.notify.test"
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

func (k kvStore) List(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	lister, err := k.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	for key := range lister.Keys() {
		e, err := k.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[key] = e.Value()
	}
	return out, nil
}

func (k kvStore) Put(ctx context.Context, key string, v []byte) error {
	_, err := k.kv.Put(ctx, key, v)
	return err
}

func (k kvStore) Delete(ctx context.Context, key string) error {
	err := k.kv.Delete(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

type jsPublisher struct{ js jetstream.JetStream }

func (p jsPublisher) Publish(ctx context.Context, subject string, e events.Event) error {
	b, err := events.Encode(e)
	if err != nil {
		return err
	}
	m := nats.NewMsg(subject)
	m.Data = b
	m.Header.Set(events.HeaderContentType, events.ContentType)
	m.Header.Set(events.HeaderMsgID, e.ID())
	_, err = p.js.PublishMsg(ctx, m)
	return err
}

func (s *notifierService) Run(ctx context.Context, h *Hub) error {
	js := h.JetStream()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: NotifierBucket, History: 1, Storage: jetstream.FileStorage,
		Description: "the notifier's pending messages (job.<channel>.<id>) and its position in ALERTS (_seen)"})
	if err != nil {
		return fmt.Errorf("notifier: open bucket %s: %w", NotifierBucket, err)
	}
	n := notifier.New(notifier.Options{Config: s.o.Config, Channels: s.o.Channels, Store: kvStore{kv}, Pub: jsPublisher{js}, Log: s.o.Log})
	if err := n.Load(ctx); err != nil {
		return err
	}
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
		FilterSubject: "pinkie.alert.>", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, AckWait: time.Minute,
	}
	if c, err := js.Consumer(ctx, AlertsStream, NotifierConsumer); err == nil {
		cfg = c.CachedInfo().Config
	} else {
		start := time.Now().Add(-10 * time.Minute)
		cfg.OptStartTime = &start
	}
	return Consume(ctx, js, AlertsStream, cfg, func(ctx context.Context, m jetstream.Msg) error {
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
}
