package producers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// Guest reports the NixOS containers (declared in /etc/nixos-containers,
// run by container@<name>.service) and microvm.nix MicroVMs (state under
// /var/lib/microvms/<name>, run by microvm@<name>.service) of the host:
// unit state and restarts, addresses, memory and CPU from the unit's
// cgroup, the size of the state directory, and the host paths shared in.
type Guest struct {
	every time.Duration
	// statfs reads the filesystem holding a state directory; tests inject
	// a fake.
	statfs func(path string) (FSUsage, error)
}

// NewGuest returns the guest producer reading filesystems with statfs.
func NewGuest(statfs func(path string) (FSUsage, error)) *Guest {
	return &Guest{every: 5 * time.Minute, statfs: statfs}
}

func guestSpec() Spec {
	return Spec{Name: "guest", Doc: "NixOS containers and MicroVMs: state, health, addresses, memory, CPU, disk", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) {
			if err := DecodeOptions(raw, &struct{}{}); err != nil {
				return nil, err
			}
			return NewGuest(FSStatfs), nil
		}}
}

func (g *Guest) Name() string            { return "guest" }
func (g *Guest) Interval() time.Duration { return g.every }

// guestMaxWalk bounds the files counted in one state directory, so a
// container root with millions of files cannot stall a collection.
const guestMaxWalk = 200_000

// guestFound is a guest seen on disk, before its unit and cgroup are read.
type guestFound struct {
	d      events.Guest
	taps   []string
	links  []string
	errors []error
}

func (g *Guest) Collect(ctx context.Context, env Env) ([]Observation, error) {
	found, err := guestDiscover(env.Root)
	if len(found) == 0 {
		if err != nil {
			return nil, err
		}
		return nil, ErrNotApplicable
	}
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	units := make([]string, len(found))
	for i, f := range found {
		units[i] = f.d.Unit
	}
	var shown map[string]guestUnit
	if env.Run != nil {
		shown, err = guestShow(ctx, env.Run, units)
	} else {
		err = fmt.Errorf("systemctl show: no command runner")
	}
	if err != nil {
		errs = append(errs, err)
	}
	var neigh map[string][]string
	for _, f := range found {
		if len(f.taps) > 0 && env.Run != nil {
			neigh, err = networkRunJSON(ctx, env.Run, guestParseNeigh, "ip", "-j", "neigh", "show")
			if err != nil {
				errs = append(errs, err)
			}
			break
		}
	}
	uptime, uptimeErr := guestHostUptime(env.Root)
	var obs []Observation
	for _, f := range found {
		d := f.d
		errs = append(errs, f.errors...)
		if st, ok := shown[d.Unit]; ok {
			d.ActiveState, d.SubState, d.Restarts = st.ActiveState, st.SubState, st.Restarts
			if st.activeSinceUsec > 0 && d.ActiveState == "active" && uptimeErr == nil {
				if up := uptime - float64(st.activeSinceUsec)/1e6; up > 0 {
					d.UptimeSeconds = up
				}
			}
		} else {
			d.ActiveState = "unknown"
		}
		d.Healthy = d.ActiveState == "active" && (d.SubState == "running" || d.SubState == "")
		for _, tap := range f.taps {
			d.Addresses = append(d.Addresses, neigh[tap]...)
		}
		if d.ActiveState == "active" {
			cg, err := guestReadCgroup(env.Root, d.Unit)
			if err != nil {
				errs = append(errs, fmt.Errorf("guest %s: %w", d.Name, err))
			}
			d.MemoryBytes, d.CPUUsageSeconds, d.MemoryMaxBytes = cg.memory, cg.cpuSeconds, cg.memoryMax
			if cg.memoryMax > 0 {
				d.MemoryPercent = roundPercent(float64(cg.memory) / float64(cg.memoryMax) * 100)
			}
		}
		d.Interfaces = f.links
		for _, link := range f.links {
			// The host's end of the link: what it transmits, the guest
			// receives.
			rx, errRX := readUint(env.Root, "sys/class/net/"+link+"/statistics/tx_bytes")
			tx, errTX := readUint(env.Root, "sys/class/net/"+link+"/statistics/rx_bytes")
			if errRX != nil || errTX != nil {
				continue // the link is down while the guest is stopped
			}
			d.NetRXBytes += rx
			d.NetTXBytes += tx
		}
		if d.StateDir != "" {
			sub := ""
			if d.Type == "container" {
				sub = "var/lib" // the container's root: its services' state directories
			}
			size, by, err := guestDiskUsageBy(env.Root, strings.TrimPrefix(d.StateDir, "/"), sub)
			if err != nil {
				errs = append(errs, fmt.Errorf("guest %s: %w", d.Name, err))
			}
			d.DiskBytes = size
			if len(by) > 0 {
				d.StateDirBytes = by
			}
			if g.statfs != nil {
				if u, err := g.statfs(d.StateDir); err == nil && u.TotalBytes > 0 {
					d.DiskFSBytes, d.DiskFreeBytes = u.TotalBytes, u.AvailableBytes
					d.DiskPercent = roundPercent(float64(u.TotalBytes-u.FreeBytes) / float64(u.TotalBytes) * 100)
				} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
					// (Not there: the agent reads a fixture root, whose
					// paths statfs cannot see.)
					errs = append(errs, fmt.Errorf("guest %s: %w", d.Name, err))
				}
			}
		}
		for _, p := range d.SharedPaths {
			if p == "/nix/store" || strings.HasPrefix(p, "/nix/store/") || (d.StateDir != "" && strings.HasPrefix(p, d.StateDir+"/")) {
				continue // the store is everybody's; the state dir is counted above
			}
			size, err := guestDiskUsage(env.Root, strings.TrimPrefix(p, "/"))
			if err != nil {
				errs = append(errs, fmt.Errorf("guest %s: %w", d.Name, err))
				continue
			}
			d.SharedSizes = append(d.SharedSizes, events.GuestPath{Path: p, Bytes: size})
		}
		obs = append(obs, Observation{Kind: "guest", Object: d.Name, Data: d})
	}
	if len(errs) > 0 {
		return obs, fmt.Errorf("guest incomplete: %w", errors.Join(errs...))
	}
	return obs, nil
}

