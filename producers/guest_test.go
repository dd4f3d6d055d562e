package producers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

func TestGuestNixOSRoot(t *testing.T) {
	g := &Guest{}
	obs, err := g.Collect(context.Background(), networkEnv(t, "testdata/root-nixos"))
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	want := []Observation{
		{Kind: "guest", Object: "db", Data: events.Guest{Name: "db", Type: "microvm", Unit: "microvm@db.service", ActiveState: "active", SubState: "running",
			Healthy: true, Restarts: 2, Addresses: []string{"10.0.0.5"}, MemoryBytes: 536870912, CPUUsageSeconds: 1234.56,
			StateDir: "/var/lib/microvms/db", DiskBytes: 10000, Hypervisor: "cloud-hypervisor", SharedPaths: []string{"/nix/store", "/var/lib/microvms/db/var"}}},
		{Kind: "guest", Object: "web", Data: events.Guest{Name: "web", Type: "container", Unit: "container@web.service", ActiveState: "active", SubState: "running",
			Healthy: true, Addresses: []string{"10.233.1.2", "fc00::2"}, MemoryBytes: 104857600, CPUUsageSeconds: 5,
			StateDir: "/var/lib/nixos-containers/web", DiskBytes: 4100, SharedPaths: []string{"/var/lib/web-data", "/etc/ssl/certs"}}},
	}
	if diff := cmp.Diff(want, obs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestGuestNotApplicable(t *testing.T) {
	g := &Guest{}
	if _, err := g.Collect(context.Background(), networkEnv(t, "testdata/root-debian")); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("err = %v, want ErrNotApplicable", err)
	}
}

func TestGuestBadInput(t *testing.T) {
	// No systemctl: the guests are still reported, their state unknown.
	env := networkEnv(t, "testdata/root-nixos")
	env.Run = &execFakeRunner{}
	obs, err := (&Guest{}).Collect(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "systemctl show") || len(obs) != 2 {
		t.Fatalf("got %d observations, err %v", len(obs), err)
	}
	for _, o := range obs {
		d := o.Data.(events.Guest)
		if d.ActiveState != "unknown" || d.Healthy || d.MemoryBytes != 0 {
			t.Errorf("%s: %+v", d.Name, d)
		}
	}
	// A MicroVM whose runner link dangles, and an unreadable container file.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "var/lib/microvms/broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nix/store/missing-microvm-qemu-broken", filepath.Join(dir, "var/lib/microvms/broken/current")); err != nil {
		t.Fatal(err)
	}
	env = Env{Root: os.DirFS(dir), Run: &execFakeRunner{answers: map[string]execFakeAnswer{
		"systemctl show --property=Id,Description,LoadState,ActiveState,SubState,NRestarts -- microvm@broken.service": {out: "Id=microvm@broken.service\nActiveState=failed\nSubState=failed\nNRestarts=5\n"},
	}}}
	obs, err = (&Guest{}).Collect(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "broken") || len(obs) != 1 {
		t.Fatalf("got %d observations, err %v", len(obs), err)
	}
	if d := obs[0].Data.(events.Guest); d.Healthy || d.ActiveState != "failed" || d.Restarts != 5 {
		t.Errorf("broken guest %+v", d)
	}
}
