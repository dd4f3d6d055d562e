package alerter

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

var t0 = time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)

// harness feeds events to an engine with increasing sequence numbers.
type harness struct {
	t        *testing.T
	e        *Engine
	seq      uint64
	fleetSeq uint64
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	rules, err := cfg.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, e: NewEngine(rules, cfg.Options())}
}

// input builds a stored HOSTS message of host's kind about object.
func (h *harness) input(host, kind, object string, at time.Time, data any) events.Stored {
	h.t.Helper()
	k, ok := events.Lookup(kind)
	if !ok {
		h.t.Fatalf("unknown kind %s", kind)
	}
	var opts []events.Option
	if object != "" {
		opts = append(opts, events.WithSubject(object))
	}
	ev, err := events.New(k, host, kind, at, data, opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.seq++
	return h.stored("HOSTS", h.seq, events.HostSubject(host, kind, object), ev, at)
}

// stored is ev as a stream stores it: encoded, then decoded as the fold
// runner does.
func (h *harness) stored(stream string, seq uint64, subject string, ev events.Event, at time.Time) events.Stored {
	h.t.Helper()
	b, err := events.Encode(ev)
	if err != nil {
		h.t.Fatal(err)
	}
	d, k, err := events.Decode(b)
	if err != nil {
		h.t.Fatal(err)
	}
	return events.Stored{Stream: stream, Seq: seq, Subject: subject, Event: d, Kind: k, At: at}
}

func (h *harness) send(host, kind, object string, at time.Time, data any) []Output {
	h.t.Helper()
	return h.e.Apply(h.input(host, kind, object, at, data))
}

// deploy sends a deploy phase event the way the DEPLOY stream stores it.
func (h *harness) deploy(host, phase string, at time.Time, data map[string]any) []Output {
	h.t.Helper()
	k, ok := events.Lookup("deploy." + phase)
	if !ok {
		h.t.Fatalf("unknown deploy phase %s", phase)
	}
	ev, err := events.New(k, host, "activator", at, data)
	if err != nil {
		h.t.Fatal(err)
	}
	h.seq++
	return h.e.Apply(h.stored("DEPLOY", h.seq, "pinkie.deploy."+host+"."+phase, ev, at))
}

func (h *harness) silence(kind string, at time.Time, data any) []Output {
	h.t.Helper()
	k, _ := events.Lookup(kind)
	ev, err := events.New(k, "operator", "silence", at, data)
	if err != nil {
		h.t.Fatal(err)
	}
	h.seq++
	return h.e.Apply(h.stored("ALERTLOG", h.seq, "pinkie."+kind+".x", ev, at))
}

// brief is an output in one line: status reason severity host rule object.
func brief(outs []Output) []string {
	var s []string
	for _, o := range outs {
		if o.Event.Type() == "pinkie.silence.removed.v1" {
			s = append(s, "silence expired "+o.Subject)
			continue
		}
		a := o.Alert
		line := fmt.Sprintf("%s %s %s %s %s %s", a.Status, a.Reason, a.Severity, a.Host, a.Rule, a.Object)
		if a.Silenced {
			line += " silenced"
		}
		s = append(s, line)
	}
	return s
}

func fsData(usedPct float64, size uint64) events.Filesystem {
	used := uint64(float64(size) * usedPct / 100)
	return events.Filesystem{MountPoint: "/srv", Device: "/dev/sda1", FSType: "ext4", SizeBytes: size, UsedBytes: used,
		AvailableBytes: size - used, UsedPercent: usedPct, Verdict: "ok"}
}

const gib = 1 << 30

// step is one input of a table test and the alerts it must cause.
type step struct {
	at   time.Duration // after t0
	send func(h *harness, at time.Time) []Output
	tick bool
	want []string
}

func runSteps(t *testing.T, cfg Config, steps []step) *harness {
	t.Helper()
	h := newHarness(t, cfg)
	for i, s := range steps {
		at := t0.Add(s.at)
		var got []Output
		if s.tick {
			got = h.e.Tick(at)
		} else {
			got = s.send(h, at)
		}
		if diff := cmp.Diff(s.want, brief(got)); diff != "" {
			t.Fatalf("step %d (at +%s): alerts differ (-want +got):\n%s", i+1, s.at, diff)
		}
		for _, o := range got {
			if o.Alert.Rule == "" {
				continue
			}
			if !strings.HasPrefix(o.Subject, "pinkie.alert."+o.Alert.Host+"."+o.Alert.Rule) || o.Alert.Summary == "" {
				t.Fatalf("step %d: bad output %+v", i+1, o)
			}
			if strings.Contains(o.Alert.Summary, "<no value>") || strings.Contains(o.Alert.Summary, "template failed") {
				t.Fatalf("step %d: summary %q", i+1, o.Alert.Summary)
			}
		}
	}
	return h
}

func fs(pct float64) func(h *harness, at time.Time) []Output {
	return func(h *harness, at time.Time) []Output {
		return h.send("goliath", "fs", "/srv", at, fsData(pct, 100*gib))
	}
}

func send(kind, object string, data any) func(h *harness, at time.Time) []Output {
	return func(h *harness, at time.Time) []Output { return h.send("goliath", kind, object, at, data) }
}

func TestRules(t *testing.T) {
	boolp := func(b bool) *bool { return &b }
	_ = boolp
	ago := func(d time.Duration) *int64 { s := int64(d.Seconds()); return &s }
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"fs.usage fires, hovers without flapping, escalates, de-escalates and resolves", Config{}, []step{
			{at: 0, send: fs(50)},
			{at: time.Minute, send: fs(86), want: []string{"firing started warning goliath fs.usage /srv"}},
			{at: 2 * time.Minute, send: fs(84)}, // below 85 but above 80: still firing
			{at: 3 * time.Minute, send: fs(85.5)},
			{at: 4 * time.Minute, send: fs(83)},
			{at: 5 * time.Minute, send: fs(96), want: []string{"firing escalated critical goliath fs.usage /srv"}},
			{at: 6 * time.Minute, send: fs(94)}, // hysteresis of critical: resolves below 92
			{at: 7 * time.Minute, send: fs(90), want: []string{"firing deescalated warning goliath fs.usage /srv"}},
			{at: 8 * time.Minute, send: fs(81)},
			{at: 9 * time.Minute, send: fs(79), want: []string{"resolved resolved warning goliath fs.usage /srv"}},
			{at: 10 * time.Minute, send: fs(84)}, // below the firing threshold again: nothing
		}},
		{"for: fires only after the condition held for the duration", Config{Disable: []string{"fs.fill"}, Rules: []Rule{{Name: "fs.usage", Kind: "fs", For: Duration(10 * time.Minute),
			Levels: []Level{{Severity: "warning", When: "used_percent > 85", Resolve: "used_percent < 80"}}, Summary: "{{.host}} {{.mount_point}} {{pct .used_percent}}"}}}, []step{
			{at: 0, send: fs(90)},
			{at: 5 * time.Minute, tick: true},
			{at: 6 * time.Minute, send: fs(70)}, // cleared before 10m: never fires
			{at: 20 * time.Minute, tick: true},
			{at: 21 * time.Minute, send: fs(90)},
			{at: 30 * time.Minute, send: fs(90)},
			{at: 31 * time.Minute, tick: true, want: []string{"firing started warning goliath fs.usage /srv"}},
			{at: 32 * time.Minute, send: fs(70), want: []string{"resolved resolved warning goliath fs.usage /srv"}},
		}},
		{"repeat after repeat_interval, once per interval", Config{RepeatInterval: Duration(time.Hour)}, []step{
			{at: 0, send: fs(96), want: []string{"firing started critical goliath fs.usage /srv"}},
			{at: 59 * time.Minute, tick: true},
			{at: 61 * time.Minute, tick: true, want: []string{"firing repeat critical goliath fs.usage /srv"}},
			{at: 62 * time.Minute, tick: true},
			{at: 5 * time.Hour, tick: true, want: []string{"firing repeat critical goliath fs.usage /srv"}},
			{at: 5*time.Hour + time.Minute, send: fs(10), want: []string{"resolved resolved critical goliath fs.usage /srv"}},
			{at: 7 * time.Hour, tick: true},
		}},
		{"silence: marked silenced, repeat suppressed, unsilenced when removed", Config{RepeatInterval: Duration(time.Hour)}, []step{
			{at: 0, send: func(h *harness, at time.Time) []Output {
				return h.silence("silence.added", at, events.SilenceAdded{ID: "s1", Matchers: map[string]string{"host": "goliath", "rule": "fs.*"}, StartsAt: at, EndsAt: at.Add(2 * time.Hour)})
			}},
			{at: time.Minute, send: fs(90), want: []string{"firing started warning goliath fs.usage /srv silenced"}},
			{at: 70 * time.Minute, tick: true},
			{at: 80 * time.Minute, send: func(h *harness, at time.Time) []Output {
				return h.silence("silence.removed", at, events.SilenceRemoved{ID: "s1"})
			}, want: []string{"firing unsilenced warning goliath fs.usage /srv"}},
		}},
		{"silence expiry re-notifies a still-firing alert", Config{}, []step{
			{at: 0, send: func(h *harness, at time.Time) []Output {
				return h.silence("silence.added", at, events.SilenceAdded{ID: "s2", Matchers: map[string]string{"host": "goliath"}, StartsAt: at, EndsAt: at.Add(time.Hour)})
			}},
			{at: time.Minute, send: fs(96), want: []string{"firing started critical goliath fs.usage /srv silenced"}},
			{at: 59 * time.Minute, tick: true},
			{at: 61 * time.Minute, tick: true, want: []string{"silence expired pinkie.silence.removed.s2", "firing unsilenced critical goliath fs.usage /srv"}},
		}},
		{"silence for another host does not match", Config{}, []step{
			{at: 0, send: func(h *harness, at time.Time) []Output {
				return h.silence("silence.added", at, events.SilenceAdded{ID: "s3", Matchers: map[string]string{"host": "koishi"}, StartsAt: at, EndsAt: at.Add(time.Hour)})
			}},
			{at: time.Minute, send: fs(96), want: []string{"firing started critical goliath fs.usage /srv"}},
		}},
		{"smart verdict failing and warning", Config{}, []step{
			{at: 0, send: send("smart", "/dev/sda", events.SMART{Device: "/dev/sda", Protocol: "ata", Source: "smartctl", Model: "WDC", Verdict: "warning", Reasons: []string{"5 reallocated sectors"}}),
				want: []string{"firing started warning goliath smart.verdict /dev/sda"}},
			{at: time.Hour, send: send("smart", "/dev/sda", events.SMART{Device: "/dev/sda", Protocol: "ata", Source: "smartctl", Verdict: "failing", Reasons: []string{"SMART overall-health failed"}}),
				want: []string{"firing escalated critical goliath smart.verdict /dev/sda"}},
			{at: 2 * time.Hour, send: send("smart", "/dev/sda", events.SMART{Device: "/dev/sda", Protocol: "ata", Source: "smartctl", Verdict: "ok"}),
				want: []string{"resolved resolved critical goliath smart.verdict /dev/sda"}},
		}},
		{"zfs: not ONLINE, vdev errors, old scrub", Config{}, []step{
			{at: 0, send: send("zfs", "tank", events.ZFSPool{Pool: "tank", State: "DEGRADED", Verdict: "failing",
				Vdevs: []events.ZFSVdev{{Name: "tank", Path: "tank", State: "DEGRADED"}, {Name: "sdb", Path: "mirror-0/sdb", Depth: 2, State: "FAULTED", ReadErrors: 3, ChecksumErrors: 2}},
				Scan:  events.ZFSScan{Function: "scrub", State: "finished", AgeSeconds: ago(40 * 24 * time.Hour)}}),
				want: []string{"firing started warning goliath zfs.errors tank", "firing started warning goliath zfs.scrub tank", "firing started critical goliath zfs.state tank"}},
			{at: time.Hour, send: send("zfs", "tank", events.ZFSPool{Pool: "tank", State: "ONLINE", Verdict: "ok",
				Vdevs: []events.ZFSVdev{{Name: "tank", Path: "tank", State: "ONLINE"}},
				Scan:  events.ZFSScan{Function: "scrub", State: "finished", AgeSeconds: ago(time.Hour)}}),
				want: []string{"resolved resolved warning goliath zfs.errors tank", "resolved resolved warning goliath zfs.scrub tank", "resolved resolved critical goliath zfs.state tank"}},
			{at: 2 * time.Hour, send: send("zfs", "new", events.ZFSPool{Pool: "new", State: "ONLINE", Verdict: "ok", Scan: events.ZFSScan{Function: "none"}}),
				want: []string{"firing started warning goliath zfs.scrub new"}},
		}},
		{"btrfs error counter above baseline", Config{}, []step{
			{at: 0, send: send("btrfs", "fsid1", events.Btrfs{FSID: "fsid1", Source: "sysfs", Verdict: "ok", Devices: []events.BtrfsDevice{{DevID: 1}}})},
			{at: time.Hour, send: send("btrfs", "fsid1", events.Btrfs{FSID: "fsid1", Source: "sysfs", Verdict: "failing", Reasons: []string{"corruption_errs rose by 2"},
				Devices: []events.BtrfsDevice{{DevID: 1, Errors: events.BtrfsCounters{CorruptionErrs: 2}}}}),
				want: []string{"firing started critical goliath btrfs.errors fsid1"}},
			{at: 2 * time.Hour, send: send("btrfs", "fsid1", events.Btrfs{FSID: "fsid1", Source: "sysfs", Verdict: "ok",
				Devices: []events.BtrfsDevice{{DevID: 1, Errors: events.BtrfsCounters{CorruptionErrs: 2}, Baseline: events.BtrfsCounters{CorruptionErrs: 2}}}}),
				want: []string{"resolved resolved critical goliath btrfs.errors fsid1"}},
		}},
		{"mdraid degraded, failed member, inactive", Config{}, []step{
			{at: 0, send: send("mdraid", "md0", events.MDRaid{Device: "md0", Level: "raid1", State: "active", RequiredDisks: 2, ActiveDisks: 1, FailedDisks: 1, DegradedDisks: 1, Verdict: "failing"}),
				want: []string{"firing started critical goliath mdraid.degraded md0", "firing started critical goliath mdraid.failed md0"}},
			{at: time.Minute, send: send("mdraid", "md1", events.MDRaid{Device: "md1", State: "inactive", Verdict: "failing"}),
				want: []string{"firing started critical goliath mdraid.inactive md1"}},
			{at: 2 * time.Minute, send: send("mdraid", "md127", events.MDRaid{Device: "md127", State: "inactive", Container: true, Verdict: "ok"})},
			{at: time.Hour, send: send("mdraid", "md0", events.MDRaid{Device: "md0", Level: "raid1", State: "active", RequiredDisks: 2, ActiveDisks: 2, Verdict: "ok"}),
				want: []string{"resolved resolved critical goliath mdraid.degraded md0", "resolved resolved critical goliath mdraid.failed md0"}},
		}},
		{"login is a one-shot info alert naming the user", Config{}, []step{
			{at: 0, send: send("login", "", events.Login{User: "alice", Service: "sshd", Method: "publickey", RemoteIP: "192.0.2.4", LoggedAt: t0, From: "/var/log/auth.log"}),
				want: []string{"firing event info goliath login alice"}},
			{at: time.Minute, send: send("login", "", events.Login{User: "alice", Service: "sshd", Method: "publickey", RemoteIP: "192.0.2.4", LoggedAt: t0.Add(time.Minute), From: "/var/log/auth.log"}),
				want: []string{"firing event info goliath login alice"}},
		}},
		{"fail2ban ban (info) and burst (warning) resolving on a tick", Config{}, []step{
			{at: 0, send: func(h *harness, at time.Time) []Output {
				var out []Output
				for i := 0; i < 10; i++ {
					ts := at.Add(time.Duration(i) * time.Second)
					out = append(out, h.send("goliath", "fail2ban", "", ts, events.Fail2ban{Action: "ban", Jail: "sshd", IP: fmt.Sprintf("198.51.100.%d", i), LoggedAt: ts, From: "journal"})...)
				}
				return out
			}, want: []string{"firing event info goliath fail2ban.ban 198.51.100.0", "firing event info goliath fail2ban.ban 198.51.100.1",
				"firing event info goliath fail2ban.ban 198.51.100.2", "firing event info goliath fail2ban.ban 198.51.100.3",
				"firing event info goliath fail2ban.ban 198.51.100.4", "firing event info goliath fail2ban.ban 198.51.100.5",
				"firing event info goliath fail2ban.ban 198.51.100.6", "firing event info goliath fail2ban.ban 198.51.100.7",
				"firing event info goliath fail2ban.ban 198.51.100.8", "firing event info goliath fail2ban.ban 198.51.100.9",
				"firing started warning goliath fail2ban.burst "}},
			{at: 5 * time.Minute, send: send("fail2ban", "", events.Fail2ban{Action: "unban", Jail: "sshd", IP: "198.51.100.1", LoggedAt: t0.Add(5 * time.Minute), From: "journal"})},
			{at: 11 * time.Minute, tick: true, want: []string{"resolved resolved warning goliath fail2ban.burst "}},
		}},
		{"failed systemd units, one alert per unit, resolved when gone", Config{}, []step{
			{at: 0, send: send("systemd", "", events.Systemd{Source: "dbus", Failed: []events.UnitState{{Name: "backup.service", LoadState: "loaded", ActiveState: "failed", SubState: "failed"}, {Name: "nginx.service", LoadState: "loaded", ActiveState: "failed"}}}),
				want: []string{"firing started warning goliath systemd.failed backup.service", "firing started warning goliath systemd.failed nginx.service"}},
			{at: time.Minute, send: send("systemd", "", events.Systemd{Source: "dbus", Failed: []events.UnitState{{Name: "nginx.service", LoadState: "loaded", ActiveState: "failed"}}}),
				want: []string{"resolved resolved warning goliath systemd.failed backup.service"}},
			{at: 2 * time.Minute, send: send("systemd", "", events.Systemd{Source: "dbus", Failed: []events.UnitState{}}),
				want: []string{"resolved resolved warning goliath systemd.failed nginx.service"}},
		}},
		{"guest down", Config{}, []step{
			{at: 0, send: send("guest", "web", events.Guest{Name: "web", Type: "microvm", Unit: "microvm@web.service", ActiveState: "failed", Healthy: false}),
				want: []string{"firing started warning goliath guest.down web"}},
			{at: time.Minute, send: send("guest", "web", events.Guest{Name: "web", Type: "microvm", Unit: "microvm@web.service", ActiveState: "active", Healthy: true}),
				want: []string{"resolved resolved warning goliath guest.down web"}},
		}},
		{"guest restarting in a loop, resolved after a quiet hour", Config{}, func() []step {
			g := func(restarts int, state string) events.Guest {
				return events.Guest{Name: "db", Type: "microvm", Unit: "microvm@db.service", ActiveState: state, Healthy: state == "active", Restarts: restarts}
			}
			return []step{
				{at: 0, send: send("guest", "db", g(1, "active"))},
				{at: 5 * time.Minute, send: send("guest", "db", g(2, "active"))},
				{at: 10 * time.Minute, send: send("guest", "db", g(3, "activating")), want: []string{"firing started warning goliath guest.down db"}},
				{at: 15 * time.Minute, send: send("guest", "db", g(4, "active")),
					want: []string{"resolved resolved warning goliath guest.down db", "firing started warning goliath guest.restarting db"}},
				{at: 70 * time.Minute, send: send("guest", "db", g(4, "active"))},
				{at: 80 * time.Minute, send: send("guest", "db", g(4, "active")), want: []string{"resolved resolved warning goliath guest.restarting db"}},
			}
		}()},
		{"guest memory and disk near their limits", Config{}, func() []step {
			g := func(memPct, diskPct float64) events.Guest {
				return events.Guest{Name: "web", Type: "container", ActiveState: "active", Healthy: true, MemoryBytes: 950, MemoryMaxBytes: 1000, MemoryPercent: memPct,
					StateDir: "/var/lib/nixos-containers/web", DiskPercent: diskPct, DiskFSBytes: 100, DiskFreeBytes: 100 - uint64(diskPct)}
			}
			return []step{
				{at: 0, send: send("guest", "web", g(95, 96)), want: []string{"firing started critical goliath guest.disk web", "firing started warning goliath guest.memory web"}},
				{at: time.Minute, send: send("guest", "web", g(88, 93))},
				{at: 2 * time.Minute, send: send("guest", "web", g(80, 80)), want: []string{"resolved resolved critical goliath guest.disk web", "resolved resolved warning goliath guest.memory web"}},
				// No limit: no memory_percent, no alert.
				{at: 3 * time.Minute, send: send("guest", "web", events.Guest{Name: "web", Type: "container", ActiveState: "active", Healthy: true, MemoryBytes: 1 << 40})},
			}
		}()},
		{"host silent: no heartbeat for 5 minutes, resolved by the next one", Config{}, []step{
			{at: 0, send: send("heartbeat", "", events.Heartbeat{Counter: 1, Instance: "i"})},
			{at: 4 * time.Minute, tick: true},
			{at: 5*time.Minute + 10*time.Second, tick: true, want: []string{"firing started critical goliath host.silent "}},
			{at: 6 * time.Minute, tick: true},
			{at: 7 * time.Minute, send: send("heartbeat", "", events.Heartbeat{Counter: 2, Instance: "i"}), want: []string{"resolved resolved critical goliath host.silent "}},
		}},
		{"deploy failed, resolved by an activation; stale without one", Config{DeployStaleAfter: Duration(7 * 24 * time.Hour)}, []step{
			{at: 0, send: func(h *harness, at time.Time) []Output {
				return h.deploy("goliath", "requested", at, map[string]any{"host": "goliath"})
			}},
			{at: time.Minute, send: func(h *harness, at time.Time) []Output {
				return h.deploy("goliath", "failed", at, map[string]any{"host": "goliath", "reason": "switch-to-configuration exited 4"})
			}, want: []string{"firing started critical goliath deploy.failed "}},
			{at: 2 * time.Minute, send: func(h *harness, at time.Time) []Output {
				// A builder's report about koishi, under the builder's subject.
				return h.deploy("goliath", "build.failed", at, map[string]any{"host": "koishi", "builder": "goliath", "reason": "nix build exited 1"})
			}, want: []string{"firing started critical koishi deploy.failed "}},
			{at: time.Hour, send: func(h *harness, at time.Time) []Output { return h.deploy("goliath", "activated", at, map[string]any{}) },
				want: []string{"resolved resolved critical goliath deploy.failed "}},
			{at: 7 * 24 * time.Hour, tick: true, want: []string{"firing repeat critical koishi deploy.failed "}},
			{at: 7*24*time.Hour + 2*time.Hour, tick: true, want: []string{"firing started warning goliath deploy.stale ", "firing started warning koishi deploy.stale ", "firing repeat critical koishi deploy.failed "}},
			{at: 8 * 24 * time.Hour, send: func(h *harness, at time.Time) []Output { return h.deploy("goliath", "activated", at, map[string]any{}) },
				want: []string{"resolved resolved warning goliath deploy.stale "}},
		}},
		{"path growth and size from configured limits", Config{Path: &GrowthLimits{MaxBytes: 50 * gib, MaxGrowthPerHour: 1 * gib}}, []step{
			{at: 0, send: send("path", "/var/log", events.PathUsage{Path: "/var/log", SizeBytes: 10 * gib, Complete: true, Verdict: "ok"})},
			{at: 30 * time.Minute, send: send("path", "/var/log", events.PathUsage{Path: "/var/log", SizeBytes: 11 * gib, Complete: true, Verdict: "ok"})},
			{at: 60 * time.Minute, send: send("path", "/var/log", events.PathUsage{Path: "/var/log", SizeBytes: 12 * gib, Complete: true, Verdict: "ok"}),
				want: []string{"firing started warning goliath path.growth /var/log"}},
			{at: 90 * time.Minute, send: send("path", "/var/log", events.PathUsage{Path: "/var/log", SizeBytes: 60 * gib, Complete: true, Verdict: "ok"}),
				want: []string{"firing started warning goliath path.size /var/log"}},
		}},
		{"postgres size", Config{Postgres: &GrowthLimits{MaxBytes: 1 * gib, SeverityOverLimit: "critical"}}, []step{
			{at: 0, send: send("postgres", "app", events.Postgres{Database: "app", ServerVersion: "16", SizeBytes: 2 * gib, Relations: []events.PostgresRelation{}, Verdict: "ok"}),
				want: []string{"firing started critical goliath postgres.size app"}},
		}},
		{"postgres size on by default", Config{}, []step{
			{at: 0, send: send("postgres", "app", events.Postgres{Database: "app", ServerVersion: "16", SizeBytes: 49 * gib, Relations: []events.PostgresRelation{}, Verdict: "ok"})},
			{at: time.Minute, send: send("postgres", "app", events.Postgres{Database: "app", ServerVersion: "16", SizeBytes: 51 * gib, Relations: []events.PostgresRelation{}, Verdict: "ok"}),
				want: []string{"firing started warning goliath postgres.size app"}},
			{at: 2 * time.Minute, send: send("postgres", "app", events.Postgres{Database: "app", ServerVersion: "16", SizeBytes: 40 * gib, Relations: []events.PostgresRelation{}, Verdict: "ok"}),
				want: []string{"resolved resolved warning goliath postgres.size app"}},
		}},
		{"postgres size per database", Config{Postgres: &GrowthLimits{MaxBytes: 10 * gib, Databases: map[string]float64{"app": 1 * gib, "archive": 0, `we"ird`: 2 * gib}}}, []step{
			{at: 0, send: send("postgres", "app", events.Postgres{Database: "app", ServerVersion: "16", SizeBytes: 2 * gib, Relations: []events.PostgresRelation{}, Verdict: "ok"}),
				want: []string{"firing started warning goliath postgres.size app"}},
			{at: 0, send: send("postgres", "archive", events.Postgres{Database: "archive", ServerVersion: "16", SizeBytes: 500 * gib, Relations: []events.PostgresRelation{}, Verdict: "ok"})},
			{at: 0, send: send("postgres", "web", events.Postgres{Database: "web", ServerVersion: "16", SizeBytes: 5 * gib, Relations: []events.PostgresRelation{}, Verdict: "ok"})},
			{at: 0, send: send("postgres", `we"ird`, events.Postgres{Database: `we"ird`, ServerVersion: "16", SizeBytes: 3 * gib, Relations: []events.PostgresRelation{}, Verdict: "ok"}),
				want: []string{`firing started warning goliath postgres.size we"ird`}},
			{at: time.Minute, send: send("postgres", "web", events.Postgres{Database: "web", ServerVersion: "16", SizeBytes: 11 * gib, Relations: []events.PostgresRelation{}, Verdict: "ok"}),
				want: []string{"firing started warning goliath postgres.size web"}},
		}},
		{"user rule on a kind, with a disabled built-in", Config{Disable: []string{"fs.usage", "fs.fill"}, Rules: []Rule{{Name: "pg.xid", Kind: "postgres",
			Levels: []Level{{Severity: "warning", When: "xid_age > 1e9", Resolve: "xid_age < 9e8"}}, Summary: "{{.host}}: {{.database}} xid age {{.xid_age}}"}}}, []step{
			{at: 0, send: fs(99)},
			{at: time.Minute, send: send("postgres", "app", events.Postgres{Database: "app", ServerVersion: "16", SizeBytes: 1, XIDAge: 1_500_000_000, Relations: []events.PostgresRelation{}, Verdict: "warning"}),
				want: []string{"firing started warning goliath pg.xid app"}},
			{at: 2 * time.Minute, send: send("postgres", "app", events.Postgres{Database: "app", ServerVersion: "16", SizeBytes: 1, XIDAge: 950_000_000, Relations: []events.PostgresRelation{}, Verdict: "ok"})},
			{at: 3 * time.Minute, send: send("postgres", "app", events.Postgres{Database: "app", ServerVersion: "16", SizeBytes: 1, XIDAge: 800_000_000, Relations: []events.PostgresRelation{}, Verdict: "ok"}),
				want: []string{"resolved resolved warning goliath pg.xid app"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSteps(t, tt.cfg, tt.steps) })
	}
}

// TestFillPrediction feeds a synthetic growth series every 10 minutes:
// used space grows 1 GiB/h from 78 of 100 GiB, then stops. The linear fit
// over the last 6 h predicts full within 24 h (warning) once it has 30
// minutes of points, within 4 h (critical) when 4 GiB are left, and
// resolves once the growth has stopped long enough for the fit to flatten.
func TestFillPrediction(t *testing.T) {
	h := newHarness(t, Config{Disable: []string{"fs.usage"}})
	size := uint64(100 * gib)
	type change struct {
		at   time.Duration
		what string
	}
	var got []change
	used := float64(78 * gib)
	for i := 0; i <= 30*6; i++ {
		at := time.Duration(i) * 10 * time.Minute
		if at <= 20*time.Hour && i > 0 {
			used += float64(gib) / 6
		}
		d := fsData(0, size)
		d.UsedBytes = uint64(used)
		d.AvailableBytes = size - d.UsedBytes
		d.UsedPercent = used / float64(size) * 100
		for _, o := range h.send("goliath", "fs", "/srv", t0.Add(at), d) {
			got = append(got, change{at, o.Alert.Reason + " " + o.Alert.Severity})
			if o.Alert.Reason == "started" && !strings.Contains(o.Alert.Summary, "growing 1.0 GiB/h") {
				t.Errorf("summary %q does not state the fitted rate", o.Alert.Summary)
			}
		}
	}
	// Repeats (after 24 h of firing) are fine; the transitions are checked.
	var changes []change
	for _, c := range got {
		if !strings.HasPrefix(c.what, "repeat") {
			changes = append(changes, c)
		}
	}
	got = changes
	want := []string{"started warning", "escalated critical", "deescalated warning", "resolved warning"}
	if len(got) != len(want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
	for i, c := range got {
		if c.what != want[i] {
			t.Fatalf("change %d: %v, want %s (all: %v)", i, c, want[i], got)
		}
	}
	// Warning as soon as the fit has 30 minutes (21.5 GiB free at 1 GiB/h).
	if got[0].at != 30*time.Minute {
		t.Errorf("warning at +%s, want +30m", got[0].at)
	}
	// Critical when less than 4 GiB are free: after 18 h of growth.
	if got[1].at < 18*time.Hour || got[1].at > 18*time.Hour+20*time.Minute {
		t.Errorf("critical at +%s, want about +18h", got[1].at)
	}
	// After growth stops at +20h, it takes part of the 6 h window for the fitted rate to fall.
	if got[2].at <= 20*time.Hour || got[3].at <= got[2].at || got[3].at > 26*time.Hour+10*time.Minute {
		t.Errorf("de-escalation at +%s and resolve at +%s, want after +20h, within the 6 h window", got[2].at, got[3].at)
	}
}

func TestSlope(t *testing.T) {
	var pts []point
	for i := 0; i < 7; i++ {
		pts = append(pts, point{T: t0.Add(time.Duration(i) * time.Hour), V: 100 + 3*float64(i)})
	}
	if s := slope(pts); s < 2.999 || s > 3.001 {
		t.Errorf("slope %v, want 3/h", s)
	}
	if s := slope(pts[:2]); s != 0 {
		t.Errorf("slope of 2 points %v, want 0 (too few)", s)
	}
}

// TestDeterministicAndResumable checks what restart safety rests on: the
// same inputs give the same alert event ids; a state saved with Flush and
// restored with Load continues exactly; inputs already applied are skipped.
func TestDeterministicAndResumable(t *testing.T) {
	mk := func() (*harness, []events.Stored) {
		h := newHarness(t, Config{})
		var ins []events.Stored
		for i, pct := range []float64{50, 90, 97, 70} {
			ins = append(ins, h.input("goliath", "fs", "/srv", t0.Add(time.Duration(i)*time.Minute), fsData(pct, 100*gib)))
		}
		return h, ins
	}
	ids := func(outs []Output) []string {
		var s []string
		for _, o := range outs {
			s = append(s, o.Event.ID())
		}
		return s
	}
	h1, ins := mk()
	var all1 []Output
	for _, in := range ins {
		all1 = append(all1, h1.e.Apply(in)...)
	}
	h2, _ := mk()
	ins2 := ins
	var all2 []Output
	for i, in := range ins2[:2] {
		all2 = append(all2, h2.e.Apply(in)...)
		_ = i
	}
	saved, err := h2.e.Flush()
	if err != nil {
		t.Fatal(err)
	}
	// A new engine restored from the saved state; the crash lost nothing
	// after the flush, and a replay of input 2 must be skipped.
	h3 := newHarness(t, Config{})
	for k, v := range saved {
		if err := h3.e.Load(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if out := h3.e.Apply(ins2[1]); len(out) != 0 {
		t.Errorf("re-applied input produced %v", brief(out))
	}
	for _, in := range ins2[2:] {
		all2 = append(all2, h3.e.Apply(in)...)
	}
	if diff := cmp.Diff(ids(all1), ids(all2)); diff != "" {
		t.Errorf("alert event ids differ between a straight run and a resumed one (-straight +resumed):\n%s", diff)
	}
	if len(all1) != 3 {
		t.Errorf("got %v, want started, escalated, resolved", brief(all1))
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"unknown key", `{"repeat_intervall": "1h"}`, `unknown field "repeat_intervall"`},
		{"bad duration", `{"repeat_interval": "soon"}`, `duration "soon"`},
		{"bad rule name", `{"rules": [{"name": "Fs Usage", "kind": "fs", "summary": "x", "levels": [{"severity": "warning", "when": "true"}]}]}`, `rule name "Fs Usage"`},
		{"unknown kind", `{"rules": [{"name": "x", "kind": "nope", "summary": "x", "levels": [{"severity": "warning", "when": "true"}]}]}`, `unknown event kind "nope"`},
		{"bad expression", `{"rules": [{"name": "x", "kind": "fs", "summary": "x", "levels": [{"severity": "warning", "when": "used_percent >"}]}]}`, `rule x: level warning: when`},
		{"bad severity", `{"rules": [{"name": "x", "kind": "fs", "summary": "x", "levels": [{"severity": "bad", "when": "true"}]}]}`, `severity "bad"`},
		{"disable unknown", `{"disable": ["fs.nope"]}`, `no rule named "fs.nope"`},
		{"unknown rule key", `{"rules": [{"name": "x", "kind": "fs", "summery": "x"}]}`, `unknown field "summery"`},
		{"negative database limit", `{"postgres": {"databases": {"app": -1}}}`, `postgres: databases: "app": want a size in bytes`},
		{"databases for paths", `{"path": {"max_bytes": 1, "databases": {"app": 1}}}`, `databases is for postgres only`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.raw))
			if err == nil {
				_, err = c.Compile()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestIngestThrottledRule: the hub's ingest.budget events about a host
// fire ingest.throttled while it is throttled and resolve it when it is
// within budget again.
func TestIngestThrottledRule(t *testing.T) {
	h := newHarness(t, Config{})
	resume := t0.Add(10 * time.Second)
	b := events.IngestBudget{Host: "goliath", Throttled: true, Reason: "sent more than 100 events/s (burst 50000)", Since: t0, Pauses: 1,
		ResumeAfter: &resume, EventsPerSecond: 100, BytesPerSecond: 262144, BurstEvents: 50000, BurstBytes: 64 << 20}
	out := h.send("goliath", "ingest.budget", "", t0, b)
	if len(out) != 1 || out[0].Alert.Status != "firing" || out[0].Subject != "pinkie.alert.goliath.ingest.throttled" || out[0].Alert.Severity != events.SeverityWarning {
		t.Fatalf("throttled: want one warning firing on pinkie.alert.goliath.ingest.throttled, got %+v", out)
	}
	if s := out[0].Alert.Summary; !strings.Contains(s, "goliath: sends more than its ingest budget (sent more than 100 events/s") {
		t.Errorf("summary %q", s)
	}
	// A second pause of the same episode changes nothing.
	b.Pauses = 2
	if out := h.send("goliath", "ingest.budget", "", t0.Add(time.Minute), b); len(out) != 0 {
		t.Errorf("second pause: want no alert event, got %+v", out)
	}
	b.Throttled, b.Reason, b.ResumeAfter = false, "", nil
	out = h.send("goliath", "ingest.budget", "", t0.Add(5*time.Minute), b)
	if len(out) != 1 || out[0].Alert.Status != "resolved" {
		t.Fatalf("within budget: want the alert resolved, got %+v", out)
	}
}
