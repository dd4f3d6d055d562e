package alerter

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// Declared services: the fleet declaration (pinkie.fleet.declared, from
// `pinkie fleet sync`) says which units each host should run; the host's
// systemd events say what runs. derive gives systemd rules a "declared"
// list, one element per declared unit:
//
//	{name, state, load_state, active_state, sub_state}
//
// state is the unit's active state ("active", "failed", "inactive",
// "activating"…), "missing" when systemd does not know the unit, or
// "unwatched" when the agent does not report it (its systemd producer is
// not told to watch it: the NixOS module watches the declared services).
//
// Units declared inside a host's NixOS containers are named GUEST/UNIT
// ("web/nginx.service") and carry guest; the agent reads them through
// machined (the systemd report's guests). While a container is not running
// its units are unwatched: guest.down is the alert for that.

// fleetKind is the kind of a fleet declaration.
const fleetKind = "fleet.declared"

// applyFleet keeps each host's declared services and re-evaluates the
// systemd rules of the hosts whose declaration changed against their
// latest systemd report.
func (e *Engine) applyFleet(p parsed, in events.Stored) []Output {
	var decl events.FleetDeclared
	if json.Unmarshal(p.ev.Data(), &decl) != nil {
		return nil
	}
	now := in.At
	declared := map[string][]string{}
	for _, h := range decl.Hosts {
		if events.ValidHost(h.Name) != nil {
			continue
		}
		units := append([]string{}, h.Services...)
		for _, g := range h.Guests {
			if g.Type != "container" || events.ValidHost(g.Name) != nil {
				continue
			}
			for _, u := range g.Services {
				units = append(units, guestUnit(g.Name, u))
			}
		}
		sort.Strings(units)
		declared[h.Name] = units
	}
	names := make([]string, 0, len(e.hosts)+len(declared))
	for h := range e.hosts {
		names = append(names, h)
	}
	for h := range declared {
		if _, ok := e.hosts[h]; !ok {
			names = append(names, h)
		}
	}
	sort.Strings(names)
	var out []Output
	for _, h := range names {
		units, isDeclared := declared[h]
		hs := e.hosts[h]
		if hs == nil && !isDeclared {
			continue
		}
		if hs == nil {
			hs = e.host(h)
		}
		if in.Stream != "" && in.Seq > 0 {
			if hs.Seq[in.Stream] >= in.Seq {
				continue
			}
			hs.Seq[in.Stream] = in.Seq
		}
		e.dirty[h] = true
		if equalStrings(hs.Declared, units) {
			continue
		}
		hs.Declared = units
		rec := hs.Records[systemdRecord]
		if rec == nil {
			continue
		}
		env := map[string]any{}
		_ = json.Unmarshal(rec.Data, &env)
		env["host"], env["object"], env["kind"] = h, "", "systemd"
		env["declared"] = declaredUnits(hs.Declared, env)
		for _, r := range e.byKind["systemd"] {
			if r.Each == "declared" {
				out = append(out, e.evalRule(h, hs, r, "", env, now, p.ev.ID(), p.ev.Type())...)
			}
		}
	}
	return out
}

// systemdRecord is where a host's latest systemd report is kept.
const systemdRecord = "systemd|"

// keepSystemd stores a host's latest systemd report, so a new declaration
// can be judged without waiting for the next one.
func keepSystemd(hs *hostState, t time.Time, data map[string]any) {
	if hs.Records == nil {
		hs.Records = map[string]*record{}
	}
	b, _ := json.Marshal(data)
	hs.Records[systemdRecord] = &record{Kind: "systemd", Time: t, Data: b}
}

// guestUnit names a unit inside a container: GUEST/UNIT.
func guestUnit(guest, unit string) string { return guest + "/" + unit }

// declaredUnits is the "declared" list of a systemd report's environment.
func declaredUnits(declared []string, env map[string]any) []any {
	seen := map[string]map[string]any{}
	see := func(report map[string]any, prefix string) {
		for _, list := range []string{"watched", "failed"} {
			items, _ := report[list].([]any)
			for _, it := range items {
				if u, ok := it.(map[string]any); ok {
					if n, _ := u["name"].(string); n != "" {
						seen[prefix+n] = u
					}
				}
			}
		}
	}
	see(env, "")
	guests, _ := env["guests"].([]any)
	for _, it := range guests {
		g, _ := it.(map[string]any)
		m, _ := g["machine"].(string)
		if m != "" && g["state"] != events.GuestUnitsUnreachable {
			see(g, guestUnit(m, ""))
		}
	}
	out := make([]any, 0, len(declared))
	for _, name := range declared {
		d := map[string]any{"name": name, "state": "unwatched"}
		if guest, _, ok := strings.Cut(name, "/"); ok {
			d["guest"] = guest
		}
		if u := seen[name]; u != nil {
			d["load_state"], d["active_state"], d["sub_state"] = u["load_state"], u["active_state"], u["sub_state"]
			d["state"] = u["active_state"]
			if u["load_state"] == "not-found" {
				d["state"] = "missing"
			}
		}
		out = append(out, d)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
