package producers

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// Profile reports what the host is: hostname, OS, kernel, architecture,
// CPU, GPUs, memory and swap, boot time, locale, timezone, displays,
// installed programs, graphical sessions, run directories and, on NixOS
// and nix-darwin, the current system with the age of its nixpkgs. It looks
// every minute (Collect) and reports at start, whenever something changed,
// and at least every 6 hours (the refresh period, the config's
// "interval"). Values that change all the time (uptime, free memory, the
// age of nixpkgs in days) are sent but do not count as a change.
type Profile struct {
	check time.Duration
	gate  *ChangeGate

	mu sync.Mutex
	// Caches of slow lookups, keyed by what invalidates them.
	pkgKey    string
	pkgCount  int
	pkgErr    error
	nixKey    string
	nixInfo   profileNixVersion
	nixErr    error
	pciModels map[string]string
}

type profileOptions struct {
	// Check is how often the host is looked at for changes ("1m").
	Check string `json:"check,omitempty"`
}

func profileSpec() Spec {
	return Spec{Name: "profile", Doc: "hostname, OS, kernel, CPU, GPUs, memory, locale, timezone, displays, programs, sessions, Nix system", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) { return NewProfile(raw) }}
}

// NewProfile builds the profile producer from its options ({"check": "1m"}).
func NewProfile(raw json.RawMessage) (*Profile, error) {
	var o profileOptions
	if err := DecodeOptions(raw, &o); err != nil {
		return nil, err
	}
	p := &Profile{check: time.Minute, gate: NewChangeGate(6 * time.Hour), pciModels: map[string]string{}}
	if o.Check != "" {
		d, err := time.ParseDuration(o.Check)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("options: check: want a positive duration, got %q", o.Check)
		}
		p.check = d
	}
	return p, nil
}

func (p *Profile) Name() string { return "profile" }

// Interval is how often the host is checked for changes.
func (p *Profile) Interval() time.Duration { return min(p.check, p.gate.Refresh()) }

// SetInterval sets the refresh period (the config's "interval").
func (p *Profile) SetInterval(d time.Duration) { p.gate.SetRefresh(d) }

// Collect looks at the host and returns a profile when it changed or the
// refresh period passed; what could not be read is named in the error,
// with the rest reported.
func (p *Profile) Collect(ctx context.Context, env Env) ([]Observation, error) {
	d, err := p.Look(ctx, env)
	stable := d
	stable.UptimeSeconds, stable.Memory.AvailableBytes, stable.Memory.SwapFreeBytes = 0, 0, 0
	if d.Nix != nil {
		n := *d.Nix
		n.NixpkgsAgeDays = nil
		stable.Nix = &n
	}
	if !p.gate.Due(env.Now(), stable) {
		return nil, err
	}
	return []Observation{{Kind: "profile", Data: d}}, err
}

