package streams

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// FollowDeploys reads DEPLOY's deploy messages in order from stream
// sequence fromSeq on, for a client following its requests
// (deploy.Follow). next blocks until a message is stored and fails once
// ctx ends.
func (c *Client) FollowDeploys(ctx context.Context, fromSeq uint64) (next func() (subject string, data []byte, err error), err error) {
	cons, err := c.JS.OrderedConsumer(ctx, DeployStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.DeploySubjects}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: fromSeq,
	})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", DeployStream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", DeployStream, err)
	}
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	return func() (string, []byte, error) {
		m, err := it.Next()
		if err != nil {
			return "", nil, fmt.Errorf("follow %s: %w", DeployStream, err)
		}
		return m.Subject(), m.Data(), nil
	}, nil
}
