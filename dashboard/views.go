package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
)

// HostRow is one host of the fleet overview (GET /api/overview).
type HostRow struct {
	Host string `json:"host"`
	// Declared: in the flake's nixosConfigurations; Seen: it has sent an
	// event. A declared host never seen is shown as such.
	Declared bool     `json:"declared"`
	Seen     bool     `json:"seen"`
	Tags     []string `json:"tags"`
	// State is online, silent, unknown or never-seen.
	State         string     `json:"state"`
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	LastSeen      *time.Time `json:"last_seen,omitempty"`
	OS            string     `json:"os,omitempty"`
	NixOSVersion  string     `json:"nixos_version,omitempty"`
	NixpkgsAge    *int       `json:"nixpkgs_age_days,omitempty"`
	// Deploy is the host's last-deploy line (pinkie last-deploy --json).
	Deploy fleetview.LastDeploy `json:"deploy"`
	// Alerts counts the unsilenced firing alerts by severity.
	Alerts map[string]int `json:"alerts"`
	// Storage counts drives, pools, arrays and filesystems by verdict.
	Storage map[string]int `json:"storage"`
}

// Overview is the fleet overview (GET /api/overview).
type Overview struct {
	Hosts []HostRow `json:"hosts"`
	Tags  []string  `json:"tags"`
	// AsOf is when this was read; Newest the newest event time in it.
	AsOf   time.Time `json:"as_of"`
	Newest time.Time `json:"newest"`
	// Declared is the fleet declaration's flake and revision, if any.
	DeclaredFlake    string `json:"declared_flake,omitempty"`
	DeclaredRevision string `json:"declared_revision,omitempty"`
}

func (s *Server) readFleet(ctx context.Context) (*events.FleetDeclared, error) {
	m, err := s.o.Store.Last(ctx, events.StreamFleet, events.FleetDeclaredSubject)
	if err != nil || m == nil {
		return nil, err
	}
	var fd events.FleetDeclared
	if err := m.Event.DataAs(&fd); err != nil {
		return nil, fmt.Errorf("fleet declaration: %w", err)
	}
	return &fd, nil
}

func (s *Server) readLastDeploys(ctx context.Context) (map[string]*lastdeploy.Record, error) {
	recs, err := s.o.Store.Bucket(ctx, events.BucketLastDeploy, "")
	if err != nil {
		return nil, err
	}
	return fleetview.LastDeploys(recs)
}

func (s *Server) overview(ctx context.Context) (Overview, error) {
	now := s.o.Now()
	ov := Overview{AsOf: now, Hosts: []HostRow{}, Tags: []string{}}
	inv, err := s.o.Store.Bucket(ctx, events.BucketInventory, "")
	if err != nil {
		return ov, err
	}
	// Only a few fields of each inventory record are shown here.
	var hosts []hostSummary
	for k, b := range inv {
		var h hostSummary
		if err := json.Unmarshal(b, &h); err != nil {
			return ov, fmt.Errorf("%s %s: %w", events.BucketInventory, k, err)
		}
		hosts = append(hosts, h)
	}
	drec, err := s.o.Store.Bucket(ctx, events.BucketDrives, "")
	if err != nil {
		return ov, err
	}
	// The overview counts verdicts only: decoding just those two fields
	// of each record halves its time for a large fleet.
	var drives []driveVerdict
	for k, b := range drec {
		var d driveVerdict
		if err := json.Unmarshal(b, &d); err != nil {
			return ov, fmt.Errorf("%s %s: %w", events.BucketDrives, k, err)
		}
		drives = append(drives, d)
	}
	arec, err := s.o.Store.Bucket(ctx, events.BucketAlerts, "")
	if err != nil {
		return ov, err
	}
	alerts, _, err := fleetview.Alerts(arec, now)
	if err != nil {
		return ov, err
	}
	lds, err := s.readLastDeploys(ctx)
	if err != nil {
		return ov, err
	}
	decl, err := s.readFleet(ctx)
	if err != nil {
		return ov, err
	}
	rows := map[string]*HostRow{}
	row := func(name string) *HostRow {
		r := rows[name]
		if r == nil {
			r = &HostRow{Host: name, State: "never-seen", Tags: []string{}, Alerts: map[string]int{}, Storage: map[string]int{}}
			rows[name] = r
		}
		return r
	}
	tags := map[string]bool{}
	if decl != nil {
		ov.DeclaredFlake, ov.DeclaredRevision = decl.Flake, decl.Revision
		for _, h := range decl.Hosts {
			r := row(h.Name)
			r.Declared = true
			r.Tags = append(r.Tags, h.Deployment.Tags...)
			for _, t := range h.Deployment.Tags {
				tags[t] = true
			}
		}
	}
	for _, h := range hosts {
		r := row(h.Host)
		r.Seen, r.State = true, fleetview.HostState(&projections.Host{Online: h.Online, SilentSince: h.SilentSince})
		ls := h.LastSeen
		r.LastSeen, r.LastHeartbeat = &ls, h.LastHeartbeat
		if h.LastSeen.After(ov.Newest) {
			ov.Newest = h.LastSeen
		}
		if p := h.Profile; p != nil {
			r.OS = p.OS.PrettyName
			if p.Nix != nil {
				r.NixOSVersion, r.NixpkgsAge = p.Nix.Version, p.Nix.NixpkgsAgeDays
			}
		}
	}
	for _, d := range drives {
		row(d.Host).Storage[d.Verdict]++
	}
	for _, a := range alerts {
		if !a.Silenced {
			row(a.Host).Alerts[a.Severity]++
		}
	}
	for name, r := range rows {
		r.Deploy = fleetview.NewLastDeploy(name, lds[name], r.Declared, now, s.o.WarnAfter, s.o.FailAfter)
		ov.Hosts = append(ov.Hosts, *r)
	}
	sort.Slice(ov.Hosts, func(i, j int) bool { return ov.Hosts[i].Host < ov.Hosts[j].Host })
	for t := range tags {
		ov.Tags = append(ov.Tags, t)
	}
	sort.Strings(ov.Tags)
	return ov, nil
}

