package tests

// The guests panel end to end: a real agent on the fixture host (a NixOS
// container and a MicroVM with their cgroups, units and links) reports its
// guests to a real hub; the guests projection folds them; `pinkie guests`
// and the dashboard (in a real chromium) show them with the domains the
// declared fleet routes to them.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/streams"
)

// declareGuests publishes a fleet where goliath's nginx proxies
// shop.example.org to the container's address, plus extra guests.
func declareGuests(t *testing.T, f *fleet, extra ...events.DeclaredGuest) {
	t.Helper()
	d := events.FleetDeclared{Flake: "path:/test-fleet", Hosts: []events.DeclaredHost{{Name: "goliath",
		Deployment: events.DeclaredDeployment{Tags: []string{}, Goal: "switch", HealthChecks: []string{}}, Roles: []string{"agent"}, Services: []string{"nginx.service"},
		Domains: []events.DeclaredDomain{{Name: "shop.example.org", URL: "https://shop.example.org", Server: "nginx", Upstreams: []string{"http://10.233.1.2:8080"}}},
		Guests:  extra}}}
	publishDeclared(t, f, d)
}

func fixtureUint(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGuestsFromRealAgent(t *testing.T) {
	root, config := fixtureHost(t)
	f := newFleet(t, "goliath")
	hub := f.startHub()
	f.startAgent("goliath", t.TempDir(), "", "--root", root, "--replay-commands", filepath.Join(root, "_commands"), "--config", config)
	declareGuests(t, f)
	reader := []string{"--server", f.natsURL(), "--nkey", streams.ReaderSeedFile(f.auth)}

	// What the fixture holds, read independently of the producer.
	cg := filepath.Join(root, "sys", "fs", "cgroup", "system.slice")
	wantWebMem := fixtureUint(t, filepath.Join(cg, "system-container.slice", "container@web.service", "memory.current"))
	wantDBMax := fixtureUint(t, filepath.Join(cg, "system-microvm.slice", "microvm@db.service", "memory.max"))
	wantDBRX := fixtureUint(t, filepath.Join(root, "sys", "class", "net", "vm-db", "statistics", "tx_bytes"))

	var gs []fleetview.GuestView
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, code := runPinkie(t, append([]string{"guests", "--json"}, reader...)...)
		gs = nil
		if code == 0 && json.Unmarshal([]byte(out), &gs) == nil && len(gs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pinkie guests --json did not list the two guests within 90s (exit %d):\n%s", code, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	db, web := gs[0], gs[1]
	if db.Name != "db" || db.Status != "running" || db.Guest.MemoryMaxBytes != wantDBMax || db.Guest.NetRXBytes != wantDBRX || db.Guest.Type != "microvm" {
		t.Errorf("db: %+v", db)
	}
	if web.Name != "web" || web.Status != "running" || web.Guest.MemoryBytes != wantWebMem || strings.Join(web.Domains, ",") != "shop.example.org" ||
		web.Guest.UptimeSeconds != 3600 || len(web.Guest.SharedSizes) != 2 {
		t.Errorf("web: %+v", web)
	}
	out, code := runPinkie(t, append([]string{"guests", "goliath"}, reader...)...)
	if code != 0 || !strings.Contains(out, "shop.example.org") || !strings.Contains(out, "10.233.1.2") || !strings.Contains(out, "running") {
		t.Errorf("pinkie guests goliath: exit %d\n%s", code, out)
	}

	t.Run("a declared guest that never reports is down: exit 1", func(t *testing.T) {
		declareGuests(t, f, events.DeclaredGuest{Name: "mail", Type: "microvm", Services: []string{"postfix.service"}, Domains: []events.DeclaredDomain{}})
		var out string
		var code int
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if out, code = runPinkie(t, append([]string{"guests"}, reader...)...); code == 1 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code != 1 || !strings.Contains(out, "goliath/mail missing") {
			t.Errorf("pinkie guests: exit %d, want 1 naming goliath/mail:\n%s", code, out)
		}
	})
	t.Run("usage errors: exit 2", func(t *testing.T) {
		for _, args := range [][]string{{"guests", "bad.host"}, {"guests", "a", "b"}} {
			if out, code := runPinkie(t, append(args, reader...)...); code != 2 || !strings.Contains(out, "guests") {
				t.Errorf("pinkie %v: exit %d, want 2:\n%s", args, code, out)
			}
		}
	})
	t.Run("the guests page in chromium", func(t *testing.T) {
		if testing.Short() {
			t.Skip("browser test")
		}
		ctx := newBrowser(t)
		run(t, ctx, 30*time.Second, "local login", chromedp.Navigate(localLink(t, hub)), chromedp.WaitVisible(chromedp.CSS(`h1`)))
		run(t, ctx, 30*time.Second, "open guests", chromedp.Navigate(f.httpURL()+"/guests"),
			chromedp.WaitVisible(chromedp.CSS(`tr.guest[data-guest="web"][data-status="running"]`)))
		row := value(t, ctx, 10*time.Second, "web's row", chromedp.Text(chromedp.CSS(`tr.guest[data-guest="web"]`)))
		for _, want := range []string{"container", "10.233.1.2", "shop.example.org", "/var/lib/nixos-containers/web", "/var/lib/web-data", "1h00m"} {
			if !strings.Contains(row, want) {
				t.Errorf("web's row lacks %q: %q", want, row)
			}
		}
		out, _ := runPinkie(t, append([]string{"guests", "--json"}, reader...)...)
		var now []fleetview.GuestView
		// (stdout and stderr together: the JSON first, then why it exits 1)
		if err := json.NewDecoder(strings.NewReader(out)).Decode(&now); err != nil {
			t.Fatalf("pinkie guests --json: %v\n%s", err, out)
		}
		if n := value(t, ctx, 5*time.Second, "rows", chromedp.Evaluate[int](`document.querySelectorAll("tr.guest").length`)); n != len(now) {
			t.Errorf("%d guest rows, want one per guest of pinkie guests (%d)", n, len(now))
		}
		run(t, ctx, 30*time.Second, "open web", chromedp.Click(chromedp.CSS(`tr.guest[data-guest="web"] a`)), chromedp.WaitVisible(chromedp.CSS(`#guest`)))
		detail := value(t, ctx, 10*time.Second, "web's page", chromedp.Text(chromedp.CSS(`#guest`)))
		if !strings.Contains(detail, "Memory") || !strings.Contains(detail, "shop.example.org") {
			t.Errorf("web's page: %q", detail)
		}
		screenshot(t, ctx, screenshotDir(t), "guests")
	})
}

// TestServiceDownFromRealAgent: the agent on the fixture host watches the
// units the NixOS module would give it (nginx.service, and nope.service,
// which systemd does not know); once the fleet declares them, the hub's
// alerter fires service.down for the missing one, naming it, and nothing
// for the running one; when the declaration drops it, the alert resolves.
func TestServiceDownFromRealAgent(t *testing.T) {
	root, _ := fixtureHost(t)
	config := filepath.Join(t.TempDir(), "agent.json")
	writeFile(t, config, `{"producers": {"systemd": {"units": ["nginx.service", "nope.service"], "dbus": false}}}`)
	f := newFleet(t, "goliath")
	f.startHub()
	f.startAgent("goliath", t.TempDir(), "", "--root", root, "--replay-commands", filepath.Join(root, "_commands"), "--config", config,
		"--producers", "heartbeat,systemd")
	rd := []string{"--server", f.natsURL(), "--nkey", streams.ReaderSeedFile(f.auth)}
	declare := func(services ...string) {
		publishDeclared(t, f, events.FleetDeclared{Flake: "path:/test-fleet", Hosts: []events.DeclaredHost{{Name: "goliath",
			Deployment: events.DeclaredDeployment{Tags: []string{}, Goal: "switch", HealthChecks: []string{}}, Roles: []string{"agent"},
			Services: services, Domains: []events.DeclaredDomain{}}}})
	}
	down := func(as []events.Alert) []string { return alertObjects(as, "service.down") }
	declare("nginx.service", "nope.service")
	as := waitAlerts(t, rd, "service.down for nope.service", func(as []events.Alert) bool { return len(down(as)) > 0 })
	if got := down(as); len(got) != 1 || got[0] != "nope.service" {
		t.Errorf("service.down fires for %v, want nope.service only", got)
	}
	for _, a := range as {
		if a.Rule == "service.down" && (!strings.Contains(a.Summary, "nope.service is missing") || a.Severity != events.SeverityWarning) {
			t.Errorf("service.down: %+v", a)
		}
	}
	declare("nginx.service")
	waitAlerts(t, rd, "service.down resolved once nope.service is no longer declared", func(as []events.Alert) bool { return as != nil && len(down(as)) == 0 })
}

// alertObjects lists the objects of the firing alerts of one rule.
func alertObjects(as []events.Alert, rule string) []string {
	var objs []string
	for _, a := range as {
		if a.Rule == rule {
			objs = append(objs, a.Object)
		}
	}
	sort.Strings(objs)
	return objs
}

// waitAlerts polls `pinkie alerts --json` (with the reader's flags rd)
// until ok holds of the firing alerts, for at most 60 s.
func waitAlerts(t *testing.T, rd []string, what string, ok func([]events.Alert) bool) []events.Alert {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := runPinkie(t, append([]string{"alerts", "--json"}, rd...)...)
		var as []events.Alert
		_ = json.NewDecoder(strings.NewReader(out)).Decode(&as)
		if ok(as) {
			return as
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60s:\n%s", what, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestGuestServiceDownFromRealAgent: a real agent's systemd producer reads
// the units inside the NixOS container web with systemctl -M (replayed
// with --replay-commands from recordings of what machined would answer:
// no container runs here) and the hub fires service.down for the ones the
// fleet declares inside it: web/nginx.service failed (critical),
// web/shop.service missing (warning). The MicroVM db's units are not
// judged (machined does not know MicroVMs); once the guest's services are
// no longer declared, the alerts resolve.
func TestGuestServiceDownFromRealAgent(t *testing.T) {
	root, _ := fixtureHost(t)
	config := filepath.Join(t.TempDir(), "agent.json")
	writeFile(t, config, `{"producers": {"systemd": {"units": ["nginx.service", "nope.service"], "dbus": false,
	  "machines": {"web": ["nginx.service", "shop.service"]}}}}`)
	f := newFleet(t, "goliath")
	f.startHub()
	f.startAgent("goliath", t.TempDir(), "", "--root", root, "--replay-commands", filepath.Join(root, "_commands"), "--config", config,
		"--producers", "heartbeat,systemd")
	rd := []string{"--server", f.natsURL(), "--nkey", streams.ReaderSeedFile(f.auth)}
	declare := func(guests ...events.DeclaredGuest) {
		publishDeclared(t, f, events.FleetDeclared{Flake: "path:/test-fleet", Hosts: []events.DeclaredHost{{Name: "goliath",
			Deployment: events.DeclaredDeployment{Tags: []string{}, Goal: "switch", HealthChecks: []string{}}, Roles: []string{"agent"},
			Services: []string{"nginx.service"}, Domains: []events.DeclaredDomain{}, Guests: guests}}})
	}
	down := func(as []events.Alert) []string { return alertObjects(as, "service.down") }
	declare(events.DeclaredGuest{Name: "web", Type: "container", Services: []string{"nginx.service", "shop.service"}, Domains: []events.DeclaredDomain{}},
		events.DeclaredGuest{Name: "db", Type: "microvm", Services: []string{"postgresql.service"}, Domains: []events.DeclaredDomain{}})
	as := waitAlerts(t, rd, "service.down for web's units", func(as []events.Alert) bool { return len(down(as)) >= 2 })
	if got := down(as); strings.Join(got, ",") != "web/nginx.service,web/shop.service" {
		t.Errorf("service.down fires for %v, want web/nginx.service and web/shop.service", got)
	}
	for _, a := range as {
		if a.Rule != "service.down" {
			continue
		}
		want := map[string]struct{ severity, says string }{
			"web/nginx.service": {events.SeverityCritical, "web/nginx.service is failed"},
			"web/shop.service":  {events.SeverityWarning, "web/shop.service is missing"},
		}[a.Object]
		if a.Severity != want.severity || !strings.Contains(a.Summary, want.says) {
			t.Errorf("service.down %s: %s %q, want %s saying %q", a.Object, a.Severity, a.Summary, want.severity, want.says)
		}
	}
	declare()
	waitAlerts(t, rd, "service.down resolved once web's units are no longer declared", func(as []events.Alert) bool { return as != nil && len(down(as)) == 0 })
}
