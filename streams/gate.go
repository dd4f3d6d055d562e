package streams

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// The consumer gate stands between clients (operator and reader keys) and
// the JetStream consumer API. A client may read a stream through an
// ephemeral pull consumer without acks, nothing else: no durable consumer
// (it would outlive the client and could take a hub name), no push
// consumer (the server would publish its messages on any deliver subject,
// straight into the hub's streams), no acks (clients get no $JS.ACK at
// all). A pull or a delete reaches only consumers the gate created.
//
// The gate answers a refusal itself, as the JetStream API would, with a
// 403 and the reason. A permitted call goes on, unchanged except for the
// defaults below, to the real API with the client's reply subject, so the
// server answers the client directly and the gate never relays messages.
const (
	// gateDefaultInactive is the inactive threshold of a client consumer
	// that sets none; gateMaxInactive is the most a client may set.
	gateDefaultInactive = 5 * time.Minute
	gateMaxInactive     = 10 * time.Minute
	// gateMaxPullWait is the longest a pull may wait: the server keeps the
	// route for its answers no longer (the service export response
	// threshold, 2 minutes by default).
	gateMaxPullWait = 2 * time.Minute
	// gateMaxConsumers bounds the consumers clients hold at once.
	gateMaxConsumers = 1000
	// gateErrCode is the err_code of the gate's refusals; nats-server's own
	// codes are below it.
	gateErrCode = 10403
	// gateMetaKey marks, in its metadata, a consumer the gate let a client
	// create: on a clustered hub a client's next call may reach another
	// node's gate (it moved, or the queue group picked another), which
	// adopts the consumer by this mark. Clients cannot set it themselves.
	gateMetaKey = events.GateMetaKey
)

// gateRefusal is why the gate refused a call; its text reaches the client.
type gateRefusal struct{ reason string }

func (r *gateRefusal) Error() string { return r.reason }

func refuse(format string, a ...any) *gateRefusal {
	return &gateRefusal{reason: "pinkie: " + fmt.Sprintf(format, a...)}
}

type gateKey struct{ stream, name string }

// gateEntry is a consumer the gate let a client create.
type gateEntry struct {
	until     time.Time     // forget it after this
	inactive  time.Duration // its inactive threshold
	confirmed bool          // seen alive as an ephemeral pull consumer without acks
}

// consumerGate decides on clients' consumer calls. lookup returns a
// consumer's config, or jetstream.ErrConsumerNotFound.
type consumerGate struct {
	lookup func(ctx context.Context, stream, name string) (*jetstream.ConsumerConfig, error)
	now    func() time.Time
	log    *slog.Logger

	mu   sync.Mutex
	live map[gateKey]*gateEntry
}

func newConsumerGate(js jetstream.JetStream, log *slog.Logger) *consumerGate {
	return &consumerGate{
		lookup: func(ctx context.Context, stream, name string) (*jetstream.ConsumerConfig, error) {
			c, err := js.Consumer(ctx, stream, name)
			if err != nil {
				return nil, err
			}
			cfg := c.CachedInfo().Config
			return &cfg, nil
		},
		now:  time.Now,
		log:  log,
		live: map[gateKey]*gateEntry{},
	}
}

// startGate connects the gate as its in-process user of CLIENTS and
// subscribes it to clients' consumer calls.
func (h *Hub) startGate() error {
	pub, _ := h.gateKP.PublicKey()
	nc, err := nats.Connect("", nats.InProcessServer(h.srv), nats.Name("pinkie-hub-consumer-gate"),
		nats.MaxReconnects(-1), nats.Nkey(pub, h.gateKP.Sign))
	if err != nil {
		return fmt.Errorf("connect consumer gate: %w", err)
	}
	h.gateNC = nc
	g := newConsumerGate(h.js, h.log.With("component", "consumer-gate"))
	for _, p := range jsAPIPrefixes {
		for _, api := range clientAPIs {
			if !api.gated {
				continue
			}
			prefix := p + "."
			// A queue group: on a clustered hub each call is handled by
			// one node (the nearest), not by every node.
			if _, err := nc.QueueSubscribe(prefix+api.call, "consumer-gate", func(m *nats.Msg) { g.handle(nc, strings.TrimPrefix(m.Subject, prefix), m) }); err != nil {
				return fmt.Errorf("start consumer gate: %w", err)
			}
		}
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("start consumer gate: %w", err)
	}
	return nil
}

