package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// DeployHubService keeps an AGENT_<host> consumer on DEPLOY for every host
// the hub knows (the hub recreates one that is deleted: watch.go). The
// folds over DEPLOY (the deploy planner, last-deploy) run as FoldServices.
type DeployHubService struct {
	// Tick is how often hosts are re-checked (default 2s).
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
		case <-t.C:
		}
	}
}
