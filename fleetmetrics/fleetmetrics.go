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
// pinkie-last-deploy, pinkie-guests);
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
	bucketGuests     = projections.GuestsBucket
)

// GuestWindow is how old a guest's latest report may be: the guest
// producer reports every 5 minutes, and a guest not reported within the
// hour (removed from its host, or its host silent) is no longer exposed.
const GuestWindow = time.Hour

// Store is what Read needs of the hub (the dashboard's store provides it).
type Store interface {
	// Bucket returns a projection bucket's records without checkpoints.
	Bucket(ctx context.Context, bucket, prefix string) (map[string][]byte, error)
}

// Guest is a guest's latest report, as the guests projection keeps it.
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
		if events.IsStateKey(k) {
			continue // the fold's checkpoint and requests
		}
		var r lastdeploy.Record
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("%s %s: %w", bucketLastDeploy, k, err)
		}
		s.LastDeploys[k] = &r
	}
	grec, err := st.Bucket(ctx, bucketGuests, "")
	if err != nil {
		return nil, err
	}
	for k, v := range grec {
		var r projections.GuestRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("%s %s: %w", bucketGuests, k, err)
		}
		if r.Time.Before(now.Add(-GuestWindow)) {
			continue
		}
		s.Guests = append(s.Guests, Guest{Host: r.Host, Time: r.Time, Guest: r.Guest})
	}
	return s, nil
}
