package streams

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// Stream, consumer and bucket names. Durable consumer names are API: never
// rename them, or consumers start over.
const (
	OutboxStream     = events.StreamOutbox
	OutboxConsumer   = "HUB"
	IngestStream     = events.StreamIngest
	IngestConsumer   = "ingest"
	HostsStream      = events.StreamHosts
	DeployStream     = events.StreamDeploy
	AlertsStream     = events.StreamAlerts
	DeadLetterStream = events.StreamDeadLetter
	FleetStream      = events.StreamFleet
)

// KV buckets the hub creates: the projections', and the deploy planner's
// state.
var Buckets = append(events.ProjectionBuckets(), events.BucketDeployPlanner)

// deliverSubject is where an agent's HUB consumer pushes events to the hub.
func deliverSubject(host string) string { return events.DeliverSubject(host) }

// ingestPrefix is the subject prefix the hub gives everything a host's
// OUTBOX source delivers into INGEST: evt.<kind>… becomes
// pinkie.ingest.<host>.evt.<kind>…, and any other subject a rogue agent
// sends is prefixed just the same.
func ingestPrefix(host string) string { return events.IngestSubjectFor(host) }

// outboxConfig is the agent's OUTBOX: everything producers publish, kept
// until the hub has taken it (interest retention with the HUB consumer),
// bounded, refusing new events when full rather than dropping old ones.
func outboxConfig(maxBytes int64, maxAge time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        OutboxStream,
		Description: "events produced on this host, until the hub has them",
		Subjects:    []string{events.LocalSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.InterestPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    maxBytes,
		MaxAge:      maxAge,
		MaxMsgSize:  events.MaxSize,
		Duplicates:  10 * time.Minute,
	}
}

// outboxConsumerConfig is the durable push consumer the hub's INGEST stream
// sources through (ADR-60 durable sourcing): acknowledged by flow control,
// so the OUTBOX drains only once the hub has stored each event.
func outboxConsumerConfig(host string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        OutboxConsumer,
		Description:    "the hub's INGEST stream sources this host's events through it",
		FilterSubject:  events.LocalSubjects,
		DeliverSubject: deliverSubject(host),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckFlowControlPolicy,
		FlowControl:    true,
		IdleHeartbeat:  time.Second, // durable sourcing requires exactly 1s
		MaxAckPending:  10000,
		MaxDeliver:     -1,
	}
}

// ingestSource is how INGEST sources one host's OUTBOX across the leaf link.
// Its transform matches every subject (">"), not just "evt.>": a transform
// does not filter, and a subject it does not match would be stored as the
// sender wrote it — a rogue agent could then store pinkie.ingest.<another
// host>.…. With ">", the host token in INGEST is always the one the hub
// configured for the source that delivered the message.
func ingestSource(host string) *jetstream.StreamSource {
	return &jetstream.StreamSource{
		Name: OutboxStream,
		SubjectTransforms: []jetstream.SubjectTransformConfig{
			{Source: ">", Destination: ingestPrefix(host) + ".>"},
		},
		External: &jetstream.ExternalStream{
			APIPrefix:     "$JS." + events.Domain(host) + ".API",
			DeliverPrefix: events.DeliverPrefix(host),
		},
		Consumer: &jetstream.StreamConsumerSource{Name: OutboxConsumer, DeliverSubject: deliverSubject(host)},
	}
}

// ingestConfig is INGEST: agents' raw events as they arrive, before the
// hub's check moves each to HOSTS or DEADLETTER. It has no subjects of its
// own, so nothing can be published into it, only sourced. It keeps events
// a week (limits retention: no per-message deletion on the hot path); the
// ingest consumer's ack floor says how far the check has come. It holds at
// most maxBytes and refuses new messages when full (a source retries a
// refused message: nothing is lost, sourcing waits); the hub trims checked
// messages once it is half full (trimIngest), so only a stalled check can
// fill it.
func ingestConfig(hosts []string, maxBytes int64) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:        IngestStream,
		Description: "agents' events as sourced from their OUTBOX, awaiting the ingest check",
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    maxBytes,
		// No deduplication: a stream with sources keeps a zero window.
		// Agents' Nats-Msg-Ids must not make one host's event drop another
		// host's, nor hide a repeated id from the check (which refuses one
		// with other content); HOSTS deduplicates per host.
		Duplicates: 0,
		MaxAge:     7 * 24 * time.Hour,
	}
	for _, h := range hosts {
		cfg.Sources = append(cfg.Sources, ingestSource(h))
	}
	return cfg
}

// hubStreams are the hub's durable streams other than INGEST. The ones
// hosts fill are bounded by the limits (HOSTS rotates its oldest telemetry
// out; DEADLETTER too, per host); DEPLOY and ALERTS by a history per
// subject, so a host that floods its own deploy phases or alerts cannot
// take the room the rest of the store keeps for them.
func hubStreams(l storeLimits) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name: HostsStream, Description: "every host's checked telemetry, pinkie.host.<host>.<kind>[.<object>]",
			Subjects: []string{events.HostSubjects}, Storage: jetstream.FileStorage,
			MaxAge: 30 * 24 * time.Hour, Duplicates: time.Hour, AllowDirect: true,
			MaxBytes: l.hosts, Discard: jetstream.DiscardOld,
		},
		{
			Name: DeployStream, Description: "deploy requests and phases: the deploy record",
			Subjects: []string{events.DeploySubjects}, Storage: jetstream.FileStorage,
			Duplicates: 24 * time.Hour, AllowDirect: true, DenyDelete: true,
			MaxMsgsPerSubject: perSubjectHistory,
		},
		{
			Name: AlertsStream, Description: "alerts firing and resolved",
			Subjects: []string{events.AlertSubjects}, Storage: jetstream.FileStorage,
			MaxAge: 90 * 24 * time.Hour, Duplicates: time.Hour, AllowDirect: true,
			MaxMsgsPerSubject: perSubjectHistory,
		},
		{Name: FleetStream, Description: "the fleet as declared in the flake (pinkie fleet sync); the last few versions", Subjects: []string{events.FleetSubjects}, Storage: jetstream.FileStorage, MaxMsgsPerSubject: 10, MaxMsgSize: 1 << 20, Duplicates: time.Hour, AllowDirect: true},
		{
			Name: DeadLetterStream, Description: "events refused on ingest, with the reason",
			Subjects: []string{events.DeadLetterSubjects}, Storage: jetstream.FileStorage,
			MaxAge: 30 * 24 * time.Hour, Duplicates: time.Hour, AllowDirect: true,
			MaxBytes: l.deadLetter, Discard: jetstream.DiscardOld, MaxMsgsPerSubject: deadLettersPerHost,
		},
		{
			Name: AlertLogStream, Description: "silences (pinkie.silence.>) and the notifier's delivery audit (pinkie.notify.<channel>.<outcome>)",
			Subjects: []string{events.SilenceSubjects, events.NotifySubjects}, Storage: jetstream.FileStorage,
			MaxAge: 90 * 24 * time.Hour, Duplicates: time.Hour, AllowDirect: true,
		},
	}
}
