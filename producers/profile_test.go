package producers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

func profileLook(t *testing.T, root string, now time.Time) (events.Profile, error) {
	t.Helper()
	p, err := NewProfile(nil)
	if err != nil {
		t.Fatal(err)
	}
	env := Env{Host: "goliath", Root: os.DirFS(root), Run: execCapturedRunner(t, root), Now: func() time.Time { return now }}
	obs, err := p.Collect(context.Background(), env)
	if len(obs) != 1 {
		t.Fatalf("Collect returned %d observations (err %v)", len(obs), err)
	}
	return obs[0].Data.(events.Profile), err
}

func profileLinkTime(t *testing.T, link string) *time.Time {
	t.Helper()
	info, err := os.Lstat(link)
	if err != nil {
		t.Fatal(err)
	}
	mt := info.ModTime().UTC()
	return &mt
}

func TestProfileNixOSRoot(t *testing.T) {
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	got, err := profileLook(t, "testdata/root-nixos", now)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	date := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	age := 7
	want := events.Profile{
		Hostname:      "goliath",
		OS:            events.OSInfo{ID: "nixos", VersionID: "25.11", PrettyName: "NixOS 25.11 (Xantusia)"},
		Kernel:        "Linux 6.12.41 #1-NixOS SMP PREEMPT_DYNAMIC Thu Jul 24 10:49:34 UTC 2025",
		Arch:          "x86_64",
		CPU:           events.CPUInfo{Model: "AMD Ryzen 7 5700G with Radeon Graphics", Cores: 2, Threads: 4},
		Memory:        events.Memory{TotalBytes: 65536000 * 1024, AvailableBytes: 48828125 * 1024, SwapTotalBytes: 8388608 * 1024, SwapFreeBytes: 8388608 * 1024},
		BootTime:      time.Unix(1795680000, 0).UTC(),
		UptimeSeconds: 72000.5,
		GPUs:          []events.GPU{{Card: "card0", VendorID: "0x1002", DeviceID: "0x1638", Vendor: "AMD", Model: "Cezanne [Radeon Vega Series / Radeon Vega Mobile Series]", Driver: "amdgpu"}},
		Locale:        map[string]string{"LANG": "en_US.UTF-8", "LC_TIME": "de_DE.UTF-8"},
		Timezone:      "Europe/Berlin",
		Displays:      []events.Display{{Connector: "card0-DP-1", Modes: []string{"2560x1440", "1920x1080", "1280x720"}}},
		Programs:      &events.Programs{PackageManager: "nix", Packages: 1423, DesktopApplications: 3, DefaultTerminal: "foot"},
		Sessions:      []events.GraphicSession{{User: "alice", UID: 1000, Type: "wayland", Display: "wayland-1"}, {UID: -1, Type: "x11", Display: ":0"}},
		RunDirs:       []events.RunDir{{Path: "/run/user/1000", UID: 1000, User: "alice"}},
		Nix: &events.NixSystem{Flavor: "nixos", SystemPath: "/nix/store/4x6yq8r3cbbjdqz1mv6p2n5k8w0h7l9a-nixos-system-goliath-25.11.20261120.a1b2c3d",
			Generation: 212, BuiltAt: profileLinkTime(t, "testdata/root-nixos/nix/var/nix/profiles/system-212-link"),
			Version: "25.11.20261120.a1b2c3d", NixpkgsRevision: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", NixpkgsDate: &date, NixpkgsAgeDays: &age,
			ConfigurationRevision: "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestProfileDarwinRoot(t *testing.T) {
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	got, err := profileLook(t, "testdata/root-darwin", now)
	// No /proc on macOS: what needs it is missing and said so.
	if err == nil || !strings.Contains(err.Error(), "/proc/cpuinfo") {
		t.Errorf("err = %v, want it to name /proc", err)
	}
	if got.OS != (events.OSInfo{ID: "macos", VersionID: "15.1", PrettyName: "macOS 15.1"}) || got.Timezone != "Europe/Berlin" {
		t.Errorf("OS %+v, timezone %q", got.OS, got.Timezone)
	}
	n := got.Nix
	if n == nil || n.Flavor != "nix-darwin" || n.Generation != 42 || n.Version != "25.05.20250601.abcdef0+darwin5.1234567" ||
		n.NixpkgsRevision != "abcdef0123456789abcdef0123456789abcdef01" || n.NixpkgsAgeDays == nil || *n.NixpkgsAgeDays != 544 {
		t.Errorf("nix %+v", n)
	}
	if got.Programs == nil || got.Programs.Packages != 311 || got.Programs.PackageManager != "nix" {
		t.Errorf("programs %+v", got.Programs)
	}
}

// TestProfileThisMachine reads the root captured from the development
// machine (Debian 12; see testdata/README.md).
func TestProfileThisMachine(t *testing.T) {
	got, err := profileLook(t, "testdata/root-debian", time.Now())
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	status, err := os.ReadFile("testdata/root-debian/var/lib/dpkg/status")
	if err != nil {
		t.Fatal(err)
	}
	installed := strings.Count(string(status), "\nStatus: install ok installed\n")
	if got.OS.ID != "debian" || got.Hostname == "" || got.CPU.Threads == 0 || got.Memory.TotalBytes == 0 || got.BootTime.IsZero() {
		t.Errorf("basics %+v", got)
	}
	if got.Programs == nil || got.Programs.PackageManager != "dpkg" || got.Programs.Packages != installed || got.Programs.DesktopApplications != 2 {
		t.Errorf("programs %+v, want %d dpkg packages", got.Programs, installed)
	}
	if got.Timezone != "Etc/UTC" || got.Nix != nil || got.GPUs != nil || got.Locale != nil {
		t.Errorf("timezone %q nix %+v gpus %+v locale %v", got.Timezone, got.Nix, got.GPUs, got.Locale)
	}
}

func TestProfileReportsOnChange(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, s string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/sys/kernel/hostname", "h\n")
	write("proc/sys/kernel/osrelease", "6.1\n")
	write("proc/cpuinfo", "processor : 0\nmodel name : x\n")
	write("proc/meminfo", "MemTotal: 100 kB\nMemAvailable: 50 kB\n")
	write("proc/stat", "btime 1\n")
	write("proc/uptime", "10.0 1.0\n")
	write("etc/os-release", "ID=debian\n")
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	env := Env{Root: os.DirFS(dir), Run: &execFakeRunner{}, Now: func() time.Time { return now }}
	p, _ := NewProfile(nil)
	p.SetInterval(6 * time.Hour)
	count := func() int {
		obs, err := p.Collect(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		return len(obs)
	}
	if count() != 1 {
		t.Fatal("first look reports nothing")
	}
	now = now.Add(time.Minute)
	write("proc/uptime", "70.0 1.0\n")
	write("proc/meminfo", "MemTotal: 100 kB\nMemAvailable: 40 kB\n")
	if count() != 0 {
		t.Error("uptime and free memory alone counted as a change")
	}
	now = now.Add(time.Minute)
	write("etc/locale.conf", "LANG=de_DE.UTF-8\n")
	if count() != 1 {
		t.Error("locale change not reported")
	}
	now = now.Add(6 * time.Hour)
	if count() != 1 {
		t.Error("nothing reported after 6 hours")
	}
	if p.Interval() != time.Minute {
		t.Errorf("check interval %v", p.Interval())
	}
}

func TestProfileBadInput(t *testing.T) {
	t.Run("empty root", func(t *testing.T) {
		p, _ := NewProfile(nil)
		obs, err := p.Collect(context.Background(), Env{Root: os.DirFS(t.TempDir()), Now: time.Now})
		if err == nil || len(obs) != 1 || !strings.Contains(err.Error(), "/proc/meminfo") {
			t.Errorf("got %d observations, err %v", len(obs), err)
		}
	})
	t.Run("NixOS without nixos-version and nix-store", func(t *testing.T) {
		p, _ := NewProfile(nil)
		env := Env{Root: os.DirFS("testdata/root-nixos"), Run: &execFakeRunner{}, Now: time.Now}
		obs, err := p.Collect(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "nixos-version") || !strings.Contains(err.Error(), "nix-store") {
			t.Errorf("err = %v", err)
		}
		d := obs[0].Data.(events.Profile)
		if d.Nix == nil || d.Nix.SystemPath == "" || d.Nix.Version != "" || d.Hostname != "goliath" {
			t.Errorf("partial profile %+v", d.Nix)
		}
	})
	t.Run("garbage files", func(t *testing.T) {
		dir := t.TempDir()
		for rel, s := range map[string]string{
			"proc/meminfo": "MemTotal: lots\n", "proc/cpuinfo": "\x00\x01", "proc/stat": "btime x\n", "etc/os-release": "===\n",
			"sys/class/drm/card0/device/vendor": "", "sys/class/drm/card0-DP-1/status": "connected\n", "etc/locale.conf": "LANG\nLC_ALL=\n",
			"run/user/notanumber/wayland-0": "", "var/lib/dpkg/status": "Status: install ok installed", "etc/passwd": "x:y\n::::\n",
		} {
			p := filepath.Join(dir, rel)
			_ = os.MkdirAll(filepath.Dir(p), 0o755)
			_ = os.WriteFile(p, []byte(s), 0o644)
		}
		p, _ := NewProfile(nil)
		obs, err := p.Collect(context.Background(), Env{Root: os.DirFS(dir), Run: &execFakeRunner{}, Now: time.Now})
		if err == nil || len(obs) != 1 {
			t.Errorf("got %d observations, err %v", len(obs), err)
		}
	})
}

func TestProfileResolveStaysInRoot(t *testing.T) {
	got, err := profileResolve(os.DirFS("testdata/root-nixos"), "run/current-system/sw/share/applications")
	if err != nil || got != "nix/store/9zl0m2xq1j7v4c8d3s5f6g7h8j9k0l1m-system-path/share/applications" {
		t.Errorf("got %q, %v", got, err)
	}
}
