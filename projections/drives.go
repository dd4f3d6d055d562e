package projections

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// Drive is the latest state of one storage object of a host: a drive
// (smart), pool (zfs), btrfs filesystem, md array, mounted filesystem,
// watched path (path) or PostgreSQL database (postgres).
// KV pinkie-drives, key <host>.<kind>.<object token>.
type Drive struct {
	Host   string `json:"host"`
	Kind   string `json:"kind"`
	Object string `json:"object"`
	// Verdict is ok, warning or failing, with the producer's reasons.
	Verdict string   `json:"verdict"`
	Reasons []string `json:"reasons,omitempty"`
	// State is a short readable line ("ONLINE, 71% used", "raid1 2/2").
	State string    `json:"state"`
	Time  time.Time `json:"time"`
	// Data is the latest event's data as the producer sent it.
	Data json.RawMessage `json:"data"`
	Seq  Seqs            `json:"seq"`
}

// driveKinds are the kinds the drives projection keeps.
var driveKinds = map[string]bool{"smart": true, "zfs": true, "btrfs": true, "mdraid": true, "fs": true, "path": true, "postgres": true}

// Drives is the drives projection.
type Drives struct {
	drives map[string]*Drive
	dirty  dirtySet
}

// NewDrives returns an empty drives projection.
func NewDrives() *Drives { return &Drives{drives: map[string]*Drive{}, dirty: dirtySet{}} }

func (*Drives) Name() string   { return "drives" }
func (*Drives) Bucket() string { return events.BucketDrives }
func (*Drives) Sources() []Source {
	var s []Source
	for _, k := range []string{"btrfs", "fs", "mdraid", "path", "postgres", "smart", "zfs"} {
		s = append(s, Source{StreamHosts, events.HostKindSubjects(k)})
	}
	return s
}

// DriveKey is the KV key of a host's storage object.
func DriveKey(host, kind, object string) string {
	return host + "." + kind + "." + events.ObjectToken(object)
}

func (dr *Drives) Apply(in Input) {
	d, ok := decode(in)
	if !ok || !driveKinds[d.kind] || events.ValidHost(d.host) != nil {
		return
	}
	k, _ := events.Lookup(d.kind)
	v, err := events.DecodeData(d.ev, k)
	if err != nil {
		return
	}
	key := DriveKey(d.host, d.kind, d.object)
	rec := dr.drives[key]
	if rec == nil {
		rec = &Drive{Host: d.host, Kind: d.kind, Object: d.object, Seq: Seqs{}}
		dr.drives[key] = rec
	}
	if rec.Seq.applied(in) {
		return
	}
	dr.dirty[key] = rec
	t := d.ev.Time().UTC()
	if t.Before(rec.Time) {
		return // an older observation delivered late
	}
	rec.Time, rec.Data = t, json.RawMessage(d.ev.Data())
	rec.Verdict, rec.Reasons, rec.State = describe(v)
	dr.dirty[key] = rec
}

// describe returns a storage event's verdict, reasons and a short state.
func describe(v any) (string, []string, string) {
	switch x := v.(type) {
	case *events.SMART:
		var parts []string
		if x.Model != "" {
			parts = append(parts, x.Model)
		}
		if x.TemperatureC != nil {
			parts = append(parts, fmt.Sprintf("%d°C", *x.TemperatureC))
		}
		if x.PowerOnHours != nil {
			parts = append(parts, fmt.Sprintf("%dh on", *x.PowerOnHours))
		}
		return x.Verdict, x.Reasons, strings.Join(parts, ", ")
	case *events.ZFSPool:
		return x.Verdict, x.Reasons, fmt.Sprintf("%s, %d%% used", x.State, x.CapacityPercent)
	case *events.Btrfs:
		missing := 0
		for _, d := range x.Devices {
			if d.Missing {
				missing++
			}
		}
		s := fmt.Sprintf("%d devices", len(x.Devices))
		if missing > 0 {
			s += fmt.Sprintf(", %d missing", missing)
		}
		return x.Verdict, x.Reasons, s
	case *events.MDRaid:
		return x.Verdict, x.Reasons, fmt.Sprintf("%s %s %d/%d", x.Level, x.State, x.ActiveDisks, x.RequiredDisks)
	case *events.Filesystem:
		return x.Verdict, x.Reasons, fmt.Sprintf("%s, %.0f%% used", x.FSType, x.UsedPercent)
	case *events.PathUsage:
		return x.Verdict, x.Reasons, fmt.Sprintf("%d bytes on disk, %d files", x.DiskBytes, x.Files)
	case *events.Postgres:
		return x.Verdict, x.Reasons, fmt.Sprintf("%d bytes", x.SizeBytes)
	}
	return "", nil, ""
}

func (dr *Drives) Flush() (map[string][]byte, error) { return dr.dirty.flush() }

func (dr *Drives) Load(key string, value []byte) error {
	var d Drive
	if err := json.Unmarshal(value, &d); err != nil {
		return fmt.Errorf("drives record %s: %w", key, err)
	}
	dr.drives[key] = &d
	return nil
}
