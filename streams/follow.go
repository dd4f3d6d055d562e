package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// LastOnSubject returns the newest message stream holds on subject: its
// sequence and data; found is false when there is none.
func LastOnSubject(ctx context.Context, js jetstream.JetStream, stream, subject string) (seq uint64, data []byte, found bool, err error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, nil, false, fmt.Errorf("stream %s: %w", stream, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, fmt.Errorf("read the last %s in %s: %w", subject, stream, err)
	}
	return m.Sequence, m.Data, true, nil
}

// FollowSubject hands apply each message stored on subject in stream after
// sequence after, in order, until ctx ends (nil) or reading fails.
func FollowSubject(ctx context.Context, js jetstream.JetStream, stream, subject string, after uint64, apply func(seq uint64, data []byte)) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy, OptStartSeq: after + 1,
	})
	if err != nil {
		return fmt.Errorf("follow %s in %s: %w", subject, stream, err)
	}
	err = eachMessage(ctx, cons, nil, func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		apply(md.Sequence.Stream, m.Data())
		return nil
	})
	if err != nil {
		return fmt.Errorf("follow %s in %s: %w", subject, stream, err)
	}
	return nil
}
