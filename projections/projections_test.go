package projections

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

var t0 = time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)

type feed struct {
	t   *testing.T
	seq map[string]uint64
	ins []events.Stored
}

func (f *feed) add(stream, subject, kind, host, object string, at time.Time, data any) {
	f.t.Helper()
	k, ok := events.Lookup(kind)
	if !ok {
		f.t.Fatalf("kind %s", kind)
	}
	var opts []events.Option
	if object != "" {
		opts = append(opts, events.WithSubject(object))
	}
	e, err := events.New(k, host, kind, at, data, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := events.Encode(e)
	d, dk, err := events.Decode(b)
	if err != nil {
		f.t.Fatal(err)
	}
	f.seq[stream]++
	f.ins = append(f.ins, events.Stored{Stream: stream, Seq: f.seq[stream], Subject: subject, Event: d, Kind: dk})
}

func (f *feed) host(host, kind, object string, at time.Time, data any) {
	f.add(StreamHosts, events.HostSubject(host, kind, object), kind, host, object, at, data)
}

func sampleFeed(t *testing.T) *feed {
	f := &feed{t: t, seq: map[string]uint64{}}
	f.host("goliath", "heartbeat", "", t0, events.Heartbeat{Counter: 1, Instance: "a"})
	f.host("goliath", "profile", "", t0, events.Profile{Hostname: "goliath", Kernel: "6.12", OS: events.OSInfo{ID: "nixos"}, BootTime: t0})
	f.host("goliath", "fs", "/", t0, events.Filesystem{MountPoint: "/", UsedPercent: 50, FSType: "ext4", Verdict: "ok"})
	f.host("goliath", "fs", "/", t0.Add(time.Minute), events.Filesystem{MountPoint: "/", UsedPercent: 97, FSType: "ext4", Verdict: "failing", Reasons: []string{"97% used"}})
	// An older observation arriving late does not replace the newer one.
	f.host("goliath", "fs", "/", t0.Add(30*time.Second), events.Filesystem{MountPoint: "/", UsedPercent: 60, FSType: "ext4", Verdict: "ok"})
	f.host("goliath", "heartbeat", "", t0.Add(time.Minute), events.Heartbeat{Counter: 2, Instance: "a"})
	f.host("goliath", "guest", "web", t0, events.Guest{Name: "web", Type: "container", ActiveState: "active", Healthy: true, CPUUsageSeconds: 1, NetRXBytes: 10})
	f.host("goliath", "guest", "web", t0.Add(30*time.Second), events.Guest{Name: "web", Type: "container", ActiveState: "active", Healthy: true, CPUUsageSeconds: 4, NetRXBytes: 40})
	alert := events.Alert{Host: "goliath", Rule: "host.silent", Severity: "critical", Summary: "silent", Status: "firing", Reason: "started", StartsAt: t0.Add(7 * time.Minute), Fingerprint: "fp1"}
	f.add(StreamAlerts, "pinkie.alert.goliath.host.silent", "alert.firing", "goliath", "", t0.Add(7*time.Minute), alert)
	fs := events.Alert{Host: "goliath", Rule: "fs.usage", Object: "/", Severity: "critical", Summary: "/ 97%", Status: "firing", Reason: "started", StartsAt: t0.Add(time.Minute), Fingerprint: "fp2"}
	f.add(StreamAlerts, "pinkie.alert.goliath.fs.usage", "alert.firing", "goliath", "/", t0.Add(time.Minute), fs)
	f.add(StreamAlertLog, "pinkie.silence.added.s1", "silence.added", "operator", "", t0, events.SilenceAdded{ID: "s1", Matchers: map[string]string{"rule": "fs.*"}, StartsAt: t0, EndsAt: t0.Add(time.Hour)})
	return f
}

// fold applies inputs to fresh projections and returns every record.
func fold(t *testing.T, ins []events.Stored, existing map[string]map[string][]byte) map[string]map[string][]byte {
	t.Helper()
	out := map[string]map[string][]byte{}
	for _, p := range All() {
		recs := map[string][]byte{}
		for k, v := range existing[p.Name()] {
			if err := p.Load(k, v); err != nil {
				t.Fatal(err)
			}
			recs[k] = v
		}
		for _, in := range ins {
			p.Apply(in)
		}
		changed, err := p.Flush()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range changed {
			if v == nil {
				delete(recs, k)
			} else {
				recs[k] = v
			}
		}
		out[p.Name()] = recs
	}
	return out
}

func TestProjections(t *testing.T) {
	f := sampleFeed(t)
	got := fold(t, f.ins, nil)
	var h Host
	if err := json.Unmarshal(got["inventory"]["goliath"], &h); err != nil {
		t.Fatal(err)
	}
	if h.Online || h.SilentSince == nil || h.Heartbeat.Counter != 2 || h.Profile.Kernel != "6.12" || h.Producers["heartbeat"].Events != 2 || !h.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Errorf("inventory record: %+v", h)
	}
	var d Drive
	if err := json.Unmarshal(got["drives"]["goliath.fs._2F"], &d); err != nil {
		t.Fatal(err)
	}
	if d.Verdict != "failing" || d.State != "ext4, 97% used" {
		t.Errorf("drive record: %+v", d)
	}
	if _, ok := got["alerts"]["alert.goliath.fp2"]; !ok || len(got["alerts"]) != 3 {
		t.Errorf("alerts records: %v", keys(got["alerts"]))
	}
	// A resolved alert and a removed silence disappear; a heartbeat after
	// host.silent resolves brings the host back online.
	f.add(StreamAlerts, "pinkie.alert.goliath.fs.usage", "alert.resolved", "goliath", "/", t0.Add(time.Hour),
		events.Alert{Host: "goliath", Rule: "fs.usage", Object: "/", Severity: "critical", Summary: "ok", Status: "resolved", Reason: "resolved", StartsAt: t0.Add(time.Minute), Fingerprint: "fp2"})
	f.add(StreamAlerts, "pinkie.alert.goliath.host.silent", "alert.resolved", "goliath", "", t0.Add(time.Hour),
		events.Alert{Host: "goliath", Rule: "host.silent", Severity: "critical", Summary: "ok", Status: "resolved", Reason: "resolved", StartsAt: t0.Add(7 * time.Minute), Fingerprint: "fp1"})
	f.add(StreamAlertLog, "pinkie.silence.removed.s1", "silence.removed", "operator", "", t0, events.SilenceRemoved{ID: "s1"})
	got = fold(t, f.ins, nil)
	h = Host{}
	_ = json.Unmarshal(got["inventory"]["goliath"], &h)
	if !h.Online || h.SilentSince != nil {
		t.Errorf("host after host.silent resolved: online %v silent %v", h.Online, h.SilentSince)
	}
	if len(got["alerts"]) != 0 {
		t.Errorf("alerts records after resolve and removal: %v", keys(got["alerts"]))
	}
}

