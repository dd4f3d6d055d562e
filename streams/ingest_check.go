package streams

import (
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// IngestCheck decides about every message INGEST holds: where it goes
// (HOSTS, DEPLOY or the dead letters), what a refused one's dead letter
// says, and whether an event sent again under a stored event's id repeats
// it. The hub runs it (ingest.go) in order, without I/O of its own;
// package consumers/ingest implements it and cmd gives it to the hub
// (HubOptions.IngestCheck).
type IngestCheck interface {
	Check(m events.IngestMessage) events.IngestDecision
	// DeadLetter builds the dead-letter event for a refused message and
	// the subject it goes to.
	DeadLetter(m events.IngestMessage, d events.IngestDecision) (e events.Event, subject string, err error)
	// SameEvent reports whether sent is the stored event again.
	SameEvent(stored, sent []byte) bool
}

// IngestCheckEnv is what the ingest check needs of the running hub.
type IngestCheckEnv struct {
	Schemas *schemas.Set
	// MaxEventBytes is HubOptions.MaxEventBytes (its default applied).
	MaxEventBytes int
	// Known reports whether the hub takes events from host (it is in the
	// auth file, or the hub sources it).
	Known func(host string) bool
	// Orders tells which builder the deploy planner ordered to build what
	// (read from DEPLOY).
	Orders BuildOrders
}

// BuildOrders answers whether the hub's deploy planner ordered builder to
// build target's system for request requestID.
type BuildOrders interface {
	BuildOrdered(builder, requestID, target string) (bool, error)
}
