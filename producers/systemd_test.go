package producers

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

func TestSystemdFallbackToSystemctl(t *testing.T) {
	s, err := NewSystemd(json.RawMessage(`{"units": ["nginx.service", "nope.service"]}`))
	if err != nil {
		t.Fatal(err)
	}
	// No system bus: the dialer fails as ConnectSystemBus does here.
	s.dial = func() (*dbus.Conn, error) {
		return nil, errors.New("dial unix /run/dbus/system_bus_socket: no such file")
	}
	env := networkEnv(t, "testdata/root-nixos")
	obs, err := s.Collect(context.Background(), env)
	if err != nil || len(obs) != 1 {
		t.Fatalf("Collect: %d observations, err %v", len(obs), err)
	}
	want := events.Systemd{Source: "systemctl", SystemState: "degraded",
		Failed: []events.UnitState{{Name: "restic-backups-b2.service", Description: "restic backup b2", LoadState: "loaded", ActiveState: "failed", SubState: "failed", Restarts: 3}},
		Watched: []events.UnitState{
			{Name: "nginx.service", Description: "Nginx Web Server", LoadState: "loaded", ActiveState: "active", SubState: "running"},
			{Name: "nope.service", Description: "nope.service", LoadState: "not-found", ActiveState: "inactive", SubState: "dead"},
		}}
	if diff := cmp.Diff(want, obs[0].Data); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Unchanged a minute later: nothing to report.
	env.Now = func() time.Time { return networkTestNow.Add(time.Minute) }
	if obs, _ := s.Collect(context.Background(), env); len(obs) != 0 {
		t.Errorf("unchanged units reported again")
	}
}

func TestSystemdNotApplicable(t *testing.T) {
	// This machine's capture: systemctl exists, systemd is not PID 1 (no
	// /run/systemd/system).
	s, _ := NewSystemd(json.RawMessage(`{"dbus": false}`))
	_, err := s.Collect(context.Background(), networkEnv(t, "testdata/root-debian"))
	if !errors.Is(err, ErrNotApplicable) {
		t.Errorf("err = %v, want ErrNotApplicable", err)
	}
}

func TestSystemdBadInput(t *testing.T) {
	env := networkEnv(t, "testdata/root-nixos")
	tests := []struct {
		name    string
		answers map[string]execFakeAnswer
		wantErr string
	}{
		{"systemctl missing", nil, "systemctl list-units"},
		{"systemctl fails", map[string]execFakeAnswer{"systemctl list-units --failed --all --output=json --no-pager": {code: 1}}, "exit status 1"},
		{"garbage JSON", map[string]execFakeAnswer{"systemctl list-units --failed --all --output=json --no-pager": {out: "UNIT LOAD ACTIVE"}}, "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := NewSystemd(json.RawMessage(`{"dbus": false}`))
			env.Run = &execFakeRunner{answers: tt.answers}
			obs, err := s.Collect(context.Background(), env)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || len(obs) != 0 {
				t.Errorf("got %d observations, err %v; want error %q", len(obs), err, tt.wantErr)
			}
		})
	}
	if _, err := NewSystemd(json.RawMessage(`{"units": ["--all"]}`)); err == nil {
		t.Error("a flag accepted as a unit name")
	}
}

func TestSystemdParseShowTruncated(t *testing.T) {
	got := systemdParseShow([]byte("Id=a.service\nActiveState=active\nNRestarts=x\n\nId=b.serv"))
	if got["a.service"].ActiveState != "active" || got["b.serv"].Name != "b.serv" {
		t.Errorf("got %+v", got)
	}
}

