package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// LastError says which step of reading a stream's newest event failed, so
// a caller can word the failure its own way.
type LastError struct {
	Stream, Subject string
	Op              LastOp
	Seq             uint64 // the message's sequence, for LastDecode
	Err             error
}

// LastOp is a step of ReadLast.
type LastOp int

const (
	LastOpen   LastOp = iota // opening the stream
	LastGet                  // getting the newest message on the subject
	LastDecode               // decoding it as an event
)

func (e *LastError) Error() string {
	if e.Op == LastOpen {
		return fmt.Sprintf("stream %s: %v", e.Stream, e.Err)
	}
	return fmt.Sprintf("last %s on %s: %v", e.Subject, e.Stream, e.Err)
}

func (e *LastError) Unwrap() error { return e.Err }

// ReadLast returns the newest event on subject of stream, or nil when the
// subject holds none. Its errors are *LastError.
func ReadLast(ctx context.Context, js jetstream.JetStream, stream, subject string) (*events.Stored, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, &LastError{Stream: stream, Subject: subject, Op: LastOpen, Err: err}
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, &LastError{Stream: stream, Subject: subject, Op: LastGet, Err: err}
	}
	e, k, err := events.Decode(m.Data)
	if err != nil {
		return nil, &LastError{Stream: stream, Subject: subject, Op: LastDecode, Seq: m.Sequence, Err: err}
	}
	return &events.Stored{Subject: m.Subject, Seq: m.Sequence, Time: eventTime(e, m.Time), Event: e, Kind: k}, nil
}

// ReadLastFleet returns the fleet that pinkie fleet sync last declared
// (the newest fleet.declared event on the FLEET stream), or nil when none
// was. Its errors are *LastError.
func ReadLastFleet(ctx context.Context, js jetstream.JetStream) (*events.Stored, error) {
	return ReadLast(ctx, js, events.StreamFleet, events.FleetDeclaredSubject)
}
