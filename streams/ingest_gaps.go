package streams

import (
	"strconv"
	"strings"
)

// outboxGaps notices events of a host's OUTBOX that never reached INGEST.
// A host's source delivers its OUTBOX in order, so the OUTBOX sequences the
// ingest check sees for a host (from each message's Nats-Stream-Source
// header) climb by one; a jump means the source skipped events, or they
// expired in the OUTBOX (MaxAge) before the hub took them. Either way they
// are gone: the source acknowledges what it skips, and that drops them
// from the OUTBOX. nats-server 2.15.2 lost events this way
// (TestOutboxResetReportsAckFloor); the hub cannot get them back, but it
// must not lose them silently.
//
// It is used by the ingest check's fetcher alone (not safe for concurrent
// use) and starts afresh with each run: a gap across a hub restart goes
// unnoticed.
type outboxGaps struct {
	last map[string]outboxPos
}

// outboxPos is the last OUTBOX message seen from a host: its sequence, and
// the identity of the OUTBOX it came from (a new OUTBOX, after a reinstall,
// numbers anew).
type outboxPos struct {
	ident string
	seq   uint64
}

// observe records a host's next INGEST message by its Nats-Stream-Source
// header and returns the OUTBOX sequences skipped before it (n = 0: none).
func (g *outboxGaps) observe(host, streamSource string) (first uint64, n uint64) {
	seq, ident, ok := parseStreamSource(streamSource)
	if !ok || host == "" {
		return 0, 0
	}
	if g.last == nil {
		g.last = map[string]outboxPos{}
	}
	prev, seen := g.last[host]
	switch {
	case !seen || prev.ident != ident:
		// The first message of this run, or from a new OUTBOX.
	case seq <= prev.seq:
		return 0, 0 // delivered again (a restart of the check): nothing new
	case seq > prev.seq+1:
		first, n = prev.seq+1, seq-prev.seq-1
	}
	g.last[host] = outboxPos{ident: ident, seq: seq}
	return first, n
}

// parseStreamSource reads the origin sequence and stream identity from a
// Nats-Stream-Source header as nats-server 2.15 writes it:
// "<index name> <seq> <filter> <transform> <subject> [<identity>]".
func parseStreamSource(h string) (seq uint64, ident string, ok bool) {
	f := strings.Fields(h)
	if len(f) < 5 {
		return 0, "", false
	}
	seq, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil || seq == 0 {
		return 0, "", false
	}
	if len(f) > 5 {
		ident = f[5]
	}
	return seq, ident, true
}
