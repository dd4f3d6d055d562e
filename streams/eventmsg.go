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
	return encodedEventMsg(subject, b, e.ID()), nil
}

// encodedEventMsg is the one place an encoded event becomes a message:
// its data, its content type and id as its Nats-Msg-Id.
func encodedEventMsg(subject string, data []byte, id string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(events.HeaderContentType, events.ContentType)
	m.Header.Set(events.HeaderMsgID, id)
	return m
}

// PublishEvent stores e on subject through js (as EventMsg makes it) and
// says where.
func PublishEvent(ctx context.Context, js jetstream.JetStream, subject string, e events.Event) (events.Ack, error) {
	m, err := EventMsg(subject, e)
	if err != nil {
		return events.Ack{}, err
	}
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return events.Ack{}, err
	}
	return eventAck(ack), nil
}

func eventAck(a *jetstream.PubAck) events.Ack {
	return events.Ack{Stream: a.Stream, Seq: a.Sequence, Duplicate: a.Duplicate}
}

// JetStreamPublisher is js as an events.Publisher (PublishEvent).
func JetStreamPublisher(js jetstream.JetStream) events.Publisher {
	return events.PublisherFunc(func(ctx context.Context, subject string, e events.Event) (events.Ack, error) {
		return PublishEvent(ctx, js, subject, e)
	})
}

// Publisher is c as an events.Publisher (Publish, with its retries and
// error messages).
func (c *Client) Publisher() events.Publisher { return clientPublisher{c} }

type clientPublisher struct{ c *Client }

func (p clientPublisher) Publish(ctx context.Context, subject string, e events.Event) (events.Ack, error) {
	ack, err := p.c.Publish(ctx, subject, e)
	if err != nil {
		return events.Ack{}, err
	}
	return eventAck(ack), nil
}
