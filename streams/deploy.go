package streams

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// How deploy requests travel from the hub to a host's agent.
//
// The hub keeps one durable push consumer per host on DEPLOY, AGENT_<host>,
// filtered to what that host must see (its requests and the planner's
// orders for it), a new one starting at the host's latest request, acked
// by flow control. The agent's own stream DEPLOYIN (in its domain) sources
// that consumer across the leaf link (ADR-60 durable sourcing), so
// requests wait in DEPLOY while the agent is away and arrive, in order,
// when it is back. The agent's leaf key may only reset its own consumer,
// receive its own deliveries and answer its own flow control (auth.go).
const (
	// DeployInboxStream is the agent-side copy of the host's requests.
	DeployInboxStream = events.StreamDeployInbox
	// DeployActivatorConsumer and DeployBuilderConsumer are the agent's
	// durable consumers on DEPLOYIN. Durable names are API: never rename.
	DeployActivatorConsumer = "activator"
	DeployBuilderConsumer   = "builder"
)

// deployHubConsumer is the hub's durable consumer on DEPLOY for host.
func deployHubConsumer(host string) string { return "AGENT_" + host }

// deployDeliverPrefix and deployDeliverSubject are where AGENT_<host>
// pushes to.
func deployDeliverPrefix(host string) string  { return events.DeployDeliverPrefix(host) }
func deployDeliverSubject(host string) string { return deployDeliverPrefix(host) + ".d" }

// deployAgentFilters are the DEPLOY subjects a host's agent receives.
func deployAgentFilters(host string) []string {
	return []string{
		events.DeploySubject(host, "requested"),
		events.DeploySubject(host, "activation.ordered"),
		events.DeploySubject(host, "build.ordered"),
	}
}

// deployLeafPublish and deployLeafSubscribe are what a host's leaf key
// needs for its deploy inbox, and nothing of any other host: reset its own
// AGENT_<host> consumer and answer its flow control; receive its own
// deliveries and the replies to its own resets (js_api_reply_v2 on the
// agent scopes them to the consumer).
func deployLeafPublish(host string) []string {
	return []string{
		"$JS." + events.HubDomain + ".API.CONSUMER.RESET." + DeployStream + "." + deployHubConsumer(host),
		"$JS.FC." + DeployStream + "." + deployHubConsumer(host) + ".>",
	}
}

func deployLeafSubscribe(host string) []string {
	return []string{
		deployDeliverPrefix(host) + ".>",
		"$JSC.R." + events.HubDomain + ".*." + DeployStream + "." + deployHubConsumer(host) + ".>",
	}
}

// deployHubConsumerConfig is AGENT_<host>, delivering from stream
// sequence start: a new host (or a new hub) starts at its latest request
// (deployConsumerStart), not at the whole history. Not "last per subject":
// nats-server (2.15.3) applies that policy again at every reset, and the
// agent's source resets the consumer at every reconnect, so an agent back
// from an outage would get only the newest request and never record the
// ones it superseded.
func deployHubConsumerConfig(host string, start uint64) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        deployHubConsumer(host),
		Description:    "deploy requests and orders for " + host + ", sourced by its agent's DEPLOYIN stream",
		FilterSubjects: deployAgentFilters(host),
		DeliverSubject: deployDeliverSubject(host),
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    max(start, 1),
		AckPolicy:      jetstream.AckFlowControlPolicy,
		FlowControl:    true,
		IdleHeartbeat:  time.Second, // durable sourcing requires exactly 1s
		MaxAckPending:  1000,
		MaxDeliver:     -1,
	}
}

// deployConsumerStart is where a new AGENT_<host> starts: at the host's
// latest request (the orders for it follow it in DEPLOY), or past the end
// of DEPLOY when the host has none.
func deployConsumerStart(ctx context.Context, js jetstream.JetStream, host string) (uint64, error) {
	st, err := js.Stream(ctx, DeployStream)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", DeployStream, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, events.DeploySubject(host, "requested"))
	if err == nil {
		return m.Sequence, nil
	}
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, fmt.Errorf("read %s's latest deploy request: %w", host, err)
	}
	return st.CachedInfo().State.LastSeq + 1, nil
}

func deployInboxConfig(host string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              DeployInboxStream,
		Description:       "this host's deploy requests and orders, sourced from the hub's DEPLOY stream",
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: 64,
		MaxAge:            90 * 24 * time.Hour,
		Duplicates:        24 * time.Hour,
		Sources: []*jetstream.StreamSource{{
			Name: DeployStream,
			External: &jetstream.ExternalStream{
				APIPrefix:     "$JS." + events.HubDomain + ".API",
				DeliverPrefix: deployDeliverPrefix(host),
			},
			Consumer: &jetstream.StreamConsumerSource{Name: deployHubConsumer(host), DeliverSubject: deployDeliverSubject(host)},
		}},
	}
}