// TestResumeIsExact: the state saved after any prefix, restored, and
// replayed from an earlier checkpoint (a crash between records and
// checkpoint) ends in the same records as one straight fold.
func TestResumeIsExact(t *testing.T) {
	f := sampleFeed(t)
	straight := fold(t, f.ins, nil)
	for cut := 0; cut <= len(f.ins); cut++ {
		saved := fold(t, f.ins[:cut], nil)
		from := max(0, cut-3) // the checkpoint lagged three messages behind
		resumed := fold(t, f.ins[from:], saved)
		if diff := cmp.Diff(straight, resumed); diff != "" {
			t.Fatalf("resumed at %d from %d differs (-straight +resumed):\n%s", cut, from, diff)
		}
	}
}

func TestSilenced(t *testing.T) {
	a := events.Alert{Host: "goliath", Rule: "fs.usage", Object: "/srv", Severity: "warning", Labels: map[string]string{"kind": "fs"}}
	s := []events.SilenceAdded{
		{ID: "a", Matchers: map[string]string{"host": "goliath", "rule": "fs.*"}, StartsAt: t0, EndsAt: t0.Add(time.Hour)},
		{ID: "b", Matchers: map[string]string{"host": "koishi"}, StartsAt: t0, EndsAt: t0.Add(time.Hour)},
		{ID: "c", Matchers: map[string]string{"kind": "fs"}, StartsAt: t0, EndsAt: t0.Add(time.Minute)},
	}
	if got := Silenced(a, s, t0.Add(30*time.Second)); !cmp.Equal(got, []string{"a", "c"}) {
		t.Errorf("silenced by %v, want a and c", got)
	}
	if got := Silenced(a, s, t0.Add(2*time.Minute)); !cmp.Equal(got, []string{"a"}) {
		t.Errorf("after c expired: %v", got)
	}
	if got := Silenced(a, s, t0.Add(2*time.Hour)); len(got) != 0 {
		t.Errorf("after all expired: %v", got)
	}
}

func keys(m map[string][]byte) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	return k
}

