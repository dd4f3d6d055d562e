package events

import "time"

// Alert severities, most severe first.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// SeverityRank orders severities, most severe lowest: critical 0,
// warning 1, info 2, anything else 3.
func SeverityRank(s string) int {
	switch s {
	case SeverityCritical:
		return 0
	case SeverityWarning:
		return 1
	case SeverityInfo:
		return 2
	}
	return 3
}

// Alert is the data of pinkie.alert.firing.v1 and pinkie.alert.resolved.v1.
// An alert's identity is (host, rule, object); Fingerprint is a stable hash
// of it.
type Alert struct {
	Host string `json:"host"`
	Rule string `json:"rule"`
	// Object is what the alert is about on the host: a device, pool,
	// mount point, unit, user; empty for host-wide alerts.
	Object   string `json:"object,omitempty"`
	Severity string `json:"severity"`
	// Summary is one readable line: what is wrong, where, how bad.
	Summary string            `json:"summary"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Status is firing or resolved.
	Status string `json:"status"`
	// Reason says why this event was published: started, repeat,
	// escalated, deescalated, unsilenced, event (a one-shot alert about a
	// single event, such as a login), resolved.
	Reason string `json:"reason"`
	// StartsAt is when the alert started firing (its condition held for
	// the rule's for duration); EndsAt when it resolved.
	StartsAt time.Time  `json:"starts_at"`
	EndsAt   *time.Time `json:"ends_at,omitempty"`
	// Repeat counts the repeated notifications of one firing (0 for the
	// first).
	Repeat int `json:"repeat,omitempty"`
	// OneShot alerts are about a single event and never resolve.
	OneShot bool `json:"one_shot,omitempty"`
	// Silenced is set when a silence matched at publish time: the notifier
	// does not deliver it. SilencedBy lists the silences' ids.
	Silenced   bool     `json:"silenced,omitempty"`
	SilencedBy []string `json:"silenced_by,omitempty"`
	// Fingerprint identifies (host, rule, object).
	Fingerprint string `json:"fingerprint"`
	// CauseEventID and CauseType name the event that made the alert
	// change, when one did (none for a tick, e.g. a silent host).
	CauseEventID string `json:"cause_event_id,omitempty"`
	CauseType    string `json:"cause_type,omitempty"`
}

// SilenceAdded silences alerts whose labels match every matcher, from
// StartsAt until EndsAt. Matchers map host, rule, object, severity or a
// rule label to a shell-style pattern (path.Match: *, ?, [a-z]).
type SilenceAdded struct {
	ID        string            `json:"id"`
	Matchers  map[string]string `json:"matchers"`
	StartsAt  time.Time         `json:"starts_at"`
	EndsAt    time.Time         `json:"ends_at"`
	Comment   string            `json:"comment,omitempty"`
	CreatedBy string            `json:"created_by,omitempty"`
}

// SilenceRemoved ends a silence before its time.
type SilenceRemoved struct {
	ID        string `json:"id"`
	RemovedBy string `json:"removed_by,omitempty"`
}

// Delivery outcomes of the notifier.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetrying  = "retrying"
	OutcomeFailed    = "failed"
)

// NotifyDelivery is one attempt of the notifier to deliver a message (one
// or more grouped alerts) to a channel.
type NotifyDelivery struct {
	// Channel is the configured channel's name; Type is ntfy, matrix or
	// email.
	Channel string `json:"channel"`
	Type    string `json:"type"`
	// Outcome is delivered, retrying (a retry is scheduled) or failed
	// (given up after max_retry, or refused permanently).
	Outcome string `json:"outcome"`
	// MessageID identifies the message across retries (the Matrix txnId,
	// the email Message-ID).
	MessageID string `json:"message_id"`
	// AlertEventIDs are the alert events the message carries.
	AlertEventIDs []string `json:"alert_event_ids"`
	Attempt       int      `json:"attempt"`
	Error         string   `json:"error,omitempty"`
	// NextAttempt is when a retry is due (outcome retrying).
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	DurationMs  int64      `json:"duration_ms"`
}