// DeployDelivery is one request or order as the agent's inbox holds it.
type DeployDelivery struct {
	Subject string
	Seq     uint64
	Event   events.Event
	Kind    events.Kind
	// Data is *events.DeployRequested or *events.DeployPhase.
	Data any
	// LatestRequestID is the id of the newest request for this host the
	// inbox holds: a request or order for another request is superseded.
	LatestRequestID string
}

// DeployAgentConsumer runs a handler over the agent's deploy inbox: the
// activator (requests and activation orders) or the builder (build
// orders). It creates the inbox if needed.
type DeployAgentConsumer struct {
	Durable string
	// Phases are the last subject tokens it takes: "requested",
	// "activation.ordered", "build.ordered".
	Phases []string
	// AckWait bounds one handler run before JetStream redelivers
	// (default 2h: builds and activations are long).
	AckWait time.Duration
	// Start runs once the inbox exists, before the first delivery (the
	// activator reports a deploy interrupted by the agent's death).
	Start  func(ctx context.Context, a *Agent) error
	Handle func(ctx context.Context, a *Agent, d DeployDelivery) error
}

// Name implements AgentService.
func (c DeployAgentConsumer) Name() string { return "deploy-" + c.Durable }

// Run implements AgentService.
func (c DeployAgentConsumer) Run(ctx context.Context, a *Agent) error {
	st, err := a.js.CreateOrUpdateStream(ctx, deployInboxConfig(a.Host()))
	if err != nil {
		return fmt.Errorf("create %s: %w", DeployInboxStream, err)
	}
	if c.Start != nil {
		if err := c.Start(ctx, a); err != nil {
			return fmt.Errorf("start %s: %w", c.Name(), err)
		}
	}
	var filters []string
	for _, p := range c.Phases {
		filters = append(filters, events.DeploySubject(a.Host(), p))
	}
	wait := c.AckWait
	if wait <= 0 {
		wait = 2 * time.Hour
	}
	cfg := jetstream.ConsumerConfig{
		Durable: c.Durable, Description: "pinkie deploy " + c.Durable, FilterSubjects: filters,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: wait, MaxDeliver: -1, MaxAckPending: 1,
	}
	reqSubject := events.DeploySubject(a.Host(), "requested")
	return Consume(ctx, a.js, DeployInboxStream, cfg, func(ctx context.Context, m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		e, k, err := events.Decode(m.Data())
		if err != nil {
			return Permanent(fmt.Errorf("%s seq %d: %w", m.Subject(), md.Sequence.Stream, err))
		}
		if err := a.schemas.ValidateData(e.Type(), e.Data()); err != nil {
			return Permanent(fmt.Errorf("%s seq %d: %w", m.Subject(), md.Sequence.Stream, err))
		}
		data, err := events.DecodeData(e, k)
		if err != nil {
			return Permanent(err)
		}
		d := DeployDelivery{Subject: m.Subject(), Seq: md.Sequence.Stream, Event: e, Kind: k, Data: data}
		if last, err := st.GetLastMsgForSubject(ctx, reqSubject); err == nil {
			if le, _, err := events.Decode(last.Data); err == nil {
				d.LatestRequestID = le.ID()
			}
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("read the latest request: %w", err)
		}
		return c.Handle(ctx, a, d)
	})
}

// DeployStored is one event of the DEPLOY stream, decoded.
type DeployStored struct {
	Subject string
	Seq     uint64
	Event   events.Event
	Kind    events.Kind
	Data    any
}

// DeployOutput is what a fold asks the hub to write after it has caught
// up: events to publish at the hub (on their kind's HubSubject) and values
// to put into the fold's KV bucket (key → JSON).
type DeployOutput struct {
	Publish []events.Event
	KV      map[string][]byte
}

// DeployFold is a pure fold over DEPLOY from its first message (the deploy
// planner, the last-deploy projection). The hub replays the whole stream
// into it at every start, so its state is always rebuilt from the record.
type DeployFold interface {
	Name() string
	Apply(s DeployStored)
	// Flush returns what to write now; it is called whenever the fold has
	// seen every message stored so far, and then every few seconds.
	Flush(now time.Time) DeployOutput
	// Bucket is the KV bucket KV values go to ("" if none).
	Bucket() string
}

// DeployHubService keeps an AGENT_<host> consumer on DEPLOY for every host
// the hub knows (the hub recreates one that is deleted: watch.go) and runs
// the deploy folds.
type DeployHubService struct {
	Folds []DeployFold
	// Tick is how often hosts are re-checked and folds flushed (default 2s).
	Tick time.Duration
}

// Name implements HubService.
func (s DeployHubService) Name() string { return "deploy" }

