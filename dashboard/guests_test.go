package dashboard

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
)

// addGuests reports guests of host0000 every 5 minutes for two hours,
// folds them through the guests projection into its bucket as the hub
// does, and declares a domain proxied to web and a guest never seen.
func addGuests(t *testing.T, ts *testServer) {
	t.Helper()
	p := projections.NewGuests()
	k, _ := events.Lookup("guest")
	seq := uint64(1 << 20)
	for i := 24; i >= 0; i-- {
		at := testNow.Add(-time.Duration(i) * 5 * time.Minute)
		for _, g := range []events.Guest{
			{Name: "web", Type: "container", Unit: "container@web.service", ActiveState: "active", SubState: "running", Healthy: true,
				Addresses: []string{"10.233.1.2"}, MemoryBytes: uint64(100+i) << 20, MemoryMaxBytes: 1 << 30, MemoryPercent: 10,
				CPUUsageSeconds: float64(1000 - 30*i), Interfaces: []string{"ve-web"}, NetRXBytes: uint64(1e6 - 3e4*i), NetTXBytes: uint64(2e6 - 6e4*i),
				StateDir: "/var/lib/nixos-containers/web", DiskBytes: 4 << 30, UptimeSeconds: 86400,
				SharedSizes:   []events.GuestPath{{Path: "/var/lib/web-data", Bytes: 2 << 30}},
				StateDirBytes: map[string]uint64{"/var/lib/postgresql": 3 << 20, "/var/lib/nginx": 1 << 10}},
			{Name: "db", Type: "microvm", Unit: "microvm@db.service", ActiveState: "failed", SubState: "failed", Restarts: 7, Hypervisor: "cloud-hypervisor"},
		} {
			e, err := events.New(k, "host0000", "guest", at, g, events.WithSubject(g.Name))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := events.Encode(e)
			seq++
			subj := events.HostSubject("host0000", "guest", g.Name)
			ts.store.add(events.StreamHosts, Stored{Subject: subj, Seq: seq, Time: at, Event: e, Kind: k})
			p.Apply(projections.Input{Stream: projections.StreamHosts, Seq: seq, Subject: subj, Data: b})
		}
	}
	recs, err := p.Flush()
	if err != nil {
		t.Fatal(err)
	}
	for key, v := range recs {
		ts.store.put(BucketGuests, key, v)
	}
	decl := events.FleetDeclared{Flake: "path:/infra", Hosts: []events.DeclaredHost{{Name: "host0000",
		StateDirs: map[string][]string{"shop.service": {"/srv/shop"}, "backup.service": {"/var/lib/backup"}},
		Domains:   []events.DeclaredDomain{{Name: "shop.example.org", URL: "https://shop.example.org", Server: "nginx", Upstreams: []string{"http://10.233.1.2:8080"}}},
		Guests: []events.DeclaredGuest{{Name: "mail", Type: "microvm", Services: []string{"postfix.service"}, Domains: []events.DeclaredDomain{}},
			{Name: "web", Type: "container", Services: []string{"postgresql.service"}, Domains: []events.DeclaredDomain{},
				StateDirs: map[string][]string{"postgresql.service": {"/var/lib/postgresql"}}}}}}}
	// A watched path that is a declared service's state directory.
	pu, _ := json.Marshal(events.PathUsage{Path: "/srv/shop", DiskBytes: 5 << 20, Files: 3, Complete: true, Verdict: "ok"})
	dr, _ := json.Marshal(projections.Drive{Host: "host0000", Kind: "path", Object: "/srv/shop", Verdict: "ok", Time: testNow, Data: pu})
	ts.store.put(events.BucketDrives, projections.DriveKey("host0000", "path", "/srv/shop"), dr)
	fk, _ := events.Lookup("fleet.declared")
	e, err := events.New(fk, "cli", "fleet.declared", testNow, &decl)
	if err != nil {
		t.Fatal(err)
	}
	ts.store.add(events.StreamFleet, Stored{Subject: "pinkie.fleet.declared", Seq: 2, Time: testNow, Event: e, Kind: fk})
}

func TestGuestPages(t *testing.T) {
	ts := newTestServer(t, false, 3)
	addGuests(t, ts)
	rd, _ := ts.session(t, roleReader)
	for _, tc := range []struct {
		path   string
		status int
		says   []string
	}{
		{"/guests", 200, []string{`data-guest="web" data-status="running"`, `data-guest="db" data-status="failed"`, `data-guest="mail" data-status="missing"`,
			"shop.example.org", "10.233.1.2", "of 1.0 GiB", "/var/lib/web-data", "2 not running", `data-topics="guests fleet"`,
			"10.0%" /* CPU: 30 s per 5 min */, "100 B/s" /* 30 kB per 5 min */}},
		{"/guests/host0000/web", 200, []string{"Memory", "CPU (% of one core)", "Network", "Disk (state directory)", "<polyline", "shop.example.org", "ve-web", "24h00m"}},
		{"/guests/host0000/mail", 200, []string{"missing", "postfix.service"}},
		{"/guests/host0000/web", 200, []string{`<tr data-service="postgresql.service"><td><code>postgresql.service</code></td><td><code>/var/lib/postgresql</code> </td><td>3.0 MiB</td>`}},
		{"/hosts/host0000", 200, []string{`href="/guests/host0000/web"`, `<span class="badge failing">failed</span>`,
			`<tr data-service="shop.service"><td><code>shop.service</code></td><td><code>/srv/shop</code> </td><td>5.0 MiB</td>`,
			`<tr data-service="backup.service"><td><code>backup.service</code></td><td><code>/var/lib/backup</code> </td><td><span class="muted">not measured`}},
		{"/guests/host0000/nope", 404, []string{"no guest"}},
		{"/guests/bad.host/web", 400, []string{"invalid host name"}},
	} {
		w := ts.do("GET", tc.path, nil, nil, rd)
		if w.Code != tc.status {
			t.Errorf("GET %s: %d, want %d: %s", tc.path, w.Code, tc.status, w.Body)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(w.Body.String(), s) {
				t.Errorf("GET %s does not say %q", tc.path, s)
			}
		}
	}
	w := ts.do("GET", "/api/guests?host=host0000", nil, nil, rd)
	var gs []fleetview.GuestView
	if err := json.Unmarshal(w.Body.Bytes(), &gs); err != nil || w.Code != http.StatusOK || len(gs) != 3 {
		t.Fatalf("/api/guests: %d %v %s", w.Code, err, w.Body)
	}
	if g := gs[2]; g.Name != "web" || g.Status != "running" || g.CPUPercent == nil || *g.CPUPercent != 10 || strings.Join(g.Domains, ",") != "shop.example.org" {
		t.Errorf("/api/guests web: %+v", g)
	}
	w = ts.do("GET", "/api/guests/host0000/web", nil, nil, rd)
	var one struct {
		Name   string     `json:"name"`
		Series []plotJSON `json:"series"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &one); err != nil || one.Name != "web" || len(one.Series) != 4 {
		t.Errorf("/api/guests/host0000/web: %v %+v", err, one)
	}
}
