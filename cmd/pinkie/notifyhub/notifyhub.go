// Package notifyhub runs the notifier (package consumers/notifier) as a
// hub service on streams' runners: its pending messages in a KV bucket
// (streams.KVStore), alerts from a durable consumer of ALERTS
// (streams.ConsumeRecent), tag routes from the declared fleet
// (streams.LastOnSubject, streams.FollowSubject), and the answer to
// `pinkie notify test`. It is wiring, so it lives under cmd (only streams
// and cmd talk NATS); `pinkie hub` and scripts/bench/alertbench share it.
package notifyhub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/consumers/notifier"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// TestRequest and TestReply are the payloads of `pinkie notify test
// CHANNEL`'s request to the hub's notifier (streams.NotifyTestSubject).
type TestRequest struct {
	Channel string `json:"channel"`
}

type TestReply struct {
	Channel  string   `json:"channel"`
	Type     string   `json:"type,omitempty"`
	OK       bool     `json:"ok"`
	Error    string   `json:"error,omitempty"`
	Channels []string `json:"channels,omitempty"`
}

// Test asks the hub's notifier over c to send a test message to channel
// and returns its answer (OK false: the channel refused or failed). The
// errors say the request could not be made or answered: a key that may
// not ask (streams.ErrNotPermitted), or no notifier on the hub.
func Test(ctx context.Context, c *streams.Client, channel string) (TestReply, error) {
	var rep TestReply
	req, _ := json.Marshal(TestRequest{Channel: channel})
	inbox := c.Conn.NewRespInbox()
	replies, err := c.Conn.SubscribeSync(inbox)
	if err != nil {
		return rep, fmt.Errorf("notify test: %w", err)
	}
	defer replies.Unsubscribe()
	if err := c.Conn.PublishRequest(streams.NotifyTestSubject, inbox, req); err != nil {
		return rep, fmt.Errorf("notify test: %w", err)
	}
	// A refused publish shows as the connection's last error once flushed.
	if err := c.Conn.FlushTimeout(5 * time.Second); err != nil {
		return rep, fmt.Errorf("notify test: %w", err)
	}
	if le := c.Conn.LastError(); le != nil && strings.Contains(le.Error(), "Permissions Violation") {
		return rep, c.Refused("notify test: publish "+streams.NotifyTestSubject, le)
	}
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	msg, err := replies.NextMsgWithContext(ctx)
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) {
		return rep, fmt.Errorf("no notifier answers on the hub (are channels configured in its notify section?): %w", err)
	}
	if err != nil {
		return rep, fmt.Errorf("notify test: %w", err)
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return rep, fmt.Errorf("notify test: bad answer: %w", err)
	}
	return rep, nil
}

// Service is the hub's notifier: a durable consumer of ALERTS delivering
// to channels, its pending messages in a KV bucket. log may be nil.
func Service(cfg notifier.Config, channels []notifier.Channel, log *slog.Logger) streams.HubService {
	return &service{cfg: cfg, channels: channels, log: log}
}

type service struct {
	cfg      notifier.Config
	channels []notifier.Channel
	log      *slog.Logger
}

func (s *service) Name() string { return "notifier" }

func (s *service) Run(ctx context.Context, h *streams.Hub) error {
	js := h.JetStream()
	store, err := streams.OpenKVStore(ctx, h, streams.NotifierBucket,
		"the notifier's pending messages (job.<channel>.<id>) and its position in ALERTS (_seen)")
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	n := notifier.New(notifier.Options{Config: s.cfg, Channels: s.channels, Store: store, Pub: streams.JetStreamPublisher(js), Log: s.log, Node: h.Server().Name()})
	if err := n.Load(ctx); err != nil {
		return err
	}
	log := s.log
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
			err := streams.FollowSubject(ctx, js, streams.FleetStream, events.FleetDeclaredSubject, seq,
				func(seq uint64, data []byte) { applyFleet(n, seq, data, log) })
			if err != nil {
				err = fmt.Errorf("notifier: follow the declared fleet: %w", err)
			}
			fleetErr <- err
			if err != nil {
				cancel()
			}
		}()
	} else {
		fleetErr <- nil
	}
	defer func() { cancel(); <-fleetErr }()
	sub, err := h.Conn().Subscribe(streams.NotifyTestSubject, func(m *nats.Msg) {
		var req TestRequest
		_ = json.Unmarshal(m.Data, &req)
		rep := TestReply{Channel: req.Channel}
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
		return fmt.Errorf("notifier: subscribe %s: %w", streams.NotifyTestSubject, err)
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
		Durable: streams.NotifierConsumer, Description: "the notifier: alerts to ntfy, Matrix, email",
		FilterSubject: events.AlertSubjects, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1,
		AckWait: time.Minute,
	}
	err = streams.ConsumeRecent(ctx, js, streams.AlertsStream, cfg, 10*time.Minute, func(ctx context.Context, m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if err := n.HandleAlert(ctx, md.Sequence.Stream, m.Data()); err != nil {
			if errors.Is(err, notifier.ErrPermanent) {
				return streams.Permanent(err)
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
	seq, data, found, err := streams.LastOnSubject(ctx, js, streams.FleetStream, events.FleetDeclaredSubject)
	if err != nil {
		return 0, fmt.Errorf("notifier: read the declared fleet: %w", err)
	}
	if !found {
		n.SetFleet(notifier.Fleet{Tags: map[string][]string{}})
		log.Warn("notifier: no declared fleet yet; channels routed by tags take no alerts until pinkie fleet sync publishes one")
		return 0, nil
	}
	applyFleet(n, seq, data, log)
	return seq, nil
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
