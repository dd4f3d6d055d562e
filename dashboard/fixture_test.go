package dashboard

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
)

// synthFleet fills m with n hosts' projections and, for the first
// historyHosts hosts, days of history (fs and path hourly, postgres and
// SMART temperatures hourly) ending at now.
func synthFleet(t testing.TB, m *memStore, n, historyHosts, days int, now time.Time) {
	t.Helper()
	mk := func(kind, host string, at time.Time, data any) events.Event {
		k, ok := events.Lookup(kind)
		if !ok {
			t.Fatalf("no kind %s", kind)
		}
		e, err := events.New(k, host, kind, at, data)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	put := func(bucket, key string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		m.put(bucket, key, b)
	}
	decl := events.FleetDeclared{Flake: "git+https://git.example.org/infra", Revision: "0123456789abcdef"}
	for i := range n {
		host := fmt.Sprintf("host%04d", i)
		hb := now.Add(-time.Duration(i%50) * time.Second)
		age := 3 + i%40
		built := now.Add(-time.Duration(i%20) * 24 * time.Hour)
		h := projections.Host{Host: host, Online: i%37 != 0, FirstSeen: now.Add(-90 * 24 * time.Hour), LastSeen: hb, LastHeartbeat: &hb,
			Heartbeat: &events.Heartbeat{Counter: 42, UptimeSeconds: 86400 * 3},
			Profile: &events.Profile{Hostname: host, OS: events.OSInfo{ID: "nixos", PrettyName: "NixOS 25.11 (Xantusia)"}, Kernel: "6.12.41", Arch: "x86_64",
				CPU: events.CPUInfo{Model: "AMD Ryzen 7 5700G", Cores: 8, Threads: 16}, Memory: events.Memory{TotalBytes: 64 << 30},
				Nix: &events.NixSystem{Flavor: "nixos", Version: "25.11.20261120.a1b2c3d", SystemPath: "/nix/store/abc-nixos-system-" + host, NixpkgsAgeDays: &age, BuiltAt: &built}},
			Producers: map[string]*projections.ProducerSeen{"heartbeat": {Kinds: []string{"heartbeat"}, Events: 100, Last: hb}}}
		if i%37 == 0 {
			h.SilentSince = &hb
		}
		put(events.BucketInventory, host, h)
		tags := []string{"web"}
		if i%2 == 0 {
			tags = append(tags, "eu")
		}
		decl.Hosts = append(decl.Hosts, events.DeclaredHost{Name: host, Deployment: events.DeclaredDeployment{Tags: tags, Goal: "switch", HealthChecks: []string{}},
			Roles: []string{"agent"}, Services: []string{}, Domains: []events.DeclaredDomain{}})
		for d, dev := range []string{"/dev/sda", "/dev/sdb"} {
			temp := 30 + d
			verdict, reasons := events.VerdictOK, []string(nil)
			if i%25 == 0 && d == 1 {
				verdict, reasons = events.VerdictFailing, []string{"attribute 5 Reallocated_Sector_Ct (pre-fail) is at or below its threshold"}
			}
			data := events.SMART{Device: dev, Protocol: "ata", Source: "smartctl", Model: "WDC WD40EFRX", TemperatureC: &temp, Verdict: verdict, Reasons: reasons}
			raw, _ := json.Marshal(data)
			put(events.BucketDrives, projections.DriveKey(host, "smart", dev), projections.Drive{Host: host, Kind: "smart", Object: dev, Verdict: verdict, Reasons: reasons, Time: hb, Data: raw})
		}
		for _, mp := range []string{"/", "/srv"} {
			data := events.Filesystem{MountPoint: mp, Device: "/dev/nvme0n1p2", FSType: "ext4", SizeBytes: 500 << 30, UsedBytes: 300 << 30, AvailableBytes: 200 << 30, UsedPercent: 60, Verdict: events.VerdictOK}
			raw, _ := json.Marshal(data)
			put(events.BucketDrives, projections.DriveKey(host, "fs", mp), projections.Drive{Host: host, Kind: "fs", Object: mp, Verdict: events.VerdictOK, Time: hb, Data: raw})
		}
		if i%10 == 0 {
			a := projections.ActiveAlert{Alert: events.Alert{Host: host, Rule: "smart.verdict", Object: "/dev/sdb", Severity: events.SeverityCritical,
				Summary: host + ": drive /dev/sdb is failing", Status: "firing", Reason: "started", StartsAt: now.Add(-time.Hour)}, EventID: "x", EventTime: now.Add(-time.Hour)}
			put(events.BucketAlerts, projections.AlertKey(host, fmt.Sprintf("fp%d", i)), a)
		}
		if i >= historyHosts {
			continue
		}
		start := now.Add(-time.Duration(days) * 24 * time.Hour)
		seq := uint64(0)
		for at := start; !at.After(now); at = at.Add(time.Hour) {
			frac := at.Sub(start).Hours() / float64(days*24)
			for j, mp := range []string{"/", "/srv"} {
				used := uint64((0.3 + 0.5*frac + 0.05*float64(j)) * float64(500<<30))
				fsd := events.Filesystem{MountPoint: mp, FSType: "ext4", SizeBytes: 500 << 30, UsedBytes: used, AvailableBytes: 500<<30 - used, UsedPercent: float64(used) / float64(500<<30) * 100, Verdict: "ok"}
				seq++
				m.add(events.StreamHosts, Stored{Subject: events.HostSubject(host, "fs", events.ObjectToken(mp)), Seq: seq, Time: at, Event: mk("fs", host, at, &fsd)})
			}
			pg := events.Postgres{Database: "app", SizeBytes: int64(10<<30) + int64(frac*float64(5<<30)), Relations: []events.PostgresRelation{}, Verdict: "ok"}
			seq++
			m.add(events.StreamHosts, Stored{Subject: events.HostSubject(host, "postgres", "app"), Seq: seq, Time: at, Event: mk("postgres", host, at, &pg)})
			temp := 30 + int(at.Hour()%6)
			sm := events.SMART{Device: "/dev/sda", Protocol: "ata", Source: "smartctl", TemperatureC: &temp, Verdict: "ok"}
			seq++
			m.add(events.StreamHosts, Stored{Subject: events.HostSubject(host, "smart", events.ObjectToken("/dev/sda")), Seq: seq, Time: at, Event: mk("smart", host, at, &sm)})
		}
		if i == 0 {
			code, ended := 3, now.Add(-time.Minute)
			sh := events.ShellSession{Session: "4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a", Phase: "ended", Operator: "UOPERATORKEY", RemoteIP: "192.0.2.44",
				User: "alice", Command: "systemctl status nginx", StartedAt: now.Add(-2 * time.Minute), EndedAt: &ended, ExitCode: &code}
			seq++
			m.add(events.StreamHosts, Stored{Subject: events.HostSubject(host, "shell.session", ""), Seq: seq, Time: ended, Event: mk("shell.session", host, ended, &sh)})
		}
	}
	m.add(events.StreamFleet, Stored{Subject: "pinkie.fleet.declared", Seq: 1, Time: now, Event: mk("fleet.declared", "cli", now, &decl)})
}