// Look reads the whole profile, every time.
func (p *Profile) Look(ctx context.Context, env Env) (events.Profile, error) {
	var d events.Profile
	var errs []string
	note := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	var err error
	d.Hostname, err = readFirstLine(env.Root, "proc/sys/kernel/hostname")
	note(err)
	if b, err := bounded.ReadFile(env.Root, "etc/os-release", maxSmallFile); err == nil {
		d.OS = parseOSRelease(b)
	} else if b, err2 := bounded.ReadFile(env.Root, "usr/lib/os-release", maxSmallFile); err2 == nil {
		d.OS = parseOSRelease(b)
	} else if b, err3 := bounded.ReadFile(env.Root, "System/Library/CoreServices/SystemVersion.plist", maxSmallFile); err3 == nil {
		d.OS = profileParseMacVersion(b)
	} else {
		note(fmt.Errorf("read os-release: %w", err))
	}
	release, err := readFirstLine(env.Root, "proc/sys/kernel/osrelease")
	note(err)
	version, _ := readFirstLine(env.Root, "proc/sys/kernel/version")
	d.Kernel = strings.TrimSpace("Linux " + release + " " + version)
	d.Arch, err = readFirstLine(env.Root, "proc/sys/kernel/arch")
	if err != nil || d.Arch == "" {
		d.Arch = runtime.GOARCH
	}
	if b, err := bounded.ReadFile(env.Root, "proc/cpuinfo", maxProcTable); err == nil {
		d.CPU = parseCPUInfo(b)
	} else {
		note(fmt.Errorf("read /proc/cpuinfo: %w", err))
	}
	if m, err := readMeminfo(env.Root); err == nil {
		d.Memory = events.Memory{TotalBytes: m["MemTotal"], AvailableBytes: m["MemAvailable"],
			SwapTotalBytes: m["SwapTotal"], SwapFreeBytes: m["SwapFree"]}
	} else {
		note(err)
	}
	if b, err := bounded.ReadFile(env.Root, "proc/stat", maxProcTable); err == nil {
		if bt, ok := parseBootTime(b); ok {
			d.BootTime = bt
		}
	} else {
		note(fmt.Errorf("read /proc/stat: %w", err))
	}
	if up, err := readFloats(env.Root, "proc/uptime", 1); err == nil {
		d.UptimeSeconds = up[0]
	}
	d.GPUs, d.Displays = p.readDRM(env.Root)
	d.Locale = profileReadLocale(env.Root)
	d.Timezone = profileReadTimezone(env.Root)
	users := profileReadPasswd(env.Root)
	d.RunDirs, d.Sessions = profileReadSessions(env.Root, users)
	d.Nix, err = p.readNix(ctx, env, d.OS.ID)
	note(err)
	d.Programs, err = p.readPrograms(ctx, env, d.Nix)
	note(err)
	if len(errs) > 0 {
		// Report what could be read, and say what could not.
		return d, fmt.Errorf("profile incomplete: %s", strings.Join(errs, "; "))
	}
	return d, nil
}

// parseOSRelease reads ID, VERSION_ID and PRETTY_NAME from os-release(5).
func parseOSRelease(b []byte) events.OSInfo {
	var o events.OSInfo
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `"'`)
		}
		switch k {
		case "ID":
			o.ID = v
		case "VERSION_ID":
			o.VersionID = v
		case "PRETTY_NAME":
			o.PrettyName = v
		}
	}
	if o.ID == "" {
		o.ID = "linux" // os-release(5): ID defaults to "linux"
	}
	return o
}

// parseCPUInfo reads the model, the number of physical cores and of
// hardware threads from /proc/cpuinfo (x86 and arm64 layouts).
func parseCPUInfo(b []byte) events.CPUInfo {
	var c events.CPUInfo
	cores := map[string]int{} // physical id -> cpu cores
	phys := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "processor":
			c.Threads++
		case "model name", "Model", "cpu model":
			if c.Model == "" {
				c.Model = v
			}
		case "physical id":
			phys = v
		case "cpu cores":
			if n, err := strconv.Atoi(v); err == nil {
				cores[phys] = n
			}
		}
	}
	for _, n := range cores {
		c.Cores += n
	}
	if c.Cores == 0 {
		c.Cores = c.Threads
	}
	return c
}

// parseBootTime reads "btime <unix seconds>" from /proc/stat.
func parseBootTime(b []byte) (time.Time, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(n, 0).UTC(), true
		}
	}
	return time.Time{}, false
}

// ChangeGate decides when a change-driven collector reports: when what it
// sees differs from what it last reported, and at least once per refresh
// period. It keeps a hash of the last reported value, so a producer can
// look often and cheaply and publish rarely.
type ChangeGate struct {
	mu      sync.Mutex
	refresh time.Duration
	last    [sha256.Size]byte
	lastAt  time.Time
}

// NewChangeGate returns a gate that lets an unchanged value through once
// per refresh period.
func NewChangeGate(refresh time.Duration) *ChangeGate { return &ChangeGate{refresh: refresh} }

// Refresh is the period after which an unchanged value is reported again.
func (g *ChangeGate) Refresh() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refresh
}

// SetRefresh changes the refresh period.
func (g *ChangeGate) SetRefresh(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refresh = d
}

