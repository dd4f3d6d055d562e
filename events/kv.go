package events

import "errors"

// KVEntry is a value kept under a key with its revision, as a key-value
// store with compare-and-set writes holds it (the hub's are JetStream KV
// buckets, streams.KVStore). A consumer that keeps state there (the
// notifier's pending messages) writes on the revision it last read, so two
// writers never both win.
type KVEntry struct {
	Value []byte
	Rev   uint64
}

// ErrKVConflict is a key-value store's refusal of a write whose revision
// is not the key's: another writer changed it first.
var ErrKVConflict = errors.New("changed by another writer")
