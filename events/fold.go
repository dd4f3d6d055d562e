package events

import (
	"strings"
	"time"
)

// Output is an event a fold asks to publish on Subject, with Nats-Msg-Id
// set to Event.ID(): a fold's ids are deterministic, so an output
// re-published by a replay after a crash is dropped as a duplicate.
type Output struct {
	Subject string
	Event   Event
}

// Fold is a pure fold over stored events into keyed records: the
// projections, the alerter, the deploy planner and the last-deploy
// projection. A runner (package streams) feeds it, writes what Flush
// returns to its KV bucket, then its checkpoint, and restores it with Load
// at the next start. Nothing behind a Fold does I/O or reads the clock.
type Fold interface {
	// Apply folds one event in and returns the events it causes.
	Apply(s Stored) []Output
	// Tick re-evaluates the state at time now, once the fold has caught
	// up with its streams; it returns the events that causes.
	Tick(now time.Time) []Output
	// Flush returns the records changed since the last Flush: key → JSON,
	// or key → nil for a deleted record.
	Flush() (map[string][]byte, error)
	// Load restores one record as Flush wrote it.
	Load(key string, value []byte) error
}

// CheckpointKey is the key, in a fold's KV bucket, of the last sequence
// applied per stream. It is written after the records.
const CheckpointKey = "_checkpoint"

// StateKeyPrefix begins every key of a fold's bucket that is not a record
// for readers: the checkpoint and the state a fold keeps to resume (such
// as last-deploy's requests). No host name can begin with it.
const StateKeyPrefix = "_"

// IsStateKey reports whether key, in a fold's bucket, is the fold's own
// state (the checkpoint and the like) rather than a record: readers skip
// it.
func IsStateKey(key string) bool { return strings.HasPrefix(key, StateKeyPrefix) }

// Deploy returns a deploy event's data (*DeployRequested or *DeployPhase)
// and the host token of its subject (pinkie.deploy.<host>.…: for an agent's
// phase, the host that sent it). ok is false for another kind, or data
// that does not decode.
func (s Stored) Deploy() (subjectHost string, data any, ok bool) {
	if !strings.HasPrefix(s.Kind.Name, "deploy.") {
		return "", nil, false
	}
	data, err := DecodeData(s.Event, s.Kind)
	if err != nil {
		return "", nil, false
	}
	subjectHost, _, _ = HostFromSubject(s.Subject)
	return subjectHost, data, true
}
