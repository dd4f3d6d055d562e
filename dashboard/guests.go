package dashboard

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
)

// BucketGuests is the guests projection's bucket.
const BucketGuests = projections.GuestsBucket

// guestHost is one host's guests on the guests page.
type guestHost struct {
	Host   string
	Guests []fleetview.GuestView
	Down   int
}

// guestsData is the guests page: every host's containers and MicroVMs.
type guestsData struct {
	Hosts  []guestHost
	Total  int
	Down   int
	Newest time.Time
}

// guests reads the fleet's guests (of one host, when host is set).
func (s *Server) guests(ctx context.Context, host string) ([]fleetview.GuestView, error) {
	if host != "" {
		if err := events.ValidHost(host); err != nil {
			return nil, httpError{http.StatusBadRequest, err.Error()}
		}
	}
	prefix := ""
	if host != "" {
		prefix = host + "."
	}
	recs, err := s.o.Store.Bucket(ctx, BucketGuests, prefix)
	if err != nil {
		return nil, err
	}
	decl, err := s.readFleet(ctx)
	if err != nil {
		return nil, err
	}
	return fleetview.Guests(recs, decl, host, s.o.Now())
}

func (s *Server) guestsPage(w http.ResponseWriter, r *http.Request, sess *Session) error {
	all, err := s.guests(r.Context(), "")
	if err != nil {
		return err
	}
	d := guestsData{Total: len(all)}
	for _, g := range all {
		if len(d.Hosts) == 0 || d.Hosts[len(d.Hosts)-1].Host != g.Host {
			d.Hosts = append(d.Hosts, guestHost{Host: g.Host})
		}
		h := &d.Hosts[len(d.Hosts)-1]
		h.Guests = append(h.Guests, g)
		if g.Down() {
			h.Down++
			d.Down++
		}
		if g.Time.After(d.Newest) {
			d.Newest = g.Time
		}
	}
	s.render(w, r, http.StatusOK, "guests.html", page{Title: "Guests", Nav: "guests", Session: sess, Topics: "guests fleet", Newest: d.Newest, Data: d})
	return nil
}

// guestDetail is the guest page: the guest and its history.
type guestDetail struct {
	G      fleetview.GuestView
	Plots  []plot
	Alerts []projections.ActiveAlert
}

func (s *Server) guestDetail(ctx context.Context, host, name string) (*guestDetail, error) {
	all, err := s.guests(ctx, host)
	if err != nil {
		return nil, err
	}
	gd := &guestDetail{}
	found := false
	for _, g := range all {
		if g.Name == name {
			gd.G, found = g, true
		}
	}
	if !found {
		return nil, notFound("no guest %q on host %q: it neither reported nor is declared", name, host)
	}
	now := s.o.Now()
	since := now.Add(-7 * 24 * time.Hour)
	ms, err := s.o.Store.History(ctx, events.StreamHosts, []string{events.HostSubject(host, "guest", name)}, since, maxPlotEvents)
	if err != nil {
		return nil, err
	}
	gd.Plots = guestPlots(ms, now, since)
	arec, err := s.o.Store.Bucket(ctx, events.BucketAlerts, "alert."+host+".")
	if err != nil {
		return nil, err
	}
	alerts, _, err := fleetview.Alerts(arec, now)
	if err != nil {
		return nil, err
	}
	for _, a := range alerts {
		if a.Object == name && len(a.Rule) > 6 && a.Rule[:6] == "guest." {
			gd.Alerts = append(gd.Alerts, a)
		}
	}
	return gd, nil
}

// guestPlots draws memory (with its limit), CPU, network traffic and disk
// from the guest's reports; rates come from consecutive reports.
func guestPlots(ms []Stored, now, since time.Time) []plot {
	mem := &series{Name: "memory"}
	cpu := &series{Name: "CPU"}
	rx, tx := &series{Name: "received"}, &series{Name: "sent"}
	disk := &series{Name: "state dir"}
	var prev *events.Guest
	var prevT time.Time
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Time.Before(ms[j].Time) })
	for _, m := range ms {
		var g events.Guest
		if m.Event.DataAs(&g) != nil {
			continue
		}
		mem.Points = append(mem.Points, point{m.Time, float64(g.MemoryBytes)})
		if g.MemoryMaxBytes > 0 {
			mem.Limit = float64(g.MemoryMaxBytes)
		}
		if g.StateDir != "" {
			disk.Points = append(disk.Points, point{m.Time, float64(g.DiskBytes)})
		}
		if prev != nil {
			if secs := m.Time.Sub(prevT).Seconds(); secs > 0 {
				if g.CPUUsageSeconds >= prev.CPUUsageSeconds && prev.CPUUsageSeconds > 0 {
					cpu.Points = append(cpu.Points, point{m.Time, (g.CPUUsageSeconds - prev.CPUUsageSeconds) / secs * 100})
				}
				if len(g.Interfaces) > 0 && g.NetRXBytes >= prev.NetRXBytes && g.NetTXBytes >= prev.NetTXBytes {
					rx.Points = append(rx.Points, point{m.Time, float64(g.NetRXBytes-prev.NetRXBytes) / secs})
					tx.Points = append(tx.Points, point{m.Time, float64(g.NetTXBytes-prev.NetTXBytes) / secs})
				}
			}
		}
		p := g
		prev, prevT = &p, m.Time
	}
	var plots []plot
	if len(mem.Points) > 0 {
		plots = append(plots, newPlot("Memory", "bytes", now, since, []*series{mem}, false))
	}
	if len(cpu.Points) > 0 {
		plots = append(plots, newPlot("CPU (% of one core)", "%", now, since, []*series{cpu}, false))
	}
	if len(rx.Points) > 0 {
		plots = append(plots, newPlot("Network", "B/s", now, since, []*series{rx, tx}, false))
	}
	if len(disk.Points) > 0 {
		plots = append(plots, newPlot("Disk (state directory)", "bytes", now, since, []*series{disk}, true))
	}
	return plots
}

func (s *Server) guestPage(w http.ResponseWriter, r *http.Request, sess *Session) error {
	host, name := r.PathValue("host"), r.PathValue("guest")
	gd, err := s.guestDetail(r.Context(), host, name)
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "guest.html", page{Title: name + " on " + host, Nav: "guests", Session: sess, Topics: "guests alerts",
		Newest: gd.G.Time, Data: gd})
	return nil
}

func (s *Server) apiGuests(w http.ResponseWriter, r *http.Request, _ *Session) error {
	host, err := query(r, "host", 64)
	if err != nil {
		return err
	}
	gs, err := s.guests(r.Context(), host)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, gs)
	return nil
}

func (s *Server) apiGuest(w http.ResponseWriter, r *http.Request, _ *Session) error {
	gd, err := s.guestDetail(r.Context(), r.PathValue("host"), r.PathValue("guest"))
	if err != nil {
		return err
	}
	out := struct {
		fleetview.GuestView
		Series []plotJSON `json:"series"`
	}{GuestView: gd.G, Series: []plotJSON{}}
	for _, p := range gd.Plots {
		out.Series = append(out.Series, plotJSON{Title: p.Title, Unit: p.Unit, FullAt: p.FullAt, Series: p.Series})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
