package producers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/pinkiefleet/pinkie/events"
)

// Systemd reports the failed units and the state of the units the operator
// lists, on the host and inside NixOS containers (machines, read with
// systemctl -M through machined). It asks the host's systemd over D-Bus and falls back to systemctl through the
// command runner when there is no system bus. It checks every minute and
// reports when something changed, and at least once an hour.
type Systemd struct {
	opts  systemdOptions
	gate  *ChangeGate
	check time.Duration
	// dial connects to the system bus; nil uses systemctl only.
	dial func() (*dbus.Conn, error)
}

type systemdOptions struct {
	// Units are unit names to report whatever their state ("nginx.service").
	Units []string `json:"units,omitempty"`
	// DBus false uses systemctl only.
	DBus *bool `json:"dbus,omitempty"`
	// Check is how often units are looked at for changes ("1m").
	Check string `json:"check,omitempty"`
	// Machines are NixOS containers (machine names, as machinectl lists
	// them) and the units to watch inside each ({"web": ["nginx.service"]}),
	// read with systemctl -M through machined.
	Machines map[string][]string `json:"machines,omitempty"`
}

// systemdMachineName is what a machine name may be here: a container name
// (NixOS allows letters, digits and '-'; machined also '_' and '.').
var systemdMachineName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func systemdSpec() Spec {
	return Spec{Name: "systemd", Doc: "failed systemd units and the state of listed units (D-Bus, else systemctl), also inside NixOS containers (systemctl -M)", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) { return NewSystemd(raw) }}
}

// NewSystemd builds the systemd producer from its options
// ({"units": [...], "dbus": true, "check": "1m"}).
func NewSystemd(raw json.RawMessage) (*Systemd, error) {
	var o systemdOptions
	if err := DecodeOptions(raw, &o); err != nil {
		return nil, err
	}
	if err := systemdCheckUnits("units", o.Units); err != nil {
		return nil, err
	}
	for m, units := range o.Machines {
		if !systemdMachineName.MatchString(m) {
			return nil, fmt.Errorf("options: machines: %q is not a machine name", m)
		}
		if err := systemdCheckUnits("machines."+m, units); err != nil {
			return nil, err
		}
	}
	s := &Systemd{opts: o, gate: NewChangeGate(time.Hour), check: time.Minute}
	if o.Check != "" {
		d, err := time.ParseDuration(o.Check)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("options: check: want a positive duration, got %q", o.Check)
		}
		s.check = d
	}
	if o.DBus == nil || *o.DBus {
		s.dial = func() (*dbus.Conn, error) { return dbus.ConnectSystemBus() }
	}
	return s, nil
}

func systemdCheckUnits(option string, units []string) error {
	for _, u := range units {
		if u == "" || strings.ContainsAny(u, " \t\n") || strings.HasPrefix(u, "-") {
			return fmt.Errorf("options: %s: %q is not a unit name", option, u)
		}
	}
	return nil
}

func (s *Systemd) Name() string { return "systemd" }

// Interval is how often units are checked; an observation is made only on
// change or once the refresh period (SetInterval, 1h) has passed.
func (s *Systemd) Interval() time.Duration { return min(s.check, s.gate.Refresh()) }

// SetInterval sets the refresh period (the config's "interval").
func (s *Systemd) SetInterval(d time.Duration) { s.gate.SetRefresh(d) }

func (s *Systemd) Collect(ctx context.Context, env Env) ([]Observation, error) {
	// sd_booted(3): systemd is the init system iff /run/systemd/system/ exists.
	if _, err := fs.Stat(env.Root, "run/systemd/system"); err != nil {
		return nil, ErrNotApplicable
	}
	d, err := s.look(ctx, env)
	if err != nil && d.Source == "" {
		return nil, err
	}
	d.Guests = s.lookMachines(ctx, env.Run)
	if !s.gate.Due(env.Now(), d) {
		return nil, err
	}
	return []Observation{{Kind: "systemd", Data: d}}, err
}

func (s *Systemd) look(ctx context.Context, env Env) (events.Systemd, error) {
	var busErr error
	if s.dial != nil {
		d, err := systemdViaDBus(ctx, s.dial, s.opts.Units)
		if err == nil {
			return d, nil
		}
		busErr = err
		env.logger().Debug("systemd: no D-Bus answer, using systemctl", "err", err)
	}
	d, err := systemdViaSystemctl(ctx, env.Run, s.opts.Units)
	if err != nil && busErr != nil {
		err = fmt.Errorf("%w (D-Bus: %v)", err, busErr)
	}
	return d, err
}