// Due reports whether v (the stable part of an observation) should be
// reported at now, and if so remembers it as reported.
func (g *ChangeGate) Due(now time.Time, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return true
	}
	h := sha256.Sum256(b)
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.lastAt.IsZero() && h == g.last && now.Sub(g.lastAt) < g.refresh && !now.Before(g.lastAt) {
		return false
	}
	g.last, g.lastAt = h, now
	return true
}

// profileResolve resolves the symbolic links in name inside root, the way
// the kernel would if root were "/": an absolute link target starts again
// at root. A NixOS fixture tree (run/current-system -> /nix/store/…) is
// then read inside the tree, never on the machine running the tests.
func profileResolve(root fs.FS, name string) (string, error) {
	parts := strings.Split(strings.Trim(name, "/"), "/")
	done := ""
	for hops := 0; len(parts) > 0; {
		p := parts[0]
		parts = parts[1:]
		if p == "" || p == "." {
			continue
		}
		if p == ".." {
			done = path.Dir(done)
			if done == "." {
				done = ""
			}
			continue
		}
		next := path.Join(done, p)
		info, err := fs.Lstat(root, next)
		if err != nil {
			return "", err
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", name)
		}
		target, err := fs.ReadLink(root, next)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			done = ""
		}
		parts = append(strings.Split(strings.Trim(target, "/"), "/"), parts...)
	}
	if done == "" {
		return ".", nil
	}
	return done, nil
}

// profileVendors names the PCI vendors of common graphics devices
// (https://pci-ids.ucw.cz/).
var profileVendors = map[string]string{
	"0x1002": "AMD", "0x10de": "NVIDIA", "0x8086": "Intel", "0x1af4": "Red Hat (virtio)", "0x1234": "QEMU",
	"0x15ad": "VMware", "0x1414": "Microsoft", "0x106b": "Apple", "0x1a03": "ASPEED", "0x102b": "Matrox",
	"0x5143": "Qualcomm", "0x14e4": "Broadcom", "0x1d17": "Zhaoxin",
}

// profileCardRE matches a DRM card ("card0"); its connectors are
// "card0-HDMI-A-1".
var profileCardRE = regexp.MustCompile(`^card[0-9]+$`)

// readDRM reads the graphics cards and connected displays from
// /sys/class/drm: card*/device/{vendor,device,uevent} and
// card*-*/{status,modes} (the kernel's DRM sysfs interface).
func (p *Profile) readDRM(root fs.FS) ([]events.GPU, []events.Display) {
	entries, err := fs.ReadDir(root, "sys/class/drm")
	if err != nil {
		return nil, nil
	}
	var gpus []events.GPU
	var displays []events.Display
	for _, e := range entries {
		name := e.Name()
		dir := "sys/class/drm/" + name
		if profileCardRE.MatchString(name) {
			g := events.GPU{Card: name}
			g.VendorID, _ = readFirstLine(root, dir+"/device/vendor")
			g.DeviceID, _ = readFirstLine(root, dir+"/device/device")
			if g.VendorID == "" && g.DeviceID == "" {
				continue // a virtual card without a device (vkms)
			}
			g.Vendor = profileVendors[strings.ToLower(g.VendorID)]
			if b, err := bounded.ReadFile(root, dir+"/device/uevent", maxSmallFile); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "DRIVER="); ok {
						g.Driver = v
					}
				}
			}
			g.Model = p.pciModel(root, g.VendorID, g.DeviceID)
			gpus = append(gpus, g)
			continue
		}
		if !strings.HasPrefix(name, "card") || !strings.Contains(name, "-") {
			continue
		}
		if st, _ := readFirstLine(root, dir+"/status"); st != "connected" {
			continue
		}
		disp := events.Display{Connector: name}
		if b, err := bounded.ReadFile(root, dir+"/modes", maxSmallFile); err == nil {
			seen := map[string]bool{}
			for _, m := range strings.Fields(string(b)) {
				if !seen[m] && len(disp.Modes) < 64 {
					seen[m] = true
					disp.Modes = append(disp.Modes, m)
				}
			}
		}
		displays = append(displays, disp)
	}
	return gpus, displays
}

