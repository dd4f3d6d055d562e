package events

import "context"

// Publisher stores an event on a subject and says where it was stored: at
// the hub for a CLI client or the hub itself, in the outbox for an agent.
// streams implements it (streams.EventMsg makes every such message: the
// encoded event, its content type and its id as Nats-Msg-Id); producers,
// consumers and use cases take it, so they are testable without a server.
type Publisher interface {
	Publish(ctx context.Context, subject string, e Event) (Ack, error)
}

// Ack is where a published event was stored (for an agent, its OUTBOX,
// which forwards it to the hub later).
type Ack struct {
	Stream string
	Seq    uint64
	// Duplicate: the stream already held an event with this id.
	Duplicate bool
}

// PublisherFunc is a function as a Publisher.
type PublisherFunc func(ctx context.Context, subject string, e Event) (Ack, error)

// Publish implements Publisher.
func (f PublisherFunc) Publish(ctx context.Context, subject string, e Event) (Ack, error) {
	return f(ctx, subject, e)
}
