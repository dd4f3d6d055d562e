// Package fleetmetrics exposes the fleet's latest state, as the hub's
// projections hold it, in the Prometheus text format (GET /metrics/fleet on
// the hub): filesystems, memory and load of every host, drives, pools and
// arrays, PostgreSQL databases, watched paths, guests, the last deploy and
// the alerts firing. Series are named after node_exporter's where it has
// one (node_filesystem_size_bytes, node_load1, node_md_disks…), else
// pinkie_…, and carry a host label (and guest for guests).
//
// It reads nothing of its own: Read gathers the projection buckets the
// dashboard reads (pinkie-inventory, pinkie-drives, pinkie-alerts,
// pinkie-last-deploy) and the guests' latest events, as the host page does;
// Write turns that Snapshot into metrics, a pure function of its input.
package fleetmetrics

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
)

// The buckets read: the projections' own.
var (
	bucketInventory  = projections.NewInventory().Bucket()
	bucketDrives     = projections.NewDrives().Bucket()
	bucketAlerts     = projections.NewAlerts().Bucket()
	bucketLastDeploy = lastdeploy.Bucket
)

// GuestWindow is how far back guest events are read: the guest producer
// reports every 5 minutes, and a guest not reported within the hour is no
// longer shown (as on the host page).
const GuestWindow = time.Hour

// Message is one stored host event.
type Message struct {
	Subject string
	Event   events.Event
}

// Store is what Read needs of the hub (the dashboard's store provides it).
type Store interface {
	// Bucket returns a projection bucket's records without checkpoints.
	Bucket(ctx context.Context, bucket, prefix string) (map[string][]byte, error)
	// Recent returns the HOSTS messages on subjects matching filter stored
	// since since, oldest first.
	Recent(ctx context.Context, filter string, since time.Time) ([]Message, error)
}

// Guest is a guest's latest report.
type Guest struct {
	Host string
	Time time.Time
	events.Guest
}

// Snapshot is the fleet's latest state.
type Snapshot struct {
	Now         time.Time
	Hosts       []*projections.Host
	Drives      []projections.Drive
	Alerts      []projections.ActiveAlert
	LastDeploys map[string]*lastdeploy.Record
	Guests      []Guest
}

// Read gathers a Snapshot from the hub's projections.
func Read(ctx context.Context, st Store, now time.Time) (*Snapshot, error) {
	s := &Snapshot{Now: now, LastDeploys: map[string]*lastdeploy.Record{}}
	inv, err := st.Bucket(ctx, bucketInventory, "")
	if err != nil {
		return nil, err
	}
	if s.Hosts, err = fleetview.Hosts(inv); err != nil {
		return nil, err
	}
	drec, err := st.Bucket(ctx, bucketDrives, "")
	if err != nil {
		return nil, err
	}
	if s.Drives, err = fleetview.Drives(drec); err != nil {
		return nil, err
	}
	arec, err := st.Bucket(ctx, bucketAlerts, "")
	if err != nil {
		return nil, err
	}
	if s.Alerts, _, err = fleetview.Alerts(arec, now); err != nil {
		return nil, err
	}
	lrec, err := st.Bucket(ctx, bucketLastDeploy, "")
	if err != nil {
		return nil, err
	}
	for k, v := range lrec {
		var r lastdeploy.Record
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("%s %s: %w", bucketLastDeploy, k, err)
		}
		s.LastDeploys[k] = &r
	}
	msgs, err := st.Recent(ctx, events.HostSubject("*", "guest", "")+".>", now.Add(-GuestWindow))
	if err != nil {
		return nil, err
	}
	latest := map[string]int{}
	for _, m := range msgs {
		host, _, ok := events.HostFromSubject(m.Subject)
		var g events.Guest
		if !ok || m.Event.DataAs(&g) != nil || g.Name == "" {
			continue
		}
		key := host + "\x00" + g.Name
		t := m.Event.Time()
		if i, seen := latest[key]; seen {
			if t.Before(s.Guests[i].Time) {
				continue
			}
			s.Guests[i] = Guest{Host: host, Time: t, Guest: g}
			continue
		}
		latest[key] = len(s.Guests)
		s.Guests = append(s.Guests, Guest{Host: host, Time: t, Guest: g})
	}
	return s, nil
}