// pciModel finds a device's name in the host's pci.ids (hwdata), once per
// vendor and device.
func (p *Profile) pciModel(root fs.FS, vendor, device string) string {
	v := strings.TrimPrefix(strings.ToLower(vendor), "0x")
	dev := strings.TrimPrefix(strings.ToLower(device), "0x")
	if v == "" || dev == "" {
		return ""
	}
	key := v + ":" + dev
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.pciModels[key]; ok {
		return m
	}
	model := ""
	for _, f := range []string{"usr/share/hwdata/pci.ids", "usr/share/misc/pci.ids", "run/current-system/sw/share/hwdata/pci.ids"} {
		if r, err := profileResolve(root, f); err == nil {
			if b, err := bounded.ReadFile(root, r, maxProcTable); err == nil {
				model = profilePCIModel(b, v, dev)
				break
			}
		}
	}
	p.pciModels[key] = model
	return model
}

// profilePCIModel looks up a device in pci.ids: vendor lines "1002  AMD…"
// at the start of a line, their devices indented by one tab.
func profilePCIModel(b []byte, vendor, device string) string {
	inVendor := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] != '\t' {
			if inVendor {
				return ""
			}
			inVendor = strings.HasPrefix(line, vendor+"  ")
			continue
		}
		if inVendor && strings.HasPrefix(line, "\t"+device+"  ") {
			return strings.TrimSpace(line[len(device)+3:])
		}
	}
	return ""
}

// profileReadLocale reads LANG, LANGUAGE and LC_* from /etc/locale.conf
// (systemd, NixOS) or /etc/default/locale (Debian).
func profileReadLocale(root fs.FS) map[string]string {
	for _, f := range []string{"etc/locale.conf", "etc/default/locale"} {
		b, err := bounded.ReadFile(root, f, maxSmallFile)
		if err != nil {
			continue
		}
		m := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
			if !ok || !(k == "LANG" || k == "LANGUAGE" || strings.HasPrefix(k, "LC_")) {
				continue
			}
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			if v = strings.Trim(v, `"'`); v != "" && len(v) <= 128 {
				m[k] = v
			}
		}
		if len(m) > 0 {
			return m
		}
	}
	return nil
}

// profileReadTimezone reads /etc/timezone (Debian) or the zone the
// /etc/localtime link points to (…/zoneinfo/Europe/Berlin on NixOS,
// nix-darwin and systemd hosts).
func profileReadTimezone(root fs.FS) string {
	if tz, err := readFirstLine(root, "etc/timezone"); err == nil && tz != "" {
		return tz
	}
	target, err := fs.ReadLink(root, "etc/localtime")
	if err != nil {
		return ""
	}
	if _, zone, ok := strings.Cut(target, "zoneinfo/"); ok {
		return zone
	}
	return ""
}

// profileReadPasswd maps uids to user names from /etc/passwd.
func profileReadPasswd(root fs.FS) map[int]string {
	b, err := bounded.ReadFile(root, "etc/passwd", maxProcTable)
	if err != nil {
		return nil
	}
	users := map[int]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 {
			continue
		}
		if uid, err := strconv.Atoi(f[2]); err == nil {
			users[uid] = f[0]
		}
	}
	return users
}

// profileReadSessions lists /run/user/<uid> (a user's runtime directory,
// present while they are logged in) and the Wayland sockets in it, and the
// X11 sockets in /tmp/.X11-unix (whose owner is not known through the
// rooted filesystem: uid -1).
func profileReadSessions(root fs.FS, users map[int]string) ([]events.RunDir, []events.GraphicSession) {
	var dirs []events.RunDir
	var sessions []events.GraphicSession
	entries, _ := fs.ReadDir(root, "run/user")
	for _, e := range entries {
		uid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		dirs = append(dirs, events.RunDir{Path: "/run/user/" + e.Name(), UID: uid, User: users[uid]})
		inner, _ := fs.ReadDir(root, "run/user/"+e.Name())
		for _, s := range inner {
			n := s.Name()
			if strings.HasPrefix(n, "wayland-") && !strings.HasSuffix(n, ".lock") {
				sessions = append(sessions, events.GraphicSession{User: users[uid], UID: uid, Type: "wayland", Display: n})
			}
		}
	}
	xs, _ := fs.ReadDir(root, "tmp/.X11-unix")
	for _, x := range xs {
		if n, ok := strings.CutPrefix(x.Name(), "X"); ok {
			if _, err := strconv.Atoi(n); err == nil {
				sessions = append(sessions, events.GraphicSession{UID: -1, Type: "x11", Display: ":" + n})
			}
		}
	}
	return dirs, sessions
}