// handle decides on one call (the API subject after the $JS[.hub].API.
// prefix) and refuses it or sends it on with the client's reply subject.
func (g *consumerGate) handle(nc *nats.Conn, call string, m *nats.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := g.decide(ctx, call, m.Data)
	if err != nil {
		var r *gateRefusal
		if !errors.As(err, &r) {
			g.log.Error("consumer call", "call", call, "err", err)
			r = refuse("the hub could not check this call: %v", err)
		} else {
			g.log.Info("consumer call refused", "call", call, "reason", r.reason)
		}
		if m.Reply != "" {
			_ = nc.PublishMsg(refusalMsg(m.Reply, call, r))
		}
		return
	}
	out := nats.NewMsg(gateJSPrefix + "." + call)
	out.Reply, out.Data = m.Reply, body
	for k, v := range m.Header {
		out.Header[k] = v
	}
	if err := nc.PublishMsg(out); err != nil {
		g.log.Error("forward consumer call", "call", call, "err", err)
	}
}

// refusalMsg answers a refused call the way the JetStream API would: a
// JSON error for create and delete, a status for a pull.
func refusalMsg(reply, call string, r *gateRefusal) *nats.Msg {
	m := nats.NewMsg(reply)
	if strings.HasPrefix(call, "CONSUMER.MSG.NEXT.") {
		m.Header.Set("Status", "409")
		m.Header.Set("Description", r.reason)
		return m
	}
	typ := server.JSApiConsumerCreateResponseType
	if strings.HasPrefix(call, "CONSUMER.DELETE.") {
		typ = server.JSApiConsumerDeleteResponseType
	}
	m.Data, _ = json.Marshal(server.ApiResponse{Type: typ, Error: &server.ApiError{Code: 403, ErrCode: gateErrCode, Description: r.reason}})
	return m
}

// decide checks one call (the API subject after $JS.API.) and returns the
// body to forward, or why not.
func (g *consumerGate) decide(ctx context.Context, call string, body []byte) ([]byte, error) {
	tok := strings.Split(call, ".")
	switch {
	case len(tok) >= 3 && tok[0] == "CONSUMER" && tok[1] == "DURABLE":
		return nil, refuse("durable consumers are refused: read with an ephemeral pull consumer (an ordered consumer, or 'nats consumer add --ephemeral --pull --ack none')")
	case len(tok) >= 3 && tok[0] == "CONSUMER" && tok[1] == "CREATE":
		return g.create(ctx, tok[2], tok[3:], body)
	case len(tok) == 5 && tok[0] == "CONSUMER" && tok[1] == "MSG" && tok[2] == "NEXT":
		return g.next(ctx, gateKey{tok[3], tok[4]}, body)
	case len(tok) == 4 && tok[0] == "CONSUMER" && tok[1] == "DELETE":
		return g.remove(ctx, gateKey{tok[2], tok[3]}, body)
	}
	return nil, refuse("%s is not a consumer call the gate knows", call)
}

// decodeStrict decodes exactly one JSON value, refusing unknown fields as
// the server does, and anything after it (the server would decode a
// second value over the first).
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more than one JSON value")
	}
	return nil
}

func (g *consumerGate) create(ctx context.Context, stream string, rest []string, body []byte) ([]byte, error) {
	var req server.CreateConsumerRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, refuse("consumer create request: %v", err)
	}
	c := &req.Config
	switch {
	case req.Stream != stream:
		return nil, refuse("stream %q in the request differs from %q in the subject", req.Stream, stream)
	case c.DeliverSubject != "" || c.DeliverGroup != "" || c.FlowControl || c.Heartbeat != 0 || c.RateLimit != 0:
		return nil, refuse("push consumers are refused (deliver subject %q): the server would publish their messages into the hub's account; read with a pull consumer", c.DeliverSubject)
	case c.Durable != "":
		return nil, refuse("durable consumers are refused (durable_name %q): read with an ephemeral pull consumer", c.Durable)
	case c.AckPolicy != server.AckNone:
		return nil, refuse("consumers with acks are refused (ack policy %s): clients cannot ack; use ack policy none", c.AckPolicy)
	case c.Direct || c.Sourcing:
		return nil, refuse("direct and sourcing consumers are the server's own")
	case c.InactiveThreshold < 0 || c.InactiveThreshold > gateMaxInactive:
		return nil, refuse("inactive threshold %s: at most %s", c.InactiveThreshold, gateMaxInactive)
	case c.Metadata[gateMetaKey] != "":
		return nil, refuse("metadata key %s is the hub's", gateMetaKey)
	}
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
	c.Metadata[gateMetaKey] = "client"
	if c.InactiveThreshold == 0 {
		c.InactiveThreshold = gateDefaultInactive
	}
	switch {
	case len(rest) > 0 && c.Name != "" && c.Name != rest[0]:
		return nil, refuse("consumer name %q in the request differs from %q in the subject", c.Name, rest[0])
	case len(rest) > 0:
		c.Name = rest[0]
	case c.Name == "":
		c.Name = rand.Text()
	}
	if strings.HasPrefix(c.Name, deployHubConsumer("")) {
		return nil, refuse("consumer names starting with %s are the hub's", deployHubConsumer(""))
	}
	key := gateKey{stream, c.Name}
	now := g.now()
	g.mu.Lock()
	g.forgetExpired(now)
	_, known := g.live[key]
	n := len(g.live)
	g.mu.Unlock()
	if !known {
		if n >= gateMaxConsumers {
			return nil, refuse("clients hold %d consumers, the most the hub allows; wait for some to expire", n)
		}
		_, err := g.lookup(ctx, stream, c.Name)
		switch {
		case err == nil:
			return nil, refuse("consumer %s on %s exists and is not a client's", c.Name, stream)
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, refuse("no stream %s", stream)
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			return nil, fmt.Errorf("look up consumer %s on %s: %w", c.Name, stream, err)
		}
	}
	// Never update an existing consumer; a retried create of the same
	// consumer with the same config still succeeds.
	req.Action = server.ActionCreate
	out, err := json.Marshal(&req)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.live[key] = &gateEntry{until: now.Add(c.InactiveThreshold + gateMaxPullWait), inactive: c.InactiveThreshold}
	g.mu.Unlock()
	return out, nil
}

