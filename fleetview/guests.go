package fleetview

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
)

// GuestStale is the age after which a guest's latest report is old: the
// guest producer reports every 5 minutes.
const GuestStale = 15 * time.Minute

// GuestView is one container or MicroVM as `pinkie guests --json` and
// GET /api/guests show it: the guests projection's record, the domains
// routed to it and what the fleet declares about it.
type GuestView struct {
	projections.GuestRecord
	// Status is the record's, or "missing" for a guest the fleet declares
	// that never reported.
	Status string `json:"status"`
	// Domains are the declared domains routed to the guest: served by its
	// own web server, or proxied to one of its addresses by its host's.
	Domains []string `json:"domains"`
	// Declared is true when the fleet declaration lists the guest;
	// DeclaredServices are the units its configuration runs.
	Declared         bool     `json:"declared"`
	DeclaredServices []string `json:"declared_services,omitempty"`
	// ServiceDisk is the disk its declared services' state directories
	// use (a container's, from its /var/lib as the agent measured it).
	ServiceDisk []ServiceDisk `json:"service_disk,omitempty"`
	// AgeSeconds is the age of the latest report; Stale past GuestStale.
	AgeSeconds float64 `json:"age_seconds"`
	Stale      bool    `json:"stale"`
}

// Down reports whether the guest is not running (failed, restarting,
// stopped, unknown, or declared and never seen).
func (g GuestView) Down() bool { return g.Status != "running" }

// GuestsDown names the guests that are down, as HOST/NAME STATUS.
func GuestsDown(gs []GuestView) []string {
	var down []string
	for _, g := range gs {
		if g.Down() {
			down = append(down, g.Host+"/"+g.Name+" "+g.Status)
		}
	}
	return down
}

// Guests builds the fleet's guests from pinkie-guests records and the
// fleet declaration (nil when none was synced), sorted by host and name.
// With host set, only that host's.
func Guests(recs map[string][]byte, decl *events.FleetDeclared, host string, now time.Time) ([]GuestView, error) {
	out := []GuestView{}
	seen := map[string]bool{}
	declared := map[string]*events.DeclaredGuest{}
	hosts := map[string]*events.DeclaredHost{}
	if decl != nil {
		for i := range decl.Hosts {
			h := &decl.Hosts[i]
			hosts[h.Name] = h
			for j := range h.Guests {
				declared[h.Name+"\x00"+h.Guests[j].Name] = &h.Guests[j]
			}
		}
	}
	for k, v := range recs {
		if k == projections.CheckpointKey {
			continue
		}
		var r projections.GuestRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("%s %s: %w", projections.GuestsBucket, k, err)
		}
		if host != "" && r.Host != host {
			continue
		}
		g := GuestView{GuestRecord: r, Status: r.Status, Domains: []string{}}
		g.AgeSeconds = now.Sub(r.Time).Seconds()
		g.Stale = now.Sub(r.Time) > GuestStale
		id := r.Host + "\x00" + r.Name
		seen[id] = true
		guestDeclared(&g, declared[id], hosts[r.Host], r.Guest.Addresses)
		out = append(out, g)
	}
	for id, d := range declared {
		h, _, _ := strings.Cut(id, "\x00")
		if seen[id] || (host != "" && h != host) {
			continue
		}
		g := GuestView{GuestRecord: projections.GuestRecord{Host: h, Name: d.Name, Guest: events.Guest{Name: d.Name, Type: d.Type, Addresses: d.Addresses}},
			Status: "missing", Domains: []string{}}
		guestDeclared(&g, d, hosts[h], d.Addresses)
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Host != out[j].Host {
			return out[i].Host < out[j].Host
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// guestDeclared adds what the declaration says: the guest's own domains
// and services, and its host's domains that proxy to one of addrs or to
// the guest's name.
func guestDeclared(g *GuestView, d *events.DeclaredGuest, h *events.DeclaredHost, addrs []string) {
	domains := map[string]bool{}
	if d != nil {
		g.Declared = true
		g.DeclaredServices = d.Services
		g.ServiceDisk = ServiceDisks(d.StateDirs, g.Guest.StateDirBytes)
		for _, dom := range d.Domains {
			domains[dom.Name] = true
		}
		addrs = append(append([]string{}, addrs...), d.Addresses...)
	}
	if h != nil {
		targets := map[string]bool{g.Name: true}
		for _, a := range addrs {
			if ip, _, err := net.ParseCIDR(a); err == nil {
				a = ip.String()
			}
			targets[a] = true
		}
		for _, dom := range h.Domains {
			for _, u := range dom.Upstreams {
				if targets[UpstreamHost(u)] {
					domains[dom.Name] = true
				}
			}
		}
	}
	g.Domains = sortedSet(domains)
}

// UpstreamHost is the host of a proxy target: "http://10.0.0.5:8080/x",
// "10.0.0.5:8080", "[fc00::2]:80" and "unix:/run/x.sock" (none).
func UpstreamHost(u string) string {
	if strings.HasPrefix(u, "unix:") {
		return ""
	}
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Hostname()
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ServiceDisk is a service and the disk its state directories use.
type ServiceDisk struct {
	Service string   `json:"service"`
	Dirs    []string `json:"dirs"`
	// Bytes adds up the directories measured; Measured says whether any
	// was (a directory nobody measures has no size).
	Bytes    uint64 `json:"bytes"`
	Measured bool   `json:"measured"`
}

// ServiceDisks joins services' state directories (the fleet
// declaration's state_dirs) with measured sizes by directory, largest
// first, then by name.
func ServiceDisks(stateDirs map[string][]string, sizes map[string]uint64) []ServiceDisk {
	out := []ServiceDisk{}
	for svc, dirs := range stateDirs {
		sd := ServiceDisk{Service: svc, Dirs: dirs}
		for _, d := range dirs {
			if n, ok := sizes[d]; ok {
				sd.Bytes += n
				sd.Measured = true
			}
		}
		out = append(out, sd)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Bytes != out[j].Bytes {
			return out[i].Bytes > out[j].Bytes
		}
		return out[i].Service < out[j].Service
	})
	return out
}
