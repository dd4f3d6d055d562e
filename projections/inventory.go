package projections

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// Host is one host in the inventory (KV pinkie-inventory, key: the host).
// Times are the events' own times, so a rebuild gives the same record.
type Host struct {
	Host string `json:"host"`
	// Online is true while the host sends heartbeats: it has sent one and
	// no host.silent alert is active.
	Online    bool      `json:"online"`
	FirstSeen time.Time `json:"first_seen"`
	// LastSeen is the time of the host's latest event of any kind.
	LastSeen      time.Time         `json:"last_seen"`
	LastHeartbeat *time.Time        `json:"last_heartbeat,omitempty"`
	Heartbeat     *events.Heartbeat `json:"heartbeat,omitempty"`
	// SilentSince is when the host.silent alert started, while it fires.
	SilentSince *time.Time      `json:"silent_since,omitempty"`
	Profile     *events.Profile `json:"profile,omitempty"`
	ProfileAt   *time.Time      `json:"profile_at,omitempty"`
	// Producers are the producers reporting from the host, by name.
	Producers map[string]*ProducerSeen `json:"producers"`
	Seq       Seqs                     `json:"seq"`
}

// ProducerSeen is one producer of a host: the kinds it sent, how many
// events and when the latest was.
type ProducerSeen struct {
	Kinds  []string  `json:"kinds"`
	Events uint64    `json:"events"`
	Last   time.Time `json:"last"`
}

// Inventory is the inventory projection.
type Inventory struct {
	hosts map[string]*Host
	dirty dirtySet
}

// NewInventory returns an empty inventory.
func NewInventory() *Inventory { return &Inventory{hosts: map[string]*Host{}, dirty: dirtySet{}} }

func (*Inventory) Name() string   { return "inventory" }
func (*Inventory) Bucket() string { return events.BucketInventory }
func (*Inventory) Sources() []Source {
	return []Source{{StreamHosts, events.HostSubjects}, {StreamAlerts, events.AlertHostSubjects("host.silent")}}
}

func (inv *Inventory) host(name string) *Host {
	h := inv.hosts[name]
	if h == nil {
		h = &Host{Host: name, Producers: map[string]*ProducerSeen{}, Seq: Seqs{}}
		inv.hosts[name] = h
	}
	return h
}

// Apply folds a host event, or a host.silent alert, into the inventory.
func (inv *Inventory) Apply(in Input) {
	d, ok := decode(in)
	if !ok || events.ValidHost(d.host) != nil {
		return
	}
	h := inv.host(d.host)
	if h.Seq.applied(in) {
		return
	}
	inv.dirty[d.host] = h
	t := d.ev.Time().UTC()
	switch d.kind {
	case "alert.firing", "alert.resolved":
		var a events.Alert
		if json.Unmarshal(d.ev.Data(), &a) != nil || a.Rule != "host.silent" {
			return
		}
		if d.kind == "alert.firing" {
			h.SilentSince = timePtr(a.StartsAt)
		} else {
			h.SilentSince = nil
		}
		h.Online = h.LastHeartbeat != nil && h.SilentSince == nil
		return
	}
	if k, ok := events.Lookup(d.kind); ok && k.Origin == events.FromHub {
		// The hub's own word about a host (ingest.budget) is not the host
		// being seen, nor one of its producers.
		return
	}
	if h.FirstSeen.IsZero() || t.Before(h.FirstSeen) {
		h.FirstSeen = t
	}
	if t.After(h.LastSeen) {
		h.LastSeen = t
	}
	p := h.Producers[d.producer]
	if p == nil {
		p = &ProducerSeen{}
		h.Producers[d.producer] = p
	}
	p.Events++
	if t.After(p.Last) {
		p.Last = t
	}
	if !contains(p.Kinds, d.kind) {
		p.Kinds = append(p.Kinds, d.kind)
	}
	switch d.kind {
	case "heartbeat":
		var hb events.Heartbeat
		if json.Unmarshal(d.ev.Data(), &hb) == nil && (h.LastHeartbeat == nil || !t.Before(*h.LastHeartbeat)) {
			h.LastHeartbeat, h.Heartbeat = timePtr(t), &hb
		}
	case "profile":
		var pr events.Profile
		if json.Unmarshal(d.ev.Data(), &pr) == nil && (h.ProfileAt == nil || !t.Before(*h.ProfileAt)) {
			h.Profile, h.ProfileAt = &pr, timePtr(t)
		}
	}
	h.Online = h.LastHeartbeat != nil && h.SilentSince == nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (inv *Inventory) Flush() (map[string][]byte, error) { return inv.dirty.flush() }

func (inv *Inventory) Load(key string, value []byte) error {
	var h Host
	if err := json.Unmarshal(value, &h); err != nil {
		return fmt.Errorf("inventory record %s: %w", key, err)
	}
	if h.Producers == nil {
		h.Producers = map[string]*ProducerSeen{}
	}
	inv.hosts[key] = &h
	return nil
}

// Hosts returns the records, sorted by host (for tests).
func (inv *Inventory) Hosts() []*Host {
	var out []*Host
	for _, k := range sortedKeys(inv.hosts) {
		out = append(out, inv.hosts[k])
	}
	return out
}