// Run implements HubService.
func (s DeployHubService) Run(ctx context.Context, h *Hub) error {
	tick := s.Tick
	if tick <= 0 {
		tick = 2 * time.Second
	}
	// The folds stop with the service: when one fails and the service is
	// restarted, the others must not go on writing into the same fold
	// state beside their new runs.
	ctx, cancel := context.WithCancel(ctx)
	var folds sync.WaitGroup
	defer func() { cancel(); folds.Wait() }()
	errs := make(chan error, len(s.Folds)+1)
	for _, f := range s.Folds {
		folds.Add(1)
		go func() { defer folds.Done(); errs <- deployRunFold(ctx, h, f, tick) }()
	}
	known := map[string]bool{}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		for _, host := range h.Hosts() {
			if known[host] {
				continue
			}
			if err := ensureDeployConsumer(ctx, h, host); err != nil {
				h.log.Error("create deploy consumer", "host", host, "err", err)
				continue
			}
			known[host] = true
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		case <-t.C:
		}
	}
}

// deployRunFold replays DEPLOY into f and follows it, writing f's output
// each time it has caught up.
func deployRunFold(ctx context.Context, h *Hub, f DeployFold, tick time.Duration) error {
	var kv jetstream.KeyValue
	if f.Bucket() != "" {
		var err error
		if kv, err = h.js.KeyValue(ctx, f.Bucket()); err != nil {
			return fmt.Errorf("%s: KV bucket %s: %w", f.Name(), f.Bucket(), err)
		}
	}
	cons, err := h.js.OrderedConsumer(ctx, DeployStream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("%s: read %s: %w", f.Name(), DeployStream, err)
	}
	flush := func() error {
		out := f.Flush(time.Now())
		for _, e := range out.Publish {
			k, ok := events.Lookup(e.Type())
			if !ok || k.HubSubject == nil {
				return fmt.Errorf("%s: cannot publish %s at the hub", f.Name(), e.Type())
			}
			data, err := events.DecodeData(e, k)
			if err != nil {
				return err
			}
			if err := h.schemas.ValidateData(e.Type(), e.Data()); err != nil {
				return fmt.Errorf("%s: %w", f.Name(), err)
			}
			m, err := EventMsg(k.HubSubject(data), e)
			if err != nil {
				return err
			}
			if _, err := h.js.PublishMsg(ctx, m); err != nil {
				return fmt.Errorf("%s: publish %s: %w", f.Name(), m.Subject, err)
			}
		}
		if kv == nil {
			return nil
		}
		keys := make([]string, 0, len(out.KV))
		for k := range out.KV {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if _, err := kv.Put(ctx, k, out.KV[k]); err != nil {
				return fmt.Errorf("%s: put %s/%s: %w", f.Name(), f.Bucket(), k, err)
			}
		}
		return nil
	}
	noResponders := 0
	for ctx.Err() == nil {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return fmt.Errorf("%s: fetch %s: %w", f.Name(), DeployStream, err)
		}
		n, pending := 0, uint64(0)
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			pending = md.NumPending
			e, k, err := events.Decode(m.Data())
			if err == nil && h.schemas.ValidateData(e.Type(), e.Data()) == nil && strings.HasPrefix(k.Name, "deploy.") {
				if data, err := events.DecodeData(e, k); err == nil {
					f.Apply(DeployStored{Subject: m.Subject(), Seq: md.Sequence.Stream, Event: e, Kind: k, Data: data})
					continue
				}
			}
			h.log.Warn("deploy record holds an unreadable event; skipping it", "fold", f.Name(), "subject", m.Subject(), "seq", md.Sequence.Stream)
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil {
			// On a clustered hub a new consumer's interest reaches the
			// other nodes a moment after it is made: retry a while.
			if errors.Is(err, nats.ErrNoResponders) && noResponders < 40 {
				noResponders++
				sleepCtx(ctx, 250*time.Millisecond)
				continue
			}
			return fmt.Errorf("%s: fetch %s: %w", f.Name(), DeployStream, err)
		}
		noResponders = 0
		if n > 0 && pending > 0 {
			continue
		}
		if err := flush(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n == 0 {
			// Caught up: wait for the next message or the next tick.
			wctx, cancel := context.WithTimeout(ctx, tick)
			deployWaitNew(wctx, h, cons)
			cancel()
		}
	}
	return nil
}

// deployWaitNew blocks until DEPLOY may hold a new message or ctx ends.
func deployWaitNew(ctx context.Context, h *Hub, cons jetstream.Consumer) {
	sub, err := h.nc.SubscribeSync(events.DeploySubjects)
	if err != nil {
		<-ctx.Done()
		return
	}
	defer sub.Unsubscribe()
	if info, err := cons.Info(ctx); err == nil && info.NumPending > 0 {
		return
	}
	_, _ = sub.NextMsgWithContext(ctx)
}
