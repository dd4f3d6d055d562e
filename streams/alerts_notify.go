package streams

import "github.com/pinkiefleet/pinkie/events"

// Notifier names (the notifier itself is wired by cmd/pinkie on the
// runners here: KVStore, ConsumeRecent, FollowSubject). The durable
// consumer name is API: never rename it.
const (
	NotifierConsumer = "notifier"
	NotifierBucket   = events.BucketNotifier
	// NotifyTestSubject is where `pinkie notify test CHANNEL` asks the
	// hub's notifier to send a test message (operators only: readers may
	// not publish).
	NotifyTestSubject = events.NotifyTestSubject
)