// TestDrivesKeepDatabasesAndPaths: the latest PostgreSQL database and
// watched path reports are drive records (the host page and
// /metrics/fleet read them from pinkie-drives), the newest winning.
func TestDrivesKeepDatabasesAndPaths(t *testing.T) {
	f := &feed{t: t, seq: map[string]uint64{}}
	f.host("koishi", "postgres", "app", t0.Add(time.Hour), events.Postgres{Database: "app", SizeBytes: 2000, Verdict: "warning", Reasons: []string{"over 1 kB"}})
	f.host("koishi", "postgres", "app", t0, events.Postgres{Database: "app", SizeBytes: 1000, Verdict: "ok"})
	f.host("koishi", "path", "/srv", t0, events.PathUsage{Path: "/srv", DiskBytes: 4096, Files: 3, Verdict: "ok"})
	got := fold(t, f.ins, nil)["drives"]
	tests := []struct{ name, key, verdict, state string }{
		{"database, newest report", "koishi.postgres.app", "warning", "2000 bytes"},
		{"watched path", "koishi.path._2Fsrv", "ok", "4096 bytes on disk, 3 files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d Drive
			if err := json.Unmarshal(got[tc.key], &d); err != nil {
				t.Fatalf("record %s: %v (have %v)", tc.key, err, keys(got))
			}
			if d.Verdict != tc.verdict || d.State != tc.state {
				t.Errorf("record %s: verdict %q state %q, want %q %q", tc.key, d.Verdict, d.State, tc.verdict, tc.state)
			}
		})
	}
}

// TestGuestsProjection: the latest report of each guest wins, rates come
// from the counters of the last two reports (none across a counter reset),
// restarts between reports are counted, and the status reads the unit.
func TestGuestsProjection(t *testing.T) {
	f := &feed{t: t, seq: map[string]uint64{}}
	web := events.Guest{Name: "web", Type: "container", Unit: "container@web.service", ActiveState: "active", SubState: "running", Healthy: true,
		CPUUsageSeconds: 100, NetRXBytes: 1000, NetTXBytes: 5000}
	f.host("goliath", "guest", "web", t0, web)
	web2 := web
	web2.CPUUsageSeconds, web2.NetRXBytes, web2.NetTXBytes = 130, 61000, 5000 // 30 s CPU and 60 kB in 5 min
	f.host("goliath", "guest", "web", t0.Add(5*time.Minute), web2)
	old := web
	old.CPUUsageSeconds = 1 // an older report arriving late changes nothing
	f.host("goliath", "guest", "web", t0.Add(time.Minute), old)
	db := events.Guest{Name: "db", Type: "microvm", Unit: "microvm@db.service", ActiveState: "active", SubState: "running", Healthy: true, Restarts: 1, CPUUsageSeconds: 50}
	f.host("goliath", "guest", "db", t0, db)
	db2 := db
	db2.ActiveState, db2.SubState, db2.Healthy, db2.Restarts, db2.CPUUsageSeconds = "activating", "auto-restart", false, 4, 2
	f.host("goliath", "guest", "db", t0.Add(5*time.Minute), db2)
	f.host("koishi", "guest", "db", t0, events.Guest{Name: "db", Type: "container", ActiveState: "failed", SubState: "failed"})
	got := fold(t, f.ins, nil)["guests"]
	read := func(key string) GuestRecord {
		t.Helper()
		var r GuestRecord
		if err := json.Unmarshal(got[key], &r); err != nil {
			t.Fatalf("record %s: %v (have %v)", key, err, keys(got))
		}
		return r
	}
	f64 := func(v float64) *float64 { return &v }
	tests := []struct {
		name, key string
		want      GuestRecord
	}{
		{"rates from the last two reports", "goliath.web", GuestRecord{Host: "goliath", Name: "web", Status: "running", Guest: web2, Time: t0.Add(5 * time.Minute), FirstSeen: t0,
			CPUPercent: f64(10), NetRXBytesPerSecond: f64(200), NetTXBytesPerSecond: f64(0)}},
		{"restarting: no CPU rate across the reset", "goliath.db", GuestRecord{Host: "goliath", Name: "db", Status: "restarting", Guest: db2, Time: t0.Add(5 * time.Minute), FirstSeen: t0,
			RestartsDelta: 3}},
		{"same name on another host", "koishi.db", GuestRecord{Host: "koishi", Name: "db", Status: "failed", Guest: events.Guest{Name: "db", Type: "container", ActiveState: "failed", SubState: "failed"},
			Time: t0, FirstSeen: t0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := read(tc.key)
			r.Seq = nil
			if diff := cmp.Diff(tc.want, r); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if len(got) != 3 {
		t.Errorf("records %v, want 3", keys(got))
	}
}
