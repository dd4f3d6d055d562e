// Package projections materialises the fleet's streams into the state
// readers ask for: the inventory of hosts, the drives and filesystems with
// their verdicts, and the active alerts and silences. Each projection is a
// pure fold: Apply takes one stored message (stream, sequence, subject,
// payload) and changes records in memory; Flush hands the changed records
// to the caller, who writes them to the projection's KV bucket before the
// checkpoint. Nothing here does I/O or reads the clock.
//
// Every record carries the stream sequences it reflects, so a replay after
// a crash (from the checkpoint, which is written after the records) skips
// what a record already holds; a rebuild from sequence 1 ends in the same
// records.
package projections

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/pinkiefleet/pinkie/events"
)

// Input is one stored message.
type Input struct {
	Stream  string
	Seq     uint64
	Subject string
	Data    []byte
}

// Source is a stream a projection reads and the subjects it needs.
type Source struct {
	Stream  string
	Subject string
}

// Projection is a fold over stored messages into keyed records.
type Projection interface {
	// Name is the projection's name (inventory, drives, alerts).
	Name() string
	// Bucket is the KV bucket its records live in.
	Bucket() string
	Sources() []Source
	// Apply folds one message in.
	Apply(in Input)
	// Flush returns the records changed since the last Flush: key →
	// JSON, or key → nil for a deleted record.
	Flush() (map[string][]byte, error)
	// Load restores one record as Flush wrote it.
	Load(key string, value []byte) error
}

// Stream names the projections read (the hub's streams).
const (
	StreamHosts    = events.StreamHosts
	StreamAlerts   = events.StreamAlerts
	StreamAlertLog = events.StreamAlertLog
)

// CheckpointKey is the key of each bucket holding the last sequence
// applied per stream. It is written after the records.
const CheckpointKey = "_checkpoint"

// Seqs are the stream sequences a record reflects.
type Seqs map[string]uint64

// applied reports whether in is already reflected, and records it if not.
func (s *Seqs) applied(in Input) bool {
	if *s == nil {
		*s = Seqs{}
	}
	if in.Seq > 0 && (*s)[in.Stream] >= in.Seq {
		return true
	}
	(*s)[in.Stream] = in.Seq
	return false
}

// decoded is a stored message understood as an event of a host.
type decoded struct {
	host, kind, object, producer string
	ev                           event.Event
}

func decode(in Input) (decoded, bool) {
	var d decoded
	if err := json.Unmarshal(in.Data, &d.ev); err != nil {
		return d, false
	}
	var ok bool
	if d.kind, ok = events.KindName(d.ev.Type()); !ok {
		return d, false
	}
	d.host, _, _ = events.HostFromSubject(in.Subject)
	d.object = d.ev.Subject()
	_, d.producer, _ = events.ParseSource(d.ev.Source())
	return d, true
}

// dirtySet collects changed records.
type dirtySet map[string]any

func (d dirtySet) flush() (map[string][]byte, error) {
	out := make(map[string][]byte, len(d))
	for k, v := range d {
		if v == nil {
			out[k] = nil
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode record %s: %w", k, err)
		}
		out[k] = b
	}
	clear(d)
	return out, nil
}

// All returns the projections the hub runs.
func All() []Projection {
	return []Projection{NewInventory(), NewDrives(), NewAlerts(), NewGuests()}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func timePtr(t time.Time) *time.Time { t = t.UTC(); return &t }
