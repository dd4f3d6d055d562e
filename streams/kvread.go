package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// ReadProjection reads every record of a projection bucket below prefix
// ("" for all), as ReadBucket does, without the projection's checkpoint.
func ReadProjection(ctx context.Context, js jetstream.JetStream, bucket, prefix string) (map[string][]byte, error) {
	out, err := readProjection(ctx, js, bucket, prefix)
	if err != nil {
		return nil, fmt.Errorf("%w (is this a pinkie hub?)", err)
	}
	return out, nil
}

func readProjection(ctx context.Context, js jetstream.JetStream, bucket, prefix string) (map[string][]byte, error) {
	out, err := ReadBucket(ctx, js, bucket, prefix)
	if err != nil {
		return nil, err
	}
	delete(out, events.CheckpointKey)
	return out, nil
}

// KeyOpenError is ReadKey failing to open the bucket.
type KeyOpenError struct {
	Bucket string
	Err    error
}

func (e *KeyOpenError) Error() string { return fmt.Sprintf("open %s: %v", e.Bucket, e.Err) }
func (e *KeyOpenError) Unwrap() error { return e.Err }

// ReadKey reads one key of a KV bucket: its value, or found false when the
// key is absent or deleted. Failing to open the bucket is a *KeyOpenError;
// a failed read is returned as the KV client gave it.
func ReadKey(ctx context.Context, js jetstream.JetStream, bucket, key string) (value []byte, found bool, err error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, false, &KeyOpenError{bucket, err}
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return e.Value(), true, nil
}

// ReadBucket reads the current value of every key of a KV bucket below
// prefix ("" for all), without watching it: an ordered pull consumer on the
// bucket's stream, last message per key. KeyValue.ListKeys and Watch make
// push consumers, which the hub refuses to clients (see gate.go); this
// works for every key, reader or operator alike.
func ReadBucket(ctx context.Context, js jetstream.JetStream, bucket, prefix string) (map[string][]byte, error) {
	stream, subjPrefix := events.KVStream(bucket), events.KVSubjectPrefix(bucket)
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", bucket, err)
	}
	out := map[string][]byte{}
	if st.CachedInfo().State.Msgs == 0 {
		return out, nil
	}
	// One ephemeral pull consumer without acks, deleted when done (its
	// inactive threshold is the backstop).
	cons, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubjects:    []string{subjPrefix + prefix + ">"},
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("read KV bucket %s: %w", bucket, err)
	}
	info := cons.CachedInfo()
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, stream, info.Name)
	}()
	for got, total := 0, int(info.NumPending); got < total; {
		batch, err := cons.Fetch(min(total-got, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read KV bucket %s: %w", bucket, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			key := strings.TrimPrefix(m.Subject(), subjPrefix)
			switch m.Headers().Get(kvOperationHeader) {
			case "DEL", "PURGE":
				delete(out, key)
			default:
				out[key] = m.Data()
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read KV bucket %s: %w", bucket, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("read KV bucket %s: %d of %d records arrived", bucket, got, total)
		}
		got += n
	}
	return out, nil
}

// kvOperationHeader marks a KV delete or purge (nats.go keeps its name
// unexported).
const kvOperationHeader = "KV-Operation"

// WaitKey waits, up to timeout, until key of a KV bucket is present (or,
// with present false, absent) and says whether it got there. It follows
// the key's subject from its last value on with an ephemeral pull
// consumer (which clients may make, unlike a KV watch): each change
// arrives as it is stored, nothing is polled.
func WaitKey(ctx context.Context, js jetstream.JetStream, bucket, key string, present bool, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stream := events.KVStream(bucket)
	cons, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubjects:    []string{events.KVSubjectPrefix(bucket) + key},
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	})
	if err != nil {
		return false
	}
	name := cons.CachedInfo().Name
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, stream, name)
	}()
	if cons.CachedInfo().NumPending == 0 && !present {
		return true
	}
	deadline, _ := ctx.Deadline()
	for {
		wait := time.Until(deadline)
		if wait < 10*time.Millisecond {
			return false
		}
		m, err := cons.Next(jetstream.FetchMaxWait(wait))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				return false
			}
			continue
		}
		switch m.Headers().Get(kvOperationHeader) {
		case "DEL", "PURGE":
			if !present {
				return true
			}
		default:
			if present {
				return true
			}
		}
	}
}
