package events

import "time"

// Stored is an event as a stream holds it: decoded with Decode (the only
// decoder), with the stream, subject and sequence it is stored under. It
// is what the dashboard reads and the one input of every fold (Fold).
type Stored struct {
	// Stream is the stream that holds the event (set by the fold runner).
	Stream  string
	Subject string
	Seq     uint64
	// Time is when the event was observed (its CloudEvents time), or else
	// when the hub stored it (set by the dashboard's readers).
	Time time.Time
	// At is when the stream stored the event (set by the fold runner:
	// rules that measure silence go by it, not by the event's own time).
	At time.Time
	// Event is the CloudEvent; Kind its catalog entry.
	Event Event
	Kind  Kind
}
