package producers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// Profile reports what the host is: hostname, OS, kernel, architecture,
// CPU, memory and boot time.
type Profile struct {
	every time.Duration
}

func profileSpec() Spec {
	return Spec{Name: "profile", Doc: "hostname, OS, kernel, arch, CPU, memory, boot time", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) {
			if err := DecodeOptions(raw, &struct{}{}); err != nil {
				return nil, err
			}
			return &Profile{every: 6 * time.Hour}, nil
		}}
}

func (p *Profile) Name() string            { return "profile" }
func (p *Profile) Interval() time.Duration { return p.every }

func (p *Profile) Collect(ctx context.Context, env Env) ([]Observation, error) {
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
	if b, err := fs.ReadFile(env.Root, "etc/os-release"); err == nil {
		d.OS = parseOSRelease(b)
	} else if b, err2 := fs.ReadFile(env.Root, "usr/lib/os-release"); err2 == nil {
		d.OS = parseOSRelease(b)
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
	if b, err := fs.ReadFile(env.Root, "proc/cpuinfo"); err == nil {
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
	if b, err := fs.ReadFile(env.Root, "proc/stat"); err == nil {
		if bt, ok := parseBootTime(b); ok {
			d.BootTime = bt
		}
	} else {
		note(fmt.Errorf("read /proc/stat: %w", err))
	}
	obs := []Observation{{Kind: "profile", Data: d}}
	if len(errs) > 0 {
		// Report what could be read, and say what could not.
		return obs, fmt.Errorf("profile incomplete: %s", strings.Join(errs, "; "))
	}
	return obs, nil
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