// TestSystemdDBus talks to a real dbus-daemon (a private bus started for
// the test) on which the test itself serves the part of systemd's
// org.freedesktop.systemd1 API the producer uses.
func TestSystemdDBus(t *testing.T) {
	addr := systemdStartBus(t)
	server, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if reply, err := server.RequestName("org.freedesktop.systemd1", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v %v", reply, err)
	}
	mgr := &systemdFakeManager{}
	if err := server.Export(mgr, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	props := &systemdFakeProps{values: map[string]map[string]dbus.Variant{
		"org.freedesktop.systemd1.Manager": {"SystemState": dbus.MakeVariant("degraded")},
	}}
	if err := server.Export(props, "/org/freedesktop/systemd1", "org.freedesktop.DBus.Properties"); err != nil {
		t.Fatal(err)
	}
	unitProps := &systemdFakeProps{values: map[string]map[string]dbus.Variant{
		"org.freedesktop.systemd1.Service": {"NRestarts": dbus.MakeVariant(uint32(3))},
	}}
	if err := server.Export(unitProps, "/org/freedesktop/systemd1/unit/restic_2dbackups_2db2_2eservice", "org.freedesktop.DBus.Properties"); err != nil {
		t.Fatal(err)
	}
	s, _ := NewSystemd(json.RawMessage(`{"units": ["nginx.service"]}`))
	s.dial = func() (*dbus.Conn, error) { return dbus.Connect(addr) }
	env := networkEnv(t, "testdata/root-nixos")
	env.Run = &execFakeRunner{} // systemctl must not be needed
	obs, err := s.Collect(context.Background(), env)
	if err != nil || len(obs) != 1 {
		t.Fatalf("Collect: %d, %v", len(obs), err)
	}
	want := events.Systemd{Source: "dbus", SystemState: "degraded",
		Failed:  []events.UnitState{{Name: "restic-backups-b2.service", Description: "restic backup b2", LoadState: "loaded", ActiveState: "failed", SubState: "failed", Restarts: 3}},
		Watched: []events.UnitState{{Name: "nginx.service", Description: "Nginx Web Server", LoadState: "loaded", ActiveState: "active", SubState: "running"}}}
	if diff := cmp.Diff(want, obs[0].Data); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

type systemdFakeManager struct{}

func (systemdFakeManager) ListUnitsFiltered(states []string) ([]systemdUnitStatus, *dbus.Error) {
	if len(states) != 1 || states[0] != "failed" {
		return nil, dbus.MakeFailedError(errors.New("unexpected filter"))
	}
	return []systemdUnitStatus{{Name: "restic-backups-b2.service", Description: "restic backup b2", LoadState: "loaded", ActiveState: "failed", SubState: "failed",
		Path: "/org/freedesktop/systemd1/unit/restic_2dbackups_2db2_2eservice", JobPath: "/"}}, nil
}

func (systemdFakeManager) ListUnitsByNames(names []string) ([]systemdUnitStatus, *dbus.Error) {
	var out []systemdUnitStatus
	for _, n := range names {
		out = append(out, systemdUnitStatus{Name: n, Description: "Nginx Web Server", LoadState: "loaded", ActiveState: "active", SubState: "running",
			Path: "/org/freedesktop/systemd1/unit/nginx_2eservice", JobPath: "/"})
	}
	return out, nil
}

type systemdFakeProps struct {
	values map[string]map[string]dbus.Variant
}

func (p *systemdFakeProps) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	if v, ok := p.values[iface][name]; ok {
		return v, nil
	}
	return dbus.Variant{}, dbus.MakeFailedError(errors.New("no such property"))
}

// systemdStartBus starts a private dbus-daemon and returns its address,
// or skips when dbus-daemon is not installed.
func systemdStartBus(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skipf("dbus-daemon not installed: %v", err)
	}
	dir := t.TempDir()
	conf := dir + "/bus.conf"
	sock := "unix:path=" + dir + "/bus"
	if err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>custom</type><listen>`+sock+`</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/><allow user="*"/></policy></busconfig>`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "dbus-daemon", "--config-file="+conf, "--nofork", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	buf := make([]byte, 512)
	n, err := out.Read(buf) // the daemon prints its address once it listens
	if err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	return strings.TrimSpace(string(buf[:n]))
}

// TestSystemdContainerUnits: units inside NixOS containers come from the
// container's own manager (systemctl -M, replayed from the fixture root):
// web is reached (degraded, nginx failed, shop missing); a machine
// systemctl cannot reach (no recording here: not running) is unreachable,
// with no units.
func TestSystemdContainerUnits(t *testing.T) {
	s, err := NewSystemd(json.RawMessage(`{"dbus": false, "units": ["nginx.service", "nope.service"],
	  "machines": {"web": ["nginx.service", "shop.service"], "stopped": ["app.service"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	env := networkEnv(t, "testdata/root-nixos")
	// The recordings as --replay-commands answers them.
	if env.Run, err = NewReplayRunner("testdata/root-nixos/_commands"); err != nil {
		t.Fatal(err)
	}
	obs, err := s.Collect(context.Background(), env)
	if err != nil || len(obs) != 1 {
		t.Fatalf("Collect: %d observations, err %v", len(obs), err)
	}
	nginxFailed := events.UnitState{Name: "nginx.service", Description: "Nginx Web Server", LoadState: "loaded", ActiveState: "failed", SubState: "failed", Restarts: 5}
	want := []events.GuestUnits{
		{Machine: "stopped", State: events.GuestUnitsUnreachable, Failed: []events.UnitState{}},
		{Machine: "web", State: "degraded", Failed: []events.UnitState{nginxFailed},
			Watched: []events.UnitState{nginxFailed, {Name: "shop.service", Description: "shop.service", LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}}},
	}
	got := obs[0].Data.(events.Systemd)
	if diff := cmp.Diff(want, got.Guests); diff != "" {
		t.Errorf("guests (-want +got):\n%s", diff)
	}
	if got.SystemState != "degraded" || len(got.Watched) != 2 {
		t.Errorf("the host's own report changed: %+v", got)
	}
	for _, bad := range []string{`{"machines": {"-M": []}}`, `{"machines": {"web": ["--all"]}}`, `{"machines": {"a b": ["x.service"]}}`} {
		if _, err := NewSystemd(json.RawMessage(bad)); err == nil || !strings.Contains(err.Error(), "machines") {
			t.Errorf("NewSystemd(%s): err %v, want one naming machines", bad, err)
		}
	}
}
