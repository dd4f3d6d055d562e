package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// KVStore is a JetStream KV bucket as a store of values with revisions
// (events.KVEntry). A write on a revision is a compare-and-set through the
// bucket's stream leader, so two hub nodes that both believe they lead
// cannot both win it: the loser gets events.ErrKVConflict. It is the
// notifier's Store.
type KVStore struct{ kv jetstream.KeyValue }

// NewKVStore makes kv a KVStore.
func NewKVStore(kv jetstream.KeyValue) KVStore { return KVStore{kv} }

// OpenKVStore creates bucket on the hub, or updates its configuration:
// one revision per key, on file, with the hub's replicas.
func OpenKVStore(ctx context.Context, h *Hub, bucket, description string) (KVStore, error) {
	kv, err := h.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1, Storage: jetstream.FileStorage, Replicas: h.Replicas(),
		Description: description})
	if err != nil {
		return KVStore{}, fmt.Errorf("open bucket %s: %w", bucket, err)
	}
	return KVStore{kv}, nil
}

// List returns every key's entry.
func (k KVStore) List(ctx context.Context) (map[string]events.KVEntry, error) {
	out := map[string]events.KVEntry{}
	lister, err := k.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	for key := range lister.Keys() {
		e, found, err := k.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if found {
			out[key] = e
		}
	}
	return out, nil
}

// Get returns the key's entry; found is false when there is none.
func (k KVStore) Get(ctx context.Context, key string) (events.KVEntry, bool, error) {
	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return events.KVEntry{}, false, nil
	}
	if err != nil {
		return events.KVEntry{}, false, err
	}
	return events.KVEntry{Value: e.Value(), Rev: e.Revision()}, true, nil
}

// Put writes the key whatever its revision.
func (k KVStore) Put(ctx context.Context, key string, v []byte) error {
	_, err := k.kv.Put(ctx, key, v)
	return err
}

// Update writes the key if its revision is rev (0: if it does not exist)
// and returns the new revision, or events.ErrKVConflict.
func (k KVStore) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	var (
		n   uint64
		err error
	)
	if rev == 0 {
		n, err = k.kv.Create(ctx, key, v)
	} else {
		n, err = k.kv.Update(ctx, key, v, rev)
	}
	if kvConflict(err) {
		return 0, fmt.Errorf("%w: %v", events.ErrKVConflict, err)
	}
	return n, err
}

// Delete removes the key if its revision is rev (0: whatever it is), or
// returns events.ErrKVConflict.
func (k KVStore) Delete(ctx context.Context, key string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err := k.kv.Delete(ctx, key, opts...)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if kvConflict(err) {
		return fmt.Errorf("%w: %v", events.ErrKVConflict, err)
	}
	return err
}

// kvConflict reports whether err is a KV write refused for its revision.
func kvConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}
