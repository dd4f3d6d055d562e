package producers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

// guestStatfs answers statfs for the fixture's state directories.
func guestStatfs(path string) (FSUsage, error) {
	switch path {
	case "/var/lib/microvms/db":
		return FSUsage{TotalBytes: 100 << 30, FreeBytes: 8 << 30, AvailableBytes: 7 << 30}, nil
	case "/var/lib/nixos-containers/web":
		return FSUsage{TotalBytes: 1000, FreeBytes: 600, AvailableBytes: 500}, nil
	}
	return FSUsage{}, fmt.Errorf("statfs %s: no such file or directory", path)
}

func TestGuestNixOSRoot(t *testing.T) {
	g := NewGuest(guestStatfs)
	obs, err := g.Collect(context.Background(), networkEnv(t, "testdata/root-nixos"))
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	want := []Observation{
		{Kind: "guest", Object: "db", Data: events.Guest{Name: "db", Type: "microvm", Unit: "microvm@db.service", ActiveState: "active", SubState: "running",
			Healthy: true, Restarts: 2, Addresses: []string{"10.0.0.5"}, MemoryBytes: 536870912, CPUUsageSeconds: 1234.56,
			StateDir: "/var/lib/microvms/db", DiskBytes: 10000, Hypervisor: "cloud-hypervisor", SharedPaths: []string{"/nix/store", "/var/lib/microvms/db/var"},
			// memory.max 1 GiB; /proc/uptime 72000.5 s, active since 71000 s
			// after boot; vm-db sent 7000 and received 5000 bytes.
			MemoryMaxBytes: 1 << 30, MemoryPercent: 50, UptimeSeconds: 1000.5, Interfaces: []string{"vm-db"}, NetRXBytes: 7000, NetTXBytes: 5000,
			DiskFSBytes: 100 << 30, DiskFreeBytes: 7 << 30, DiskPercent: 92}},
		{Kind: "guest", Object: "web", Data: events.Guest{Name: "web", Type: "container", Unit: "container@web.service", ActiveState: "active", SubState: "running",
			Healthy: true, Addresses: []string{"10.233.1.2", "fc00::2"}, MemoryBytes: 104857600, CPUUsageSeconds: 5,
			StateDir: "/var/lib/nixos-containers/web", DiskBytes: 4600, SharedPaths: []string{"/var/lib/web-data", "/etc/ssl/certs"},
			// Its /var/lib per directory: the state of its services (a
			// file right in /var/lib belongs to none).
			StateDirBytes: map[string]uint64{"/var/lib/postgresql": 500, "/var/lib/shop-worker": 0},
			// memory.max "max": no limit; ve-web is the host's end.
			UptimeSeconds: 3600, Interfaces: []string{"ve-web"}, NetRXBytes: 900, NetTXBytes: 300,
			DiskFSBytes: 1000, DiskFreeBytes: 500, DiskPercent: 40,
			SharedSizes: []events.GuestPath{{Path: "/var/lib/web-data", Bytes: 2500}, {Path: "/etc/ssl/certs", Bytes: 1200}}}},
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
		"systemctl show --property=Id,Description,LoadState,ActiveState,SubState,NRestarts,ActiveEnterTimestampMonotonic -- microvm@broken.service": {out: "Id=microvm@broken.service\nActiveState=failed\nSubState=failed\nNRestarts=5\n"},
	}}}
	obs, err = (&Guest{}).Collect(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "broken") || len(obs) != 1 {
		t.Fatalf("got %d observations, err %v", len(obs), err)
	}
	if d := obs[0].Data.(events.Guest); d.Healthy || d.ActiveState != "failed" || d.Restarts != 5 {
		t.Errorf("broken guest %+v", d)
	}
}

// TestGuestCPUStatOfThisMachine reads this machine's own cgroup v2
// cpu.stat (the unified hierarchy's root) and checks the parser against
// the file's usage_usec line read independently, and that it grows.
func TestGuestCPUStatOfThisMachine(t *testing.T) {
	var path string
	for _, p := range []string{"/sys/fs/cgroup/cpu.stat", "/sys/fs/cgroup/unified/cpu.stat"} {
		if _, err := os.Stat(p); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("no cgroup v2 cpu.stat on this machine")
	}
	read := func() ([]byte, float64) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "usage_usec" {
				var us float64
				if _, err := fmt.Sscan(f[1], &us); err != nil {
					t.Fatal(err)
				}
				return b, us / 1e6
			}
		}
		t.Fatalf("%s has no usage_usec line:\n%s", path, b)
		return nil, 0
	}
	b, want := read()
	got, ok := guestParseCPUStat(b)
	if !ok || got != want || got <= 0 {
		t.Fatalf("guestParseCPUStat(%s) = %v, %v; want %v", path, got, ok, want)
	}
	// Burn a little CPU: the counter must move.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		b, _ = read()
		if now, _ := guestParseCPUStat(b); now > got {
			return
		}
	}
	t.Errorf("%s usage_usec did not grow while this test used CPU", path)
}

func TestGuestParseShowMonotonic(t *testing.T) {
	got := guestParseShow([]byte("Id=a.service\nActiveState=active\nActiveEnterTimestampMonotonic=5000000\n\nId=b.service\nActiveState=inactive\nActiveEnterTimestampMonotonic=0\n"))
	if got["a.service"].activeSinceUsec != 5000000 || got["b.service"].activeSinceUsec != 0 || got["b.service"].ActiveState != "inactive" {
		t.Errorf("%+v", got)
	}
}