// guestDiscover finds the declared containers and the installed MicroVMs.
func guestDiscover(root fs.FS) ([]guestFound, error) {
	var out []guestFound
	var errs []error
	if entries, err := fs.ReadDir(root, "etc/nixos-containers"); err == nil {
		for _, e := range entries {
			name, ok := strings.CutSuffix(e.Name(), ".conf")
			if !ok {
				continue
			}
			f := guestFound{d: events.Guest{Name: name, Type: "container", Unit: "container@" + name + ".service",
				StateDir: "/var/lib/nixos-containers/" + name}}
			if b, err := bounded.ReadFile(root, "etc/nixos-containers/"+e.Name(), maxSmallFile); err == nil {
				f.d.Addresses, f.d.SharedPaths = guestParseContainerConf(b)
			} else {
				f.errors = append(f.errors, fmt.Errorf("read /etc/nixos-containers/%s: %w", e.Name(), err))
			}
			if _, err := fs.Stat(root, strings.TrimPrefix(f.d.StateDir, "/")); err != nil {
				f.d.StateDir = ""
			}
			// systemd-nspawn's --network-veth names the host's end
			// ve-<machine>, cut to the 15 bytes of an interface name.
			if veth := guestVethName(name); fileExists(root, "sys/class/net/"+veth) {
				f.links = []string{veth}
			}
			out = append(out, f)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list /etc/nixos-containers: %w", err))
	}
	if entries, err := fs.ReadDir(root, "var/lib/microvms"); err == nil {
		for _, e := range entries {
			if !e.IsDir() && e.Type()&fs.ModeSymlink == 0 {
				continue
			}
			name := e.Name()
			dir := "var/lib/microvms/" + name
			f := guestFound{d: events.Guest{Name: name, Type: "microvm", Unit: "microvm@" + name + ".service", StateDir: "/" + dir}}
			// microvm.nix's host module links the runner package as
			// <state dir>/current; its share/microvm/ holds the tap
			// interfaces and the virtiofs sources (doc/src/conventions.md).
			runner, err := profileResolve(root, dir+"/current")
			if err != nil {
				f.errors = append(f.errors, fmt.Errorf("microvm %s: resolve current runner: %w", name, err))
			} else {
				f.d.Hypervisor = guestHypervisor(path.Base(runner), name)
				if b, err := bounded.ReadFile(root, runner+"/share/microvm/tap-interfaces", maxSmallFile); err == nil {
					f.taps = strings.Fields(string(b))
					f.links = f.taps
				}
				if shares, err := fs.ReadDir(root, runner+"/share/microvm/virtiofs"); err == nil {
					for _, s := range shares {
						if src, err := readFirstLine(root, runner+"/share/microvm/virtiofs/"+s.Name()+"/source"); err == nil && src != "" {
							f.d.SharedPaths = append(f.d.SharedPaths, src)
						}
					}
				}
			}
			out = append(out, f)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list /var/lib/microvms: %w", err))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].d.Name < out[j].d.Name })
	return out, errors.Join(errs...)
}

// guestHypervisor reads the hypervisor from the runner's store name,
// "<hash>-microvm-<hypervisor>-<name>".
func guestHypervisor(base, name string) string {
	_, rest, ok := strings.Cut(base, "-")
	if !ok {
		return ""
	}
	rest, ok = strings.CutPrefix(rest, "microvm-")
	if !ok {
		return ""
	}
	return strings.TrimSuffix(rest, "-"+name)
}

// guestParseContainerConf reads the shell-style file NixOS writes per
// container (nixos/modules/virtualisation/nixos-containers.nix):
// LOCAL_ADDRESS / LOCAL_ADDRESS6 and --bind / --bind-ro flags in
// EXTRA_NSPAWN_FLAGS.
func guestParseContainerConf(b []byte) (addrs, shared []string) {
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
		case "LOCAL_ADDRESS", "LOCAL_ADDRESS6":
			if a, _, _ := strings.Cut(v, "/"); a != "" {
				addrs = append(addrs, a)
			}
		case "EXTRA_NSPAWN_FLAGS":
			for _, f := range strings.Fields(v) {
				for _, p := range []string{"--bind=", "--bind-ro="} {
					if spec, ok := strings.CutPrefix(f, p); ok {
						src, _, _ := strings.Cut(spec, ":")
						shared = append(shared, strings.TrimPrefix(src, "+"))
					}
				}
			}
		}
	}
	return addrs, shared
}

// guestParseNeigh reads `ip -j neigh show`: per device, the addresses of
// its reachable neighbours (a MicroVM behind its tap interface).
func guestParseNeigh(b []byte) (map[string][]string, error) {
	var rows []struct {
		Dst   string   `json:"dst"`
		Dev   string   `json:"dev"`
		State []string `json:"state"`
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	out := map[string][]string{}
	for _, r := range rows {
		failed := false
		for _, s := range r.State {
			failed = failed || s == "FAILED" || s == "INCOMPLETE"
		}
		if r.Dst != "" && !failed {
			out[r.Dev] = append(out[r.Dev], r.Dst)
		}
	}
	return out, nil
}

// DiscoverGuests lists the host's NixOS containers and MicroVMs under
// root as the guest producer finds them (name, type, unit, state dir;
// no unit state or usage): pinkie shell --guest resolves names with it.
func DiscoverGuests(root fs.FS) ([]events.Guest, error) {
	found, err := guestDiscover(root)
	out := make([]events.Guest, len(found))
	for i, f := range found {
		out[i] = f.d
	}
	return out, err
}