// lookMachines asks each container's own systemd about its units, with
// systemctl -M (machined enters the container; systemctl(1) --machine). A
// container systemctl cannot reach (not running) is "unreachable", with no
// units: its own unit (container@NAME.service) and guest.down tell why.
func (s *Systemd) lookMachines(ctx context.Context, run Runner) []events.GuestUnits {
	if len(s.opts.Machines) == 0 || run == nil {
		return nil
	}
	names := make([]string, 0, len(s.opts.Machines))
	for m := range s.opts.Machines {
		names = append(names, m)
	}
	sort.Strings(names)
	out := make([]events.GuestUnits, 0, len(names))
	for _, m := range names {
		g := events.GuestUnits{Machine: m, State: events.GuestUnitsUnreachable, Failed: []events.UnitState{}}
		// Asked through the container's manager, the answers have the
		// host's shapes: the same calls with -M in front. A container
		// that is not running fails the first (list-units).
		d, err := systemdViaSystemctl(ctx, machineRunner{run: run, machine: m}, s.opts.Machines[m])
		if err != nil && d.Source == "" {
			out = append(out, g)
			continue
		}
		g.State = d.SystemState
		if g.State == "" {
			g.State = "unknown"
		}
		g.Failed, g.Watched = d.Failed, d.Watched
		out = append(out, g)
	}
	return out
}

// machineRunner runs systemctl against a container's manager
// (systemctl -M MACHINE …).
type machineRunner struct {
	run     Runner
	machine string
}

func (r machineRunner) Run(ctx context.Context, name string, args ...string) ([]byte, int, error) {
	if name == "systemctl" {
		args = append([]string{"-M", r.machine}, args...)
	}
	return r.run.Run(ctx, name, args...)
}

// systemdUnitStatus is one entry of the Manager's ListUnits* answer,
// D-Bus signature (ssssssouso).
type systemdUnitStatus struct {
	Name, Description, LoadState, ActiveState, SubState, Followed string
	Path                                                          dbus.ObjectPath
	JobID                                                         uint32
	JobType                                                       string
	JobPath                                                       dbus.ObjectPath
}

// systemdViaDBus asks org.freedesktop.systemd1 (systemd's D-Bus API,
// org.freedesktop.systemd1(5)).
func systemdViaDBus(ctx context.Context, dial func() (*dbus.Conn, error), units []string) (events.Systemd, error) {
	conn, err := dial()
	if err != nil {
		return events.Systemd{}, fmt.Errorf("connect to the system bus: %w", err)
	}
	defer conn.Close()
	mgr := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
	d := events.Systemd{Source: "dbus", Failed: []events.UnitState{}}
	if v, err := mgr.GetProperty("org.freedesktop.systemd1.Manager.SystemState"); err == nil {
		d.SystemState, _ = v.Value().(string)
	}
	var failed []systemdUnitStatus
	if err := mgr.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.ListUnitsFiltered", 0, []string{"failed"}).Store(&failed); err != nil {
		return events.Systemd{}, fmt.Errorf("ListUnitsFiltered: %w", err)
	}
	restarts := func(u systemdUnitStatus) int {
		if !strings.HasSuffix(u.Name, ".service") || u.Path == "" {
			return 0
		}
		v, err := conn.Object("org.freedesktop.systemd1", u.Path).GetProperty("org.freedesktop.systemd1.Service.NRestarts")
		if err != nil {
			return 0
		}
		n, _ := v.Value().(uint32)
		return int(n)
	}
	for _, u := range failed {
		d.Failed = append(d.Failed, events.UnitState{Name: u.Name, Description: u.Description, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState, Restarts: restarts(u)})
	}
	if len(units) > 0 {
		var watched []systemdUnitStatus
		if err := mgr.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.ListUnitsByNames", 0, units).Store(&watched); err != nil {
			return events.Systemd{}, fmt.Errorf("ListUnitsByNames: %w", err)
		}
		for _, u := range watched {
			d.Watched = append(d.Watched, events.UnitState{Name: u.Name, Description: u.Description, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState, Restarts: restarts(u)})
		}
	}
	systemdSort(&d)
	return d, nil
}

