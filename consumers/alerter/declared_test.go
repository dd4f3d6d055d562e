package alerter

import (
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// declare sends a fleet declaration as the FLEET stream stores it.
func declare(services map[string][]string) func(h *harness, at time.Time) []Output {
	return func(h *harness, at time.Time) []Output {
		h.t.Helper()
		d := events.FleetDeclared{Flake: "path:/fleet"}
		for _, host := range []string{"goliath", "koishi"} {
			if s, ok := services[host]; ok {
				d.Hosts = append(d.Hosts, events.DeclaredHost{Name: host, Services: s})
			}
		}
		return applyDeclared(h, at, d)
	}
}

// applyDeclared feeds the engine a fleet declaration.
func applyDeclared(h *harness, at time.Time, d events.FleetDeclared) []Output {
	h.t.Helper()
	k, _ := events.Lookup(fleetKind)
	ev, err := events.New(k, "laptop", "fleet", at, &d)
	if err != nil {
		h.t.Fatal(err)
	}
	h.fleetSeq++
	return h.e.Apply(h.stored("FLEET", h.fleetSeq, events.FleetDeclaredSubject, ev, at))
}

func units(watched ...events.UnitState) events.Systemd {
	return events.Systemd{Source: "dbus", SystemState: "running", Failed: []events.UnitState{}, Watched: watched}
}

func unit(name, load, active string) events.UnitState {
	return events.UnitState{Name: name, LoadState: load, ActiveState: active}
}

// TestServiceDown: a declared unit the agent reports missing, failed or
// inactive fires service.down with the unit's name; an active one, one
// the agent does not watch, or one no longer declared does not; a new
// declaration is judged against the latest report at once.
func TestServiceDown(t *testing.T) {
	runSteps(t, Config{}, []step{
		{at: 0, send: send("systemd", "", units(unit("nginx.service", "loaded", "active"), unit("shop.service", "not-found", "inactive")))},
		{at: time.Minute, send: declare(map[string][]string{"goliath": {"nginx.service", "shop.service", "backup.timer"}}),
			want: []string{"firing started warning goliath service.down shop.service"}},
		{at: 2 * time.Minute, send: send("systemd", "", events.Systemd{Source: "dbus", Failed: []events.UnitState{unit("nginx.service", "loaded", "failed")},
			Watched: []events.UnitState{unit("nginx.service", "loaded", "failed"), unit("shop.service", "loaded", "active")}}),
			want: []string{"firing started critical goliath service.down nginx.service", "resolved resolved warning goliath service.down shop.service",
				"firing started warning goliath systemd.failed nginx.service"}},
		// Declared elsewhere only: goliath's services are no longer declared.
		{at: 3 * time.Minute, send: declare(map[string][]string{"koishi": {"sshd.service"}}),
			want: []string{"resolved resolved critical goliath service.down nginx.service"}},
		{at: 4 * time.Minute, send: send("systemd", "", units(unit("nginx.service", "loaded", "inactive"))),
			want: []string{"resolved resolved warning goliath systemd.failed nginx.service"}},
		{at: 5 * time.Minute, send: declare(map[string][]string{"goliath": {"nginx.service"}}),
			want: []string{"firing started warning goliath service.down nginx.service"}},
		{at: 6 * time.Minute, send: send("systemd", "", units(unit("nginx.service", "loaded", "active"))),
			want: []string{"resolved resolved warning goliath service.down nginx.service"}},
	})
}

// declareGuests sends a fleet declaration of goliath with services inside
// its guests.
func declareGuests(guests ...events.DeclaredGuest) func(h *harness, at time.Time) []Output {
	return func(h *harness, at time.Time) []Output {
		h.t.Helper()
		return applyDeclared(h, at, events.FleetDeclared{Flake: "path:/fleet",
			Hosts: []events.DeclaredHost{{Name: "goliath", Services: []string{"pinkie-agent.service"}, Guests: guests}}})
	}
}

// TestServiceDownInContainer: units declared inside a NixOS container are
// judged from the container's own manager (the systemd report's guests,
// systemctl -M) as GUEST/UNIT: failed is critical, missing a warning; while
// the container is unreachable its units are unwatched (guest.down says
// why), so their alerts resolve; a MicroVM's units (not machined's) are
// not judged.
func TestServiceDownInContainer(t *testing.T) {
	web := events.DeclaredGuest{Name: "web", Type: "container", Services: []string{"nginx.service", "shop.service"}}
	db := events.DeclaredGuest{Name: "db", Type: "microvm", Services: []string{"postgresql.service"}}
	report := func(g ...events.GuestUnits) events.Systemd {
		s := units(unit("pinkie-agent.service", "loaded", "active"))
		s.Guests = g
		return s
	}
	reached := events.GuestUnits{Machine: "web", State: "degraded", Failed: []events.UnitState{unit("nginx.service", "loaded", "failed")},
		Watched: []events.UnitState{unit("nginx.service", "loaded", "failed"), unit("shop.service", "not-found", "inactive")}}
	runSteps(t, Config{}, []step{
		{at: 0, send: send("systemd", "", report(reached))},
		{at: time.Minute, send: declareGuests(web, db),
			want: []string{"firing started critical goliath service.down web/nginx.service", "firing started warning goliath service.down web/shop.service"}},
		{at: 2 * time.Minute, send: send("systemd", "", report(events.GuestUnits{Machine: "web", State: events.GuestUnitsUnreachable, Failed: []events.UnitState{}})),
			want: []string{"resolved resolved critical goliath service.down web/nginx.service", "resolved resolved warning goliath service.down web/shop.service"}},
		{at: 3 * time.Minute, send: send("systemd", "", report(events.GuestUnits{Machine: "web", State: "running", Failed: []events.UnitState{},
			Watched: []events.UnitState{unit("nginx.service", "loaded", "active"), unit("shop.service", "loaded", "inactive")}})),
			want: []string{"firing started warning goliath service.down web/shop.service"}},
	})
}

// TestHTTPCheckRules: a domain down for 5 minutes is critical; a
// certificate near its expiry warns, then is critical, and resolves with
// hysteresis once renewed.
func TestHTTPCheckRules(t *testing.T) {
	days := func(d float64) *float64 { return &d }
	check := func(ok bool, status int, left *float64) func(h *harness, at time.Time) []Output {
		return send("httpcheck", "https://shop.example.org", events.HTTPCheck{URL: "https://shop.example.org", OK: ok, StatusCode: status, DurationMS: 12, TLSDaysLeft: left})
	}
	runSteps(t, Config{}, []step{
		{at: 0, send: check(true, 200, days(30))},
		{at: time.Minute, send: check(false, 502, days(30))},
		{at: 7 * time.Minute, send: check(false, 502, days(30)), want: []string{"firing started critical goliath http.down https://shop.example.org"}},
		{at: 8 * time.Minute, send: check(true, 200, days(10)),
			want: []string{"resolved resolved critical goliath http.down https://shop.example.org", "firing started warning goliath tls.expiry https://shop.example.org"}},
		{at: 9 * time.Minute, send: check(true, 200, days(2)), want: []string{"firing escalated critical goliath tls.expiry https://shop.example.org"}},
		{at: 10 * time.Minute, send: check(true, 200, days(89)), want: []string{"resolved resolved critical goliath tls.expiry https://shop.example.org"}},
		{at: 11 * time.Minute, send: check(true, 200, nil)},
	})
}