// profileNixVersion is what `nixos-version --json` (or `darwin-version
// --json`) prints.
type profileNixVersion struct {
	NixosVersion          string `json:"nixosVersion"`
	DarwinLabel           string `json:"darwinLabel"`
	NixpkgsRevision       string `json:"nixpkgsRevision"`
	ConfigurationRevision string `json:"configurationRevision"`
}

// profileVersionDateRE finds nixpkgs' date in a version label such as
// "25.11.20261120.a1b2c3d" (nixos/modules/misc/version.nix: release,
// then the date of the nixpkgs commit, then its short revision).
var profileVersionDateRE = regexp.MustCompile(`\.(\d{8})\.`)

// readNix reads the current NixOS or nix-darwin system: the
// /run/current-system link, the system profile generation and when it was
// made, and the version and revisions from nixos-version/darwin-version
// (run only when the system changed).
func (p *Profile) readNix(ctx context.Context, env Env, osID string) (*events.NixSystem, error) {
	target, err := fs.ReadLink(env.Root, "run/current-system")
	if err != nil {
		return nil, nil
	}
	n := &events.NixSystem{Flavor: "nixos", SystemPath: target}
	cmd := "nixos-version"
	if osID != "nixos" && (osID == "macos" || strings.Contains(path.Base(target), "darwin-system")) {
		n.Flavor, cmd = "nix-darwin", "darwin-version"
	}
	if link, err := fs.ReadLink(env.Root, "nix/var/nix/profiles/system"); err == nil {
		base := path.Base(link)
		if g, ok := strings.CutPrefix(base, "system-"); ok {
			g, _ = strings.CutSuffix(g, "-link")
			n.Generation, _ = strconv.Atoi(g)
		}
		if info, err := fs.Lstat(env.Root, path.Join("nix/var/nix/profiles", base)); err == nil {
			t := info.ModTime().UTC()
			n.BuiltAt = &t
		}
	}
	p.mu.Lock()
	if p.nixKey != target {
		p.nixInfo, p.nixErr = profileRunNixVersion(ctx, env.Run, cmd)
		p.nixKey = target
		if p.nixErr != nil {
			p.nixKey = "" // try again next time
		}
	}
	v, verr := p.nixInfo, p.nixErr
	p.mu.Unlock()
	n.Version = v.NixosVersion
	if n.Version == "" {
		n.Version = v.DarwinLabel
	}
	n.NixpkgsRevision, n.ConfigurationRevision = v.NixpkgsRevision, v.ConfigurationRevision
	if m := profileVersionDateRE.FindStringSubmatch(n.Version); m != nil {
		if t, err := time.Parse("20060102", m[1]); err == nil {
			age := int(env.Now().Sub(t) / (24 * time.Hour))
			n.NixpkgsDate, n.NixpkgsAgeDays = &t, &age
		}
	}
	return n, verr
}

func profileRunNixVersion(ctx context.Context, run Runner, cmd string) (profileNixVersion, error) {
	var v profileNixVersion
	if run == nil {
		return v, fmt.Errorf("%s: no command runner", cmd)
	}
	out, code, err := run.Run(ctx, cmd, "--json")
	if err != nil {
		return v, fmt.Errorf("%s --json: %w", cmd, err)
	}
	if code != 0 {
		return v, fmt.Errorf("%s --json: exit status %d", cmd, code)
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return v, fmt.Errorf("%s --json: %w", cmd, err)
	}
	return v, nil
}