// systemdViaSystemctl asks systemctl (systemctl(1)): list-units --failed
// as JSON, show for the listed units, is-system-running.
func systemdViaSystemctl(ctx context.Context, run Runner, units []string) (events.Systemd, error) {
	if run == nil {
		return events.Systemd{}, fmt.Errorf("systemctl: no command runner")
	}
	out, code, err := run.Run(ctx, "systemctl", "list-units", "--failed", "--all", "--output=json", "--no-pager")
	if err != nil {
		return events.Systemd{}, fmt.Errorf("systemctl list-units: %w", err)
	}
	if code != 0 {
		return events.Systemd{}, fmt.Errorf("systemctl list-units: exit status %d", code)
	}
	failed, err := systemdParseListUnits(out)
	if err != nil {
		return events.Systemd{}, fmt.Errorf("systemctl list-units: %w", err)
	}
	d := events.Systemd{Source: "systemctl", Failed: failed}
	var errs []error
	if out, _, err := run.Run(ctx, "systemctl", "is-system-running"); err == nil {
		// Exits non-zero when not "running"; the state is on stdout.
		d.SystemState = strings.TrimSpace(string(out))
	}
	if len(failed) > 0 {
		names := make([]string, len(failed))
		for i, u := range failed {
			names[i] = u.Name
		}
		if shown, err := systemdShow(ctx, run, names); err == nil {
			for i := range d.Failed {
				d.Failed[i].Restarts = shown[d.Failed[i].Name].Restarts
			}
		} else {
			errs = append(errs, err)
		}
	}
	if len(units) > 0 {
		shown, err := systemdShow(ctx, run, units)
		if err != nil {
			errs = append(errs, err)
		}
		for _, u := range units {
			if st, ok := shown[u]; ok {
				d.Watched = append(d.Watched, st)
			}
		}
	}
	systemdSort(&d)
	return d, errors.Join(errs...)
}

func systemdShow(ctx context.Context, run Runner, units []string) (map[string]events.UnitState, error) {
	out, err := systemctlShow(ctx, run, "--property=Id,Description,LoadState,ActiveState,SubState,NRestarts", units)
	if err != nil {
		return nil, err
	}
	return systemdParseShow(out), nil
}

// systemctlShow runs `systemctl show PROPERTIES -- UNITS…`.
func systemctlShow(ctx context.Context, run Runner, properties string, units []string) ([]byte, error) {
	args := append([]string{"show", properties, "--"}, units...)
	out, code, err := run.Run(ctx, "systemctl", args...)
	if err != nil {
		return nil, fmt.Errorf("systemctl show: %w", err)
	}
	if code != 0 && len(out) == 0 {
		return nil, fmt.Errorf("systemctl show: exit status %d", code)
	}
	return out, nil
}

// systemdParseListUnits reads `systemctl list-units --output=json`:
// [{"unit", "load", "active", "sub", "description"}].
func systemdParseListUnits(b []byte) ([]events.UnitState, error) {
	var rows []struct {
		Unit        string `json:"unit"`
		Load        string `json:"load"`
		Active      string `json:"active"`
		Sub         string `json:"sub"`
		Description string `json:"description"`
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	out := []events.UnitState{}
	for _, r := range rows {
		if r.Unit == "" {
			continue
		}
		out = append(out, events.UnitState{Name: r.Unit, Description: r.Description, LoadState: r.Load, ActiveState: r.Active, SubState: r.Sub})
	}
	return out, nil
}

// systemdParseShow reads `systemctl show --property=...` for several
// units: blocks of Key=Value lines separated by blank lines.
func systemdParseShow(b []byte) map[string]events.UnitState {
	out := map[string]events.UnitState{}
	var cur events.UnitState
	flush := func() {
		if cur.Name != "" {
			out[cur.Name] = cur
		}
		cur = events.UnitState{}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "Id":
			cur.Name = v
		case "Description":
			cur.Description = v
		case "LoadState":
			cur.LoadState = v
		case "ActiveState":
			cur.ActiveState = v
		case "SubState":
			cur.SubState = v
		case "NRestarts":
			cur.Restarts, _ = strconv.Atoi(v)
		}
	}
	flush()
	return out
}

func systemdSort(d *events.Systemd) {
	sort.Slice(d.Failed, func(i, j int) bool { return d.Failed[i].Name < d.Failed[j].Name })
}
