package streams

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// EventMsg is the message that stores e on subject: the encoded event,
// its content type, and its id as Nats-Msg-Id (so a second publish of the
// same event is a duplicate).
func EventMsg(subject string, e events.Event) (*nats.Msg, error) {
	b, err := events.Encode(e)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(subject)
	m.Data = b
	m.Header.Set(events.HeaderContentType, events.ContentType)
	m.Header.Set(events.HeaderMsgID, e.ID())
	return m, nil
}

// EventPublisher publishes events into JetStream, each as EventMsg makes
// it, and waits for the stream's ack (the notifier's delivery audit).
type EventPublisher struct{ js jetstream.JetStream }

// NewEventPublisher publishes through js.
func NewEventPublisher(js jetstream.JetStream) EventPublisher { return EventPublisher{js} }

// Publish stores e on subject.
func (p EventPublisher) Publish(ctx context.Context, subject string, e events.Event) error {
	m, err := EventMsg(subject, e)
	if err != nil {
		return err
	}
	_, err = p.js.PublishMsg(ctx, m)
	return err
}
