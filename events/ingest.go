package events

import "strings"

// IngestMessage is one message as the hub's INGEST stream holds it: what
// the ingest check (package consumers/ingest) decides about and what the
// hub's runner of it (package streams) reads off the wire.
type IngestMessage struct {
	// Subject is pinkie.ingest.<host>.evt.<kind>[.<object>]: the hub's
	// source transform for <host> prefixes every subject that host's OUTBOX
	// delivers with pinkie.ingest.<host>, whatever the subject is, so the
	// host token is the hub's own knowledge of which source delivered it.
	// (Before that transform, INGEST held pinkie.ingest.<host>.<kind>…;
	// such messages are still checked.)
	Subject string
	// Seq is the message's sequence in INGEST (names its dead letter).
	Seq uint64
	// Header is the message's header as the NATS client parsed it.
	Header map[string][]string
	// HeaderSize is the size in bytes of the header block as it arrived
	// on the wire, so a block the client parsed differently from the
	// server (a bare LF splitting a line) can be told apart.
	HeaderSize int
	Payload    []byte
}

// HeaderStreamSource is the header nats-server writes on every sourced
// message: "<stream>:<hash> <seq> <filter> <destination> <original
// subject> [<ident>]".
const HeaderStreamSource = "Nats-Stream-Source"

// StreamSource returns the message's Nats-Stream-Source values joined, for
// dead letters and logs (after the check, there is exactly one).
func (m IngestMessage) StreamSource() string {
	return strings.Join(m.Header[HeaderStreamSource], " | ")
}

// IngestDecision is where an INGEST message goes.
type IngestDecision struct {
	// Host is the host the message came from ("" if not even that is known).
	Host string
	// Kind is the event kind when the event decoded.
	Kind string
	// Subject is the HOSTS (or DEPLOY) subject for an accepted event.
	Subject string
	// ID is the event id of an accepted event.
	ID string
	// Reason is set when the event is refused: why, in words.
	Reason string
	// Retry is set when the decision could not be made for now (a
	// lookup failed): the message must be checked again later.
	Retry error
}

// Accepted reports whether the event goes on to HOSTS.
func (d IngestDecision) Accepted() bool { return d.Reason == "" && d.Retry == nil }