// readPrograms counts the packages of the system profile (the Nix closure
// of the current system, or dpkg's installed packages), the desktop
// applications, and finds the default terminal.
func (p *Profile) readPrograms(ctx context.Context, env Env, nix *events.NixSystem) (*events.Programs, error) {
	pr := &events.Programs{}
	var err error
	switch {
	case nix != nil:
		pr.PackageManager = "nix"
		pr.Packages, err = p.cached(nix.SystemPath, func() (int, error) {
			if env.Run == nil {
				return 0, fmt.Errorf("nix-store: no command runner")
			}
			out, code, err := env.Run.Run(ctx, "nix-store", "--query", "--requisites", "/run/current-system")
			if err != nil {
				return 0, fmt.Errorf("nix-store --query --requisites: %w", err)
			}
			if code != 0 {
				return 0, fmt.Errorf("nix-store --query --requisites: exit status %d", code)
			}
			return bytes.Count(out, []byte("\n")), nil
		})
	default:
		if info, statErr := fs.Stat(env.Root, "var/lib/dpkg/status"); statErr == nil {
			pr.PackageManager = "dpkg"
			key := fmt.Sprintf("dpkg:%d:%d", info.Size(), info.ModTime().UnixNano())
			pr.Packages, err = p.cached(key, func() (int, error) {
				b, err := bounded.ReadFile(env.Root, "var/lib/dpkg/status", maxBigTable)
				if err != nil {
					return 0, fmt.Errorf("read /var/lib/dpkg/status: %w", err)
				}
				return profileCountDpkg(b), nil
			})
		}
	}
	seen := map[string]bool{}
	for _, dir := range []string{"usr/share/applications", "usr/local/share/applications", "run/current-system/sw/share/applications",
		"var/lib/flatpak/exports/share/applications"} {
		r, rerr := profileResolve(env.Root, dir)
		if rerr != nil {
			continue
		}
		entries, _ := fs.ReadDir(env.Root, r)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".desktop") {
				seen[e.Name()] = true
			}
		}
	}
	pr.DesktopApplications = len(seen)
	if t, lerr := fs.ReadLink(env.Root, "etc/alternatives/x-terminal-emulator"); lerr == nil {
		pr.DefaultTerminal = path.Base(t)
	} else if b, rerr := bounded.ReadFile(env.Root, "etc/xdg/xdg-terminals.list", maxSmallFile); rerr == nil {
		// xdg-terminal-exec's list: desktop entry ids, first preferred.
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				pr.DefaultTerminal = strings.TrimSuffix(line, ".desktop")
				break
			}
		}
	}
	if pr.PackageManager == "" && pr.DesktopApplications == 0 && pr.DefaultTerminal == "" {
		return nil, err
	}
	return pr, err
}

// cached runs count once per key; a failure is retried next time.
func (p *Profile) cached(key string, count func() (int, error)) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pkgKey == key && p.pkgErr == nil {
		return p.pkgCount, nil
	}
	p.pkgCount, p.pkgErr = count()
	p.pkgKey = key
	return p.pkgCount, p.pkgErr
}

// profileCountDpkg counts the installed packages in dpkg's status file
// (deb-status(5): a "Status: install ok installed" field per package).
func profileCountDpkg(b []byte) int {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "Status: ") && strings.HasSuffix(line, " installed") && strings.Contains(line, " ok ") {
			n++
		}
	}
	return n
}

// profileMacKeyRE reads <key>K</key><string>V</string> pairs of a plist.
var profileMacKeyRE = regexp.MustCompile(`<key>(ProductName|ProductVersion)</key>\s*<string>([^<]*)</string>`)

// profileParseMacVersion reads macOS's SystemVersion.plist.
func profileParseMacVersion(b []byte) events.OSInfo {
	o := events.OSInfo{ID: "macos"}
	name := "macOS"
	for _, m := range profileMacKeyRE.FindAllSubmatch(b, -1) {
		switch string(m[1]) {
		case "ProductName":
			name = string(m[2])
		case "ProductVersion":
			o.VersionID = string(m[2])
		}
	}
	o.PrettyName = strings.TrimSpace(name + " " + o.VersionID)
	return o
}
