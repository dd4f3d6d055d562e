package streams

import (
	"github.com/nats-io/nats.go"

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
