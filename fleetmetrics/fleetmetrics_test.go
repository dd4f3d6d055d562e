package fleetmetrics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
)

// memStore is a Store of records in memory.
type memStore struct {
	buckets map[string]map[string][]byte
	err     error
}

func (m *memStore) Bucket(_ context.Context, bucket, _ string) (map[string][]byte, error) {
	return m.buckets[bucket], m.err
}

func record(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func driveRecord(t *testing.T, host, kind, object, verdict string, at time.Time, data any) (string, []byte) {
	return projections.DriveKey(host, kind, object), record(t, projections.Drive{Host: host, Kind: kind, Object: object, Verdict: verdict, Time: at, Data: record(t, data)})
}

// guestRecords folds guest reports through the guests projection, as
// the hub does, into the records of its bucket.
func guestRecords(t *testing.T, reports ...guestReport) map[string][]byte {
	t.Helper()
	p := projections.NewGuests()
	k, _ := events.Lookup("guest")
	for i, r := range reports {
		e, err := events.New(k, r.host, "guest", r.at, r.g, events.WithSubject(r.g.Name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		d, dk, err := events.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		p.Apply(events.Stored{Stream: projections.StreamHosts, Seq: uint64(i + 1), Subject: events.HostSubject(r.host, "guest", r.g.Name), Event: d, Kind: dk})
	}
	recs, err := p.Flush()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

type guestReport struct {
	host string
	at   time.Time
	g    events.Guest
}

// TestExposition: each kind of record becomes the series named after
// node_exporter's (or pinkie_…), with host (and guest) labels; the latest
// guest report wins and an old one is left out.
func TestExposition(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	hb := now.Add(-30 * time.Second)
	temp, hours := 41, uint64(1000)
	passed := true
	drives := map[string][]byte{}
	add := func(k string, v []byte) { drives[k] = v }
	add(driveRecord(t, "goliath", "fs", "/", "ok", now, events.Filesystem{MountPoint: "/", Device: "/dev/vda", FSType: "ext4",
		SizeBytes: 1000, UsedBytes: 400, AvailableBytes: 550, Inodes: 100, InodesFree: 60}))
	add(driveRecord(t, "goliath", "smart", "/dev/sda", "warning", now, events.SMART{Device: "/dev/sda", TemperatureC: &temp, PowerOnHours: &hours,
		SmartPassed: &passed, ATAAttributes: []events.ATAAttribute{{ID: 5, Name: "Reallocated_Sector_Ct", Value: 90, Threshold: 36, Raw: 12}}}))
	add(driveRecord(t, "goliath", "zfs", "tank", "warning", now, events.ZFSPool{Pool: "tank", State: "DEGRADED", SizeBytes: 10,
		Vdevs: []events.ZFSVdev{{Name: "tank", Depth: 0, ChecksumErrors: 3}, {Name: "sda", Depth: 1, ChecksumErrors: 3}}}))
	add(driveRecord(t, "goliath", "mdraid", "md0", "failing", now, events.MDRaid{Device: "md0", State: "recovering", RequiredDisks: 2, ActiveDisks: 1, FailedDisks: 1}))
	add(driveRecord(t, "goliath", "btrfs", "abc", "ok", now, events.Btrfs{FSID: "abc", Devices: []events.BtrfsDevice{{DevID: 1, Path: "/dev/loop0",
		Errors: events.BtrfsCounters{CorruptionErrs: 2}}}, Allocation: events.BtrfsAllocation{Data: events.BtrfsSpace{TotalBytes: 8, UsedBytes: 4}}}))
	add(driveRecord(t, "koishi", "postgres", "app", "ok", now, events.Postgres{Database: "app", SizeBytes: 7654321, XIDAge: 99}))
	lastOK := now.Add(-2 * time.Hour)
	st := &memStore{buckets: map[string]map[string][]byte{
		bucketInventory: {
			"goliath": record(t, projections.Host{Host: "goliath", Online: true, LastSeen: now, LastHeartbeat: &hb,
				Heartbeat: &events.Heartbeat{Load1: 0.5, Load5: 0.25, Load15: 0.125, MemTotalBytes: 2048, MemAvailableBytes: 1024}}),
			"koishi": record(t, projections.Host{Host: "koishi", LastSeen: now.Add(-time.Hour)}),
		},
		bucketDrives: drives,
		bucketAlerts: {
			"alert.goliath.x": record(t, projections.ActiveAlert{Alert: events.Alert{Host: "goliath", Rule: "fs.usage", Object: "/", Severity: "warning", Status: "firing"}}),
		},
		bucketLastDeploy: {
			"goliath": record(t, lastdeploy.Record{Host: "goliath", LastSuccess: &lastdeploy.Success{Time: lastOK},
				LastAttempt: &lastdeploy.Attempt{Outcome: lastdeploy.Failed}}),
		},
		bucketGuests: guestRecords(t,
			guestReport{"goliath", now.Add(-10 * time.Minute), events.Guest{Name: "web", Type: "container", Healthy: true, MemoryBytes: 5 << 20, CPUUsageSeconds: 12.5, StateDir: "/var/lib/nixos-containers/web", DiskBytes: 4096}},
			guestReport{"goliath", now.Add(-5 * time.Minute), events.Guest{Name: "web", Type: "container", Healthy: true, MemoryBytes: 6 << 20, CPUUsageSeconds: 13.5, StateDir: "/var/lib/nixos-containers/web", DiskBytes: 4096,
				MemoryMaxBytes: 8 << 20, UptimeSeconds: 600, Interfaces: []string{"ve-web"}, NetRXBytes: 1000, NetTXBytes: 2000, DiskFSBytes: 1 << 30, DiskFreeBytes: 1 << 29}},
			guestReport{"goliath", now.Add(-6 * time.Minute), events.Guest{Name: "web", Type: "container", Healthy: false, MemoryBytes: 1}},
			// A guest last reported two hours ago is gone from the exposition.
			guestReport{"goliath", now.Add(-2 * time.Hour), events.Guest{Name: "old", Type: "container", MemoryBytes: 1}}),
	}}
	text := scrape(t, Handler(st, func() time.Time { return now }, nil))
	for _, want := range []string{
		`pinkie_host_up{host="goliath"} 1`,
		`pinkie_host_up{host="koishi"} 0`,
		`node_load1{host="goliath"} 0.5`,
		`node_load15{host="goliath"} 0.125`,
		`node_memory_MemAvailable_bytes{host="goliath"} 1024`,
		`node_memory_MemTotal_bytes{host="goliath"} 2048`,
		`node_filesystem_size_bytes{device="/dev/vda",fstype="ext4",host="goliath",mountpoint="/"} 1000`,
		`node_filesystem_avail_bytes{device="/dev/vda",fstype="ext4",host="goliath",mountpoint="/"} 550`,
		`node_filesystem_free_bytes{device="/dev/vda",fstype="ext4",host="goliath",mountpoint="/"} 600`,
		`node_filesystem_files_free{device="/dev/vda",fstype="ext4",host="goliath",mountpoint="/"} 60`,
		`pinkie_storage_verdict{host="goliath",kind="smart",object="/dev/sda",verdict="warning"} 1`,
		`pinkie_storage_verdict{host="goliath",kind="smart",object="/dev/sda",verdict="ok"} 0`,
		`pinkie_smart_temperature_celsius{device="/dev/sda",host="goliath"} 41`,
		`pinkie_smart_power_on_seconds{device="/dev/sda",host="goliath"} 3.6e+06`,
		`pinkie_smart_attribute_raw{device="/dev/sda",host="goliath",id="5",name="Reallocated_Sector_Ct"} 12`,
		`node_zfs_zpool_state{host="goliath",state="degraded",zpool="tank"} 1`,
		`node_zfs_zpool_state{host="goliath",state="online",zpool="tank"} 0`,
		`pinkie_zfs_pool_vdev_errors{host="goliath",type="checksum",zpool="tank"} 3`,
		`node_md_state{device="md0",host="goliath",state="recovering"} 1`,
		`node_md_disks{device="md0",host="goliath",state="failed"} 1`,
		`node_md_disks_required{device="md0",host="goliath"} 2`,
		`node_btrfs_device_errors_total{device="/dev/loop0",host="goliath",type="corruption",uuid="abc"} 2`,
		`node_btrfs_used_bytes{block_group_type="data",host="goliath",uuid="abc"} 4`,
		`pinkie_postgres_database_size_bytes{database="app",host="koishi"} 7.654321e+06`,
		`pinkie_guest_up{guest="web",host="goliath",type="container"} 1`,
		`pinkie_guest_memory_bytes{guest="web",host="goliath",type="container"} 6.291456e+06`,
		`pinkie_guest_cpu_seconds_total{guest="web",host="goliath",type="container"} 13.5`,
		`pinkie_guest_memory_max_bytes{guest="web",host="goliath",type="container"} 8.388608e+06`,
		`pinkie_guest_uptime_seconds{guest="web",host="goliath",type="container"} 600`,
		`pinkie_guest_network_receive_bytes_total{guest="web",host="goliath",type="container"} 1000`,
		`pinkie_guest_network_transmit_bytes_total{guest="web",host="goliath",type="container"} 2000`,
		`pinkie_guest_disk_free_bytes{guest="web",host="goliath",type="container"} 5.36870912e+08`,
		`pinkie_alert_firing{host="goliath",object="/",rule="fs.usage",severity="warning",silenced="false"} 1`,
		`pinkie_alerts_firing{host="goliath",severity="warning"} 1`,
		`pinkie_alerts_firing{host="goliath",severity="critical"} 0`,
		`pinkie_alerts_firing{host="koishi",severity="warning"} 0`,
		`pinkie_deploy_last_success_age_seconds{host="goliath"} 7200`,
		`pinkie_deploy_last_attempt_succeeded{host="goliath"} 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("the exposition lacks %s", want)
		}
	}
	if strings.Contains(text, `guest="old"`) {
		t.Errorf("a guest last reported two hours ago is exposed")
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", text)
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics/fleet", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// TestReadFails: a projection that cannot be read fails the scrape with
// the reason, instead of serving a partial fleet as if complete.
func TestReadFails(t *testing.T) {
	st := &memStore{err: fmt.Errorf("open pinkie-inventory: nats: timeout")}
	rec := httptest.NewRecorder()
	Handler(st, nil, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics/fleet", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "pinkie-inventory") {
		t.Errorf("status %d body %q, want 503 naming the bucket", rec.Code, rec.Body)
	}
}

// TestDuplicateMountPoint: two records of one mount point give one series
// (the first), not a scrape error.
func TestDuplicateMountPoint(t *testing.T) {
	now := time.Now()
	fs := events.Filesystem{MountPoint: "/", Device: "/dev/vda", FSType: "ext4", SizeBytes: 1}
	s := &Snapshot{Now: now, Drives: []projections.Drive{
		{Host: "a", Kind: "fs", Object: "1", Time: now, Data: record(t, fs)},
		{Host: "a", Kind: "fs", Object: "2", Time: now, Data: record(t, fs)},
	}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector{S: s})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "node_filesystem_size_bytes{"); n != 1 {
		t.Errorf("%d node_filesystem_size_bytes series, want 1:\n%s", n, buf.String())
	}
}
