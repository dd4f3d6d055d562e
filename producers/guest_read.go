package producers

// The guest producer's readings of one guest: its cgroup, its unit's
// state and uptime, the host end of its links, and its disk.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// guestCgroupDirs are where systemd puts a template instance's cgroup
// (cgroup v2): in the template's slice by default, or in machine.slice.
func guestCgroupDirs(unit string) []string {
	tmpl, _, _ := strings.Cut(unit, "@")
	return []string{
		"sys/fs/cgroup/system.slice/system-" + tmpl + ".slice/" + unit,
		"sys/fs/cgroup/machine.slice/" + unit,
		"sys/fs/cgroup/system.slice/" + unit,
	}
}

// guestCgroup is what a guest's cgroup says.
type guestCgroup struct {
	memory, memoryMax uint64
	cpuSeconds        float64
}

// guestReadCgroup reads memory.current, memory.max (cgroup v2; "max" is
// no limit) and cpu.stat's usage_usec
// (Documentation/admin-guide/cgroup-v2.rst).
func guestReadCgroup(root fs.FS, unit string) (guestCgroup, error) {
	for _, dir := range guestCgroupDirs(unit) {
		mem, err := readFirstLine(root, dir+"/memory.current")
		if err != nil {
			continue
		}
		var cg guestCgroup
		cg.memory, _ = strconv.ParseUint(mem, 10, 64)
		if max, err := readFirstLine(root, dir+"/memory.max"); err == nil && max != "max" {
			cg.memoryMax, _ = strconv.ParseUint(max, 10, 64)
		}
		if b, err := bounded.ReadFile(root, dir+"/cpu.stat", maxSmallFile); err == nil {
			cg.cpuSeconds, _ = guestParseCPUStat(b)
		}
		return cg, nil
	}
	return guestCgroup{}, fmt.Errorf("no cgroup for %s under /sys/fs/cgroup", unit)
}

// guestParseCPUStat reads usage_usec of a cgroup v2 cpu.stat in seconds.
func guestParseCPUStat(b []byte) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
			us, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return float64(us) / 1e6, err == nil
		}
	}
	return 0, false
}

// guestUnit is a guest's unit as systemctl shows it, with when it became
// active (CLOCK_MONOTONIC, microseconds since boot).
type guestUnit struct {
	events.UnitState
	activeSinceUsec uint64
}

// guestShowProperties are the unit properties the guest producer reads.
const guestShowProperties = "--property=Id,Description,LoadState,ActiveState,SubState,NRestarts,ActiveEnterTimestampMonotonic"

// guestShow runs `systemctl show` for the guests' units.
func guestShow(ctx context.Context, run Runner, units []string) (map[string]guestUnit, error) {
	out, err := systemctlShow(ctx, run, guestShowProperties, units)
	if err != nil {
		return nil, err
	}
	return guestParseShow(out), nil
}

// guestParseShow reads systemctl show's blocks (see systemdParseShow) plus
// ActiveEnterTimestampMonotonic.
func guestParseShow(b []byte) map[string]guestUnit {
	out := map[string]guestUnit{}
	for name, st := range systemdParseShow(b) {
		out[name] = guestUnit{UnitState: st}
	}
	var id string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "":
			id = ""
		case "Id":
			id = v
		case "ActiveEnterTimestampMonotonic":
			if u, ok := out[id]; ok {
				u.activeSinceUsec, _ = strconv.ParseUint(v, 10, 64)
				out[id] = u
			}
		}
	}
	return out
}

// guestHostUptime reads the host's uptime in seconds (/proc/uptime).
func guestHostUptime(root fs.FS) (float64, error) {
	line, err := readFirstLine(root, "proc/uptime")
	if err != nil {
		return 0, err
	}
	f, _, _ := strings.Cut(line, " ")
	return strconv.ParseFloat(f, 64)
}

// guestVethName is the host end of a container's veth pair: "ve-" and the
// machine name, cut to IFNAMSIZ-1 = 15 bytes (systemd-nspawn's
// nspawn-network.c).
func guestVethName(machine string) string {
	n := "ve-" + machine
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

func readUint(root fs.FS, name string) (uint64, error) {
	line, err := readFirstLine(root, name)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(line, 10, 64)
}

func fileExists(root fs.FS, name string) bool {
	_, err := fs.Stat(root, name)
	return err == nil
}

func roundPercent(p float64) float64 { return math.Round(p*10) / 10 }

// guestDiskUsage adds up the apparent size of the files under dir
// (sparse disk images count at their full size), following no links.
func guestDiskUsage(root fs.FS, dir string) (uint64, error) {
	total, _, err := guestDiskUsageBy(root, dir, "")
	return total, err
}

// guestDiskUsageBy is guestDiskUsage that also adds up, per directory
// right below dir/sub, what it holds: a container's /var/lib/<service>
// (the StateDirectory of its services) is counted in the same walk.
func guestDiskUsageBy(root fs.FS, dir, sub string) (uint64, map[string]uint64, error) {
	var total uint64
	var by map[string]uint64
	under := ""
	if sub != "" {
		under = dir + "/" + sub + "/"
		by = map[string]uint64{}
	}
	n := 0
	err := fs.WalkDir(root, dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n > guestMaxWalk {
			return fs.SkipAll
		}
		rest, below := strings.CutPrefix(p, under)
		if below && under != "" && e.IsDir() && !strings.Contains(rest, "/") {
			by["/"+sub+"/"+rest] += 0 // an empty directory is listed too
		}
		if e.Type().IsRegular() {
			if info, err := e.Info(); err == nil {
				total += uint64(info.Size())
				if below && under != "" {
					top, _, _ := strings.Cut(rest, "/")
					if top != rest {
						by["/"+sub+"/"+top] += uint64(info.Size())
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return total, by, fmt.Errorf("disk usage of /%s: %w", dir, err)
	}
	return total, by, nil
}
