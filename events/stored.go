package events

import "time"

// Stored is an event as a stream holds it.
type Stored struct {
	Subject string
	Seq     uint64
	// Time is when the event was observed (its CloudEvents time), or else
	// when the hub stored it.
	Time time.Time
	// Event is the CloudEvent; Kind its catalog entry.
	Event Event
	Kind  Kind
}
