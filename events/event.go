package events

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Event is a CloudEvents 1.0 event.
type Event = event.Event

// Header names and values used on every NATS message that carries an event.
const (
	HeaderContentType = "Content-Type"
	ContentType       = "application/cloudevents+json"
	HeaderMsgID       = "Nats-Msg-Id"
)

// MaxSize is the default largest encoded event the hub accepts.
const MaxSize = 64 << 10

// ErrDecode marks input that is not a valid pinkie event.
var ErrDecode = errors.New("not a valid pinkie event")

// Option changes how New builds an event.
type Option func(*Event)

// WithID sets a deterministic event id, so the same observation sent twice
// is dropped by Nats-Msg-Id deduplication.
func WithID(id string) Option { return func(e *Event) { e.SetID(id) } }

// WithSubject sets the CloudEvents subject: the object the event is about.
func WithSubject(s string) Option { return func(e *Event) { e.SetSubject(s) } }

// New builds an event of kind from host's producer with data, at time t.
// The id is a UUIDv7 unless WithID says otherwise.
func New(kind Kind, host, producer string, t time.Time, data any, opts ...Option) (Event, error) {
	if err := ValidHost(host); err != nil {
		return Event{}, err
	}
	if producer == "" {
		return Event{}, fmt.Errorf("build %s event: no producer", kind.Name)
	}
	b, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s data: %w", kind.Name, err)
	}
	e, err := build(NewID(t), Source(host, producer), kind.Type(), "", t.UTC(), kind.SchemaID(), b)
	if err != nil {
		return Event{}, fmt.Errorf("build %s event: %w", kind.Name, err)
	}
	for _, o := range opts {
		o(&e)
	}
	if e.ID() == "" {
		return Event{}, fmt.Errorf("build %s event: empty id", kind.Name)
	}
	return e, nil
}

// Source is the CloudEvents source of a host's producer.
func Source(host, producer string) string { return "pinkie://" + host + "/" + producer }

// ParseSource splits pinkie://<host>/<producer>.
func ParseSource(src string) (host, producer string, err error) {
	rest, ok := strings.CutPrefix(src, "pinkie://")
	if !ok {
		return "", "", fmt.Errorf("source %q does not start with pinkie://", src)
	}
	host, producer, _ = strings.Cut(rest, "/")
	if err := ValidHost(host); err != nil {
		return "", "", fmt.Errorf("source %q: %w", src, err)
	}
	if producer == "" {
		return "", "", fmt.Errorf("source %q names no producer", src)
	}
	return host, producer, nil
}

// NewID returns a UUIDv7 for time t: time-ordered, unique without
// coordination.
func NewID(t time.Time) string {
	var u [16]byte
	ms := uint64(t.UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	_, _ = rand.Read(u[6:])
	u[6] = (u[6] & 0x0f) | 0x70
	u[8] = (u[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// DeterministicID derives a stable id from the parts of an observation
// (host, producer, object, a value that changes only when the observation
// does), for events that may be sent twice.
func DeterministicID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	h[6] = (h[6] & 0x0f) | 0x80 // version 8: custom
	h[8] = (h[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Encode returns the structured-mode JSON of e.
func Encode(e Event) ([]byte, error) {
	b, err := encodeWire(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID(), err)
	}
	return b, nil
}

// Decode parses structured-mode JSON into an event and checks that it is a
// pinkie event: CloudEvents 1.0, a known type, a pinkie:// source, JSON
// data and the dataschema of its type. It does not check the data against
// the schema (package schemas does).
func Decode(b []byte) (Event, Kind, error) {
	var e Event
	if len(bytes.TrimSpace(b)) == 0 {
		return e, Kind{}, fmt.Errorf("%w: empty payload", ErrDecode)
	}
	e, err := decodeWire(b)
	if err != nil {
		return e, Kind{}, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	k, ok := Lookup(e.Type())
	if !ok || k.Type() != e.Type() {
		return e, Kind{}, fmt.Errorf("%w: unknown type %q", ErrDecode, e.Type())
	}
	if _, _, err := ParseSource(e.Source()); err != nil {
		return e, k, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if ct := e.DataContentType(); ct != event.ApplicationJSON {
		return e, k, fmt.Errorf("%w: datacontenttype %q, want application/json", ErrDecode, ct)
	}
	if e.DataSchema() != k.SchemaID() {
		return e, k, fmt.Errorf("%w: dataschema %q, want %q", ErrDecode, e.DataSchema(), k.SchemaID())
	}
	if e.Time().IsZero() {
		return e, k, fmt.Errorf("%w: no time", ErrDecode)
	}
	if len(e.Data()) == 0 {
		return e, k, fmt.Errorf("%w: no data", ErrDecode)
	}
	return e, k, nil
}

// DecodeData decodes the event's data into the kind's Go type, refusing
// unknown fields.
func DecodeData(e Event, k Kind) (any, error) {
	v := k.New()
	dec := json.NewDecoder(bytes.NewReader(e.Data()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("decode %s data: %w", k.Name, err)
	}
	return v, nil
}