// hostSummary is the part of a pinkie-inventory record the overview reads.
type hostSummary struct {
	Host          string     `json:"host"`
	Online        bool       `json:"online"`
	LastSeen      time.Time  `json:"last_seen"`
	LastHeartbeat *time.Time `json:"last_heartbeat"`
	SilentSince   *time.Time `json:"silent_since"`
	Profile       *struct {
		OS  events.OSInfo `json:"os"`
		Nix *struct {
			Version        string `json:"version"`
			NixpkgsAgeDays *int   `json:"nixpkgs_age_days"`
		} `json:"nix"`
	} `json:"profile"`
}

// driveVerdict is the part of a pinkie-drives record the overview reads.
type driveVerdict struct {
	Host    string `json:"host"`
	Verdict string `json:"verdict"`
}

// filterRows keeps the hosts with tag (if set) whose name contains q.
func filterRows(rows []HostRow, tag, q string) []HostRow {
	out := []HostRow{}
	q = strings.ToLower(q)
	for _, r := range rows {
		if tag != "" && !slices.Contains(r.Tags, tag) {
			continue
		}
		if q != "" && !strings.Contains(strings.ToLower(r.Host), q) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// hostDetail is everything the host page shows.
type hostDetail struct {
	Name     string
	View     *fleetview.HostView
	Declared *events.DeclaredHost
	// ServiceDisk is the disk of the declared services' state directories,
	// from the watched paths.
	ServiceDisk []fleetview.ServiceDisk
	SMART       []driveOf[events.SMART]
	ZFS         []driveOf[events.ZFSPool]
	Btrfs       []driveOf[events.Btrfs]
	MD          []driveOf[events.MDRaid]
	FS          []driveOf[events.Filesystem]
	Paths       []driveOf[events.PathUsage]
	Postgres    []driveOf[events.Postgres]
	Network     *events.Network
	Systemd     *events.Systemd
	Guests      []fleetview.GuestView
	Logins      []timed[events.Login]
	Shells      []timed[events.ShellSession]
	Bans        []timed[events.Fail2ban]
	Deploys     []timed[events.DeployPhase]
	Alerts      []projections.ActiveAlert
	Plots       []plot
	Newest      time.Time
	// Problems says what could not be read: the page is then incomplete.
	Problems []string
}

type driveOf[T any] struct {
	projections.Drive
	D T
}

type timed[T any] struct {
	Time  time.Time
	Phase string
	D     T
}

// errNotFound is a 404 with a message.
func notFound(format string, a ...any) error {
	return httpError{http.StatusNotFound, fmt.Sprintf(format, a...)}
}

func decodeDrive[T any](d projections.Drive) (driveOf[T], error) {
	var v T
	err := json.Unmarshal(d.Data, &v)
	return driveOf[T]{Drive: d, D: v}, err
}

func (s *Server) hostView(ctx context.Context, name string) (*fleetview.HostView, error) {
	if err := events.ValidHost(name); err != nil {
		return nil, httpError{http.StatusBadRequest, err.Error()}
	}
	inv, err := s.o.Store.Bucket(ctx, events.BucketInventory, name)
	if err != nil {
		return nil, err
	}
	hosts, err := fleetview.Hosts(inv)
	if err != nil || len(hosts) == 0 {
		return nil, err
	}
	drec, err := s.o.Store.Bucket(ctx, events.BucketDrives, name+".")
	if err != nil {
		return nil, err
	}
	drives, err := fleetview.Drives(drec)
	if err != nil {
		return nil, err
	}
	return &fleetview.HostView{Host: hosts[0], Drives: drives}, nil
}

func (s *Server) hostDetail(ctx context.Context, name string) (*hostDetail, error) {
	now := s.o.Now()
	v, err := s.hostView(ctx, name)
	if err != nil {
		return nil, err
	}
	hd := &hostDetail{Name: name, View: v}
	if decl, err := s.readFleet(ctx); err != nil {
		return nil, err
	} else if decl != nil {
		for i := range decl.Hosts {
			if decl.Hosts[i].Name == name {
				hd.Declared = &decl.Hosts[i]
			}
		}
	}
	if v == nil && hd.Declared == nil {
		return nil, notFound("no host %q: it is neither declared in the fleet nor has it sent any event", name)
	}
	if v == nil {
		return hd, nil
	}
	hd.Newest = v.LastSeen
	var errs []error
	for _, d := range v.Drives {
		var err error
		switch d.Kind {
		case "smart":
			var x driveOf[events.SMART]
			x, err = decodeDrive[events.SMART](d)
			hd.SMART = append(hd.SMART, x)
		case "zfs":
			var x driveOf[events.ZFSPool]
			x, err = decodeDrive[events.ZFSPool](d)
			hd.ZFS = append(hd.ZFS, x)
		case "btrfs":
			var x driveOf[events.Btrfs]
			x, err = decodeDrive[events.Btrfs](d)
			hd.Btrfs = append(hd.Btrfs, x)
		case "mdraid":
			var x driveOf[events.MDRaid]
			x, err = decodeDrive[events.MDRaid](d)
			hd.MD = append(hd.MD, x)
		case "fs":
			var x driveOf[events.Filesystem]
			x, err = decodeDrive[events.Filesystem](d)
			hd.FS = append(hd.FS, x)
		case "path":
			var x driveOf[events.PathUsage]
			x, err = decodeDrive[events.PathUsage](d)
			hd.Paths = append(hd.Paths, x)
		case "postgres":
			var x driveOf[events.Postgres]
			x, err = decodeDrive[events.Postgres](d)
			hd.Postgres = append(hd.Postgres, x)
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("host %s storage: %w", name, err)
	}
	last := func(kind string, into any) {
		m, err := s.o.Store.Last(ctx, events.StreamHosts, events.HostSubject(name, kind, ""))
		if err != nil || m == nil {
			return
		}
		_ = m.Event.DataAs(into)
	}
	hd.Network, hd.Systemd = &events.Network{}, &events.Systemd{}
	last("network", hd.Network)
	last("systemd", hd.Systemd)
	since := now.Add(-30 * 24 * time.Hour)
	week := now.Add(-7 * 24 * time.Hour)
	hist := func(since time.Time, max int, filters ...string) []Stored {
		ms, err := s.o.Store.History(ctx, events.StreamHosts, filters, since, max)
		if err != nil {
			s.log.Warn("dashboard: history", "filters", strings.Join(filters, ","), "err", err)
			for _, f := range filters {
				_, what, _ := events.HostFromSubject(f)
				hd.Problems = append(hd.Problems, "history of "+what+" could not be read; this page is incomplete")
			}
		}
		return ms
	}
	if hd.Guests, err = s.guests(ctx, name); err != nil {
		return nil, err
	}
	for _, m := range hist(week, 20, events.HostSubject(name, "login", "")) {
		var l events.Login
		if m.Event.DataAs(&l) == nil {
			hd.Logins = append([]timed[events.Login]{{Time: m.Time, D: l}}, hd.Logins...)
		}
	}
	for _, m := range hist(week, 20, events.HostSubject(name, "shell.session", "")) {
		var sh events.ShellSession
		if m.Event.DataAs(&sh) == nil {
			hd.Shells = append([]timed[events.ShellSession]{{Time: m.Time, D: sh}}, hd.Shells...)
		}
	}
	for _, m := range hist(week, 20, events.HostSubject(name, "fail2ban", "")) {
		var b events.Fail2ban
		if m.Event.DataAs(&b) == nil {
			hd.Bans = append([]timed[events.Fail2ban]{{Time: m.Time, D: b}}, hd.Bans...)
		}
	}
	dms, err := s.o.Store.History(ctx, events.StreamDeploy, []string{events.DeployEventsOf(name)}, time.Time{}, 60)
	if err != nil {
		return nil, err
	}
	for _, m := range dms {
		var p events.DeployPhase
		if m.Event.DataAs(&p) != nil {
			continue
		}
		_, phase, _ := events.HostFromSubject(m.Subject)
		if phase == "requested" {
			var r events.DeployRequested
			if m.Event.DataAs(&r) == nil {
				p = events.DeployPhase{RequestID: m.Event.ID(), Host: r.Host, RequestedBy: r.RequestedBy, Revision: r.Revision,
					BuildOn: r.BuildOn, Goal: r.Goal, StorePath: r.StorePath}
			}
		}
		hd.Deploys = append([]timed[events.DeployPhase]{{Time: m.Time, Phase: phase, D: p}}, hd.Deploys...)
	}
	// The host's alerts, marked with the silences that cover them.
	arec, err := s.o.Store.Bucket(ctx, events.BucketAlerts, "alert."+name+".")
	if err != nil {
		return nil, err
	}
	srec, err := s.o.Store.Bucket(ctx, events.BucketAlerts, "silence.")
	if err != nil {
		return nil, err
	}
	maps.Copy(arec, srec)
	if hd.Alerts, _, err = fleetview.Alerts(arec, now); err != nil {
		return nil, err
	}
	hd.Plots = s.hostPlots(hist, name, since, now)
	if hd.Declared != nil && len(hd.Declared.StateDirs) > 0 {
		sizes := map[string]uint64{}
		for _, p := range hd.Paths {
			sizes[p.D.Path] = p.D.DiskBytes
		}
		hd.ServiceDisk = fleetview.ServiceDisks(hd.Declared.StateDirs, sizes)
	}
	return hd, nil
}

// maxPlotEvents bounds one host page's read of HOSTS (30 days of hourly
// events for about 130 plotted objects).
const maxPlotEvents = 100000

func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// hostPlots draws the usage of each filesystem and watched path (with the
// predicted fill line), database sizes and drive temperatures over the
// last 30 days.
func (s *Server) hostPlots(hist func(time.Time, int, ...string) []Stored, name string, since, now time.Time) []plot {
	var plots []plot
	type ser = map[string]*series
	// One read of HOSTS per plotted kind: a consumer filtered on one
	// host's kind finds its messages through the stream's subject index,
	// where one filtered on several kinds scans the stream.
	byKind := map[string][]Stored{}
	for _, k := range []string{"fs", "path", "postgres", "smart"} {
		byKind[k] = hist(since, maxPlotEvents, events.HostSubject(name, k, "")+".>")
	}
	collect := func(kind string, val func(Stored) (string, float64, float64, bool)) ser {
		out := ser{}
		for _, m := range byKind[kind] {
			obj, y, limit, ok := val(m)
			if !ok {
				continue
			}
			sr := out[obj]
			if sr == nil {
				sr = &series{Name: obj}
				out[obj] = sr
			}
			sr.Points = append(sr.Points, point{m.Time, y})
			sr.Limit = limit
		}
		return out
	}
	fs := collect("fs", func(m Stored) (string, float64, float64, bool) {
		var f events.Filesystem
		if m.Event.DataAs(&f) != nil {
			return "", 0, 0, false
		}
		return f.MountPoint, float64(f.UsedBytes), float64(f.SizeBytes), true
	})
	for _, k := range sortedKeys(fs) {
		plots = append(plots, newPlot("Filesystem "+k, "bytes", now, since, []*series{fs[k]}, true))
	}
	paths := collect("path", func(m Stored) (string, float64, float64, bool) {
		var p events.PathUsage
		if m.Event.DataAs(&p) != nil {
			return "", 0, 0, false
		}
		return p.Path, float64(p.DiskBytes), 0, true
	})
	for _, k := range sortedKeys(paths) {
		plots = append(plots, newPlot("Path "+k, "bytes", now, since, []*series{paths[k]}, true))
	}
	pg := collect("postgres", func(m Stored) (string, float64, float64, bool) {
		var p events.Postgres
		if m.Event.DataAs(&p) != nil {
			return "", 0, 0, false
		}
		return p.Database, float64(p.SizeBytes), 0, true
	})
	if len(pg) > 0 {
		var all []*series
		for _, k := range sortedKeys(pg) {
			all = append(all, pg[k])
		}
		plots = append(plots, newPlot("PostgreSQL database sizes", "bytes", now, since, all, false))
	}
	temps := collect("smart", func(m Stored) (string, float64, float64, bool) {
		var d events.SMART
		if m.Event.DataAs(&d) != nil || d.TemperatureC == nil {
			return "", 0, 0, false
		}
		return d.Device, float64(*d.TemperatureC), 0, true
	})
	if len(temps) > 0 {
		var all []*series
		for _, k := range sortedKeys(temps) {
			all = append(all, temps[k])
		}
		plots = append(plots, newPlot("Drive temperatures", "°C", now, since, all, false))
	}
	return plots
}