// clientSafe reports whether a live consumer is what the gate creates.
func clientSafe(c *jetstream.ConsumerConfig) bool {
	return c.Durable == "" && c.DeliverSubject == "" && c.AckPolicy == jetstream.AckNonePolicy
}

func (g *consumerGate) next(ctx context.Context, key gateKey, body []byte) ([]byte, error) {
	var wait time.Duration
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		var req server.JSApiConsumerGetNextRequest
		if err := decodeStrict(t, &req); err != nil {
			return nil, refuse("pull request: %v", err)
		}
		if req.Expires > gateMaxPullWait {
			return nil, refuse("a pull may wait at most %s, not %s", gateMaxPullWait, req.Expires)
		}
		wait = req.Expires
	}
	now := g.now()
	g.mu.Lock()
	e, ok := g.live[key]
	if ok && now.After(e.until) {
		delete(g.live, key)
		ok = false
	}
	confirmed := ok && e.confirmed
	g.mu.Unlock()
	if !ok && g.adopt(ctx, key) {
		ok, confirmed = true, true
	}
	if !ok {
		return nil, refuse("consumer %s on %s was not created by a client through the hub (or has expired): clients pull only from their own ephemeral consumers", key.name, key.stream)
	}
	if !confirmed {
		cfg, err := g.lookup(ctx, key.stream, key.name)
		if err != nil {
			return nil, refuse("consumer %s on %s: %v", key.name, key.stream, err)
		}
		if !clientSafe(cfg) {
			return nil, refuse("consumer %s on %s is not a client's", key.name, key.stream)
		}
	}
	g.mu.Lock()
	if e, ok := g.live[key]; ok {
		e.confirmed = true
		e.until = now.Add(wait + e.inactive + gateMaxPullWait)
	}
	g.mu.Unlock()
	return body, nil
}

// adopt takes on a client's consumer another node's gate created (its
// metadata bears the gate's mark), reporting whether it is one.
func (g *consumerGate) adopt(ctx context.Context, key gateKey) bool {
	cfg, err := g.lookup(ctx, key.stream, key.name)
	if err != nil || !clientSafe(cfg) || cfg.Metadata[gateMetaKey] == "" {
		return false
	}
	inactive := cfg.InactiveThreshold
	if inactive <= 0 || inactive > gateMaxInactive {
		inactive = gateMaxInactive
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.live[key]; !ok {
		g.live[key] = &gateEntry{until: g.now().Add(inactive + gateMaxPullWait), inactive: inactive, confirmed: true}
	}
	return true
}

func (g *consumerGate) remove(ctx context.Context, key gateKey, body []byte) ([]byte, error) {
	g.mu.Lock()
	_, ok := g.live[key]
	g.mu.Unlock()
	if !ok {
		g.adopt(ctx, key)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.live[key]; !ok {
		return nil, refuse("consumer %s on %s was not created by a client through the hub: clients delete only their own ephemeral consumers", key.name, key.stream)
	}
	delete(g.live, key)
	return body, nil
}

// forgetExpired drops consumers past their time; the server has removed
// them by then. Called with g.mu held.
func (g *consumerGate) forgetExpired(now time.Time) {
	for k, e := range g.live {
		if now.After(e.until) {
			delete(g.live, k)
		}
	}
}
