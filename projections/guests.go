package projections

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// GuestRecord is the latest state of one NixOS container or MicroVM of a
// host (KV pinkie-guests, key <host>.<guest token>), with what a single
// report cannot say: the rates between the last two reports and when the
// guest was first and last seen.
type GuestRecord struct {
	Host string `json:"host"`
	Name string `json:"name"`
	// Status is running, restarting, failed, stopped or unknown.
	Status string `json:"status"`
	// Guest is the latest report as the producer sent it.
	Guest     events.Guest `json:"guest"`
	Time      time.Time    `json:"time"`
	FirstSeen time.Time    `json:"first_seen"`
	// CPUPercent is the CPU the guest used between the last two reports,
	// in percent of one core; NetRX/TXBytesPerSecond its traffic. Absent
	// after the first report, or when a counter went backwards (a restart).
	CPUPercent          *float64 `json:"cpu_percent,omitempty"`
	NetRXBytesPerSecond *float64 `json:"net_rx_bytes_per_second,omitempty"`
	NetTXBytesPerSecond *float64 `json:"net_tx_bytes_per_second,omitempty"`
	// RestartsDelta is how many times the unit restarted between the last
	// two reports.
	RestartsDelta int  `json:"restarts_delta"`
	Seq           Seqs `json:"seq"`
}

// GuestStatus reads a guest's status from its unit state: running,
// restarting (activating, or waiting in auto-restart), failed, stopped or
// unknown.
func GuestStatus(g events.Guest) string {
	switch {
	case g.Healthy:
		return "running"
	case g.ActiveState == "activating" || g.ActiveState == "reloading" || g.SubState == "auto-restart":
		return "restarting"
	case g.ActiveState == "failed":
		return "failed"
	case g.ActiveState == "inactive" || g.ActiveState == "deactivating":
		return "stopped"
	case g.ActiveState == "active":
		return "running"
	}
	return "unknown"
}

// Guests is the guests projection.
type Guests struct {
	guests map[string]*GuestRecord
	dirty  dirtySet
}

// NewGuests returns an empty guests projection.
func NewGuests() *Guests { return &Guests{guests: map[string]*GuestRecord{}, dirty: dirtySet{}} }

// GuestsBucket is the guests projection's KV bucket.
const GuestsBucket = events.BucketGuests

func (*Guests) Name() string   { return "guests" }
func (*Guests) Bucket() string { return GuestsBucket }
func (*Guests) Sources() []Source {
	return []Source{{StreamHosts, events.HostKindSubjects("guest")}}
}

// GuestKey is the KV key of a host's guest.
func GuestKey(host, guest string) string { return host + "." + events.ObjectToken(guest) }

func (gs *Guests) Apply(in Input) {
	d, ok := decode(in)
	if !ok || d.kind != "guest" || events.ValidHost(d.host) != nil {
		return
	}
	var g events.Guest
	if json.Unmarshal(d.ev.Data(), &g) != nil || g.Name == "" {
		return
	}
	key := GuestKey(d.host, g.Name)
	rec := gs.guests[key]
	if rec == nil {
		rec = &GuestRecord{Host: d.host, Name: g.Name, Seq: Seqs{}}
		gs.guests[key] = rec
	}
	if rec.Seq.applied(in) {
		return
	}
	gs.dirty[key] = rec
	t := d.ev.Time().UTC()
	if rec.FirstSeen.IsZero() || t.Before(rec.FirstSeen) {
		rec.FirstSeen = t
	}
	if !t.After(rec.Time) {
		return // an older (or the same) observation delivered late
	}
	prev, prevT := rec.Guest, rec.Time
	rec.CPUPercent, rec.NetRXBytesPerSecond, rec.NetTXBytesPerSecond, rec.RestartsDelta = nil, nil, nil, 0
	if !prevT.IsZero() {
		secs := t.Sub(prevT).Seconds()
		rate := func(now, before float64) *float64 {
			if now < before || secs <= 0 {
				return nil
			}
			r := (now - before) / secs
			return &r
		}
		if g.CPUUsageSeconds > 0 && prev.CPUUsageSeconds > 0 {
			if r := rate(g.CPUUsageSeconds, prev.CPUUsageSeconds); r != nil {
				p := *r * 100
				rec.CPUPercent = &p
			}
		}
		if g.NetRXBytes > 0 || g.NetTXBytes > 0 {
			rec.NetRXBytesPerSecond = rate(float64(g.NetRXBytes), float64(prev.NetRXBytes))
			rec.NetTXBytesPerSecond = rate(float64(g.NetTXBytes), float64(prev.NetTXBytes))
		}
		if g.Restarts > prev.Restarts {
			rec.RestartsDelta = g.Restarts - prev.Restarts
		}
	}
	rec.Guest, rec.Time, rec.Status = g, t, GuestStatus(g)
}

func (gs *Guests) Flush() (map[string][]byte, error) { return gs.dirty.flush() }

func (gs *Guests) Load(key string, value []byte) error {
	var r GuestRecord
	if err := json.Unmarshal(value, &r); err != nil {
		return fmt.Errorf("guests record %s: %w", key, err)
	}
	gs.guests[key] = &r
	return nil
}
