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
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// Btrfs reports every mounted btrfs filesystem: each device's five error
// counters, missing devices and chunk allocation, from
// sys/fs/btrfs/<fsid>/ (devinfo/<devid>/error_stats on kernels ≥ 5.14;
// `btrfs device stats <mount>` otherwise).
//
// The counters persist across reboots (they live in the filesystem), so an
// old disk shows errors from years ago. The verdict therefore reacts to
// increases: the producer keeps a baseline per device in the agent's
// state, set when it first sees the filesystem (and again when the
// counters are reset with `btrfs device stats -z`). A rise above the
// baseline is failing and stays failing until the operator resets the
// counters, so an alert cannot clear itself one cycle later; non-zero
// counters at the first sighting are a warning in that first event only.
type Btrfs struct {
	every time.Duration
	btrfs string
	// mem keeps the baselines when the agent gives no state (and caches
	// them when it does).
	mu  sync.Mutex
	mem map[string]btrfsBaseline
}

type btrfsOptions struct {
	// BtrfsPath is the btrfs binary for kernels without error_stats.
	BtrfsPath string `json:"btrfs_path"`
}

// btrfsBaseline is what the agent's state keeps per filesystem (key
// "btrfs/<fsid>"): when pinkie first saw it and the counters then, per
// device (key: devid, or the device path from btrfs device stats).
type btrfsBaseline struct {
	FirstSeen time.Time                       `json:"first_seen"`
	Devices   map[string]events.BtrfsCounters `json:"devices"`
}

func btrfsSpec() Spec {
	return Spec{Name: "btrfs", Doc: "btrfs device error counters (increases), missing devices, allocation with a verdict", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) {
			o := btrfsOptions{BtrfsPath: "btrfs"}
			if err := DecodeOptions(raw, &o); err != nil {
				return nil, err
			}
			return NewBtrfs(o.BtrfsPath), nil
		}}
}

// NewBtrfs returns the btrfs producer; btrfsPath is the btrfs binary used
// on kernels without error_stats in sysfs.
func NewBtrfs(btrfsPath string) *Btrfs {
	return &Btrfs{every: 5 * time.Minute, btrfs: btrfsPath, mem: map[string]btrfsBaseline{}}
}

func (b *Btrfs) Name() string            { return "btrfs" }
func (b *Btrfs) Interval() time.Duration { return b.every }

var btrfsUUIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func (b *Btrfs) Collect(ctx context.Context, env Env) ([]Observation, error) {
	entries, err := fs.ReadDir(env.Root, "sys/fs/btrfs")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotApplicable // btrfs module not loaded
	}
	if err != nil {
		return nil, fmt.Errorf("list /sys/fs/btrfs: %w", err)
	}
	var fsids []string
	for _, e := range entries {
		if btrfsUUIDRE.MatchString(e.Name()) {
			fsids = append(fsids, e.Name())
		}
	}
	if len(fsids) == 0 {
		return nil, ErrNotApplicable
	}
	now := env.Now()
	var obs []Observation
	var errs []error
	for _, fsid := range fsids {
		d, err := b.read(ctx, env, fsid)
		if err != nil {
			errs = append(errs, err)
			if len(d.Devices) == 0 {
				continue
			}
		}
		base, first, err := b.baseline(env, fsid, d, now)
		if err != nil {
			errs = append(errs, err)
		}
		d.FirstSeen = base.FirstSeen
		for i := range d.Devices {
			d.Devices[i].Baseline = base.Devices[btrfsDevKey(d.Devices[i])]
		}
		d.Verdict, d.Reasons = JudgeBtrfs(d, first)
		obs = append(obs, Observation{Kind: "btrfs", Object: fsid, Data: d, ID: storageEventID(env.Host, "btrfs", fsid, d)})
	}
	return obs, errors.Join(errs...)
}

func btrfsDevKey(d events.BtrfsDevice) string {
	if d.DevID > 0 {
		return strconv.Itoa(d.DevID)
	}
	return d.Path
}

// baseline loads the filesystem's baseline from state, starts it on the
// first sighting, and moves a device's baseline down when its counters
// were reset. first reports a first sighting.
func (b *Btrfs) baseline(env Env, fsid string, d events.Btrfs, now time.Time) (btrfsBaseline, bool, error) {
	key := "btrfs/" + fsid
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	base, ok := b.mem[key]
	if !ok && env.State != nil {
		v, found, err := env.State.Get(key)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("btrfs %s: read state: %w", fsid, err))
		case found:
			if err := json.Unmarshal(v, &base); err != nil {
				errs = append(errs, fmt.Errorf("btrfs %s: state is not valid, starting a new baseline: %w", fsid, err))
			} else {
				ok = true
			}
		}
	}
	first := !ok
	changed := first
	if first {
		base = btrfsBaseline{FirstSeen: now.UTC()}
	}
	if base.Devices == nil {
		base.Devices = map[string]events.BtrfsCounters{}
	}
	for _, dev := range d.Devices {
		k := btrfsDevKey(dev)
		old, seen := base.Devices[k]
		if !seen || btrfsAnyBelow(dev.Errors, old) {
			// A new device, or counters reset: they count from here.
			base.Devices[k] = dev.Errors
			changed = true
		}
	}
	b.mem[key] = base
	if changed && env.State != nil {
		v, err := json.Marshal(base)
		if err == nil {
			err = env.State.Put(key, v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("btrfs %s: save state: %w", fsid, err))
		}
	}
	return base, first, errors.Join(errs...)
}

func btrfsAnyBelow(now, base events.BtrfsCounters) bool {
	return now.WriteIOErrs < base.WriteIOErrs || now.ReadIOErrs < base.ReadIOErrs || now.FlushIOErrs < base.FlushIOErrs ||
		now.CorruptionErrs < base.CorruptionErrs || now.GenerationErrs < base.GenerationErrs
}

// read gathers one filesystem's facts from sysfs, falling back to
// `btrfs device stats` for the counters on kernels before 5.14.
func (b *Btrfs) read(ctx context.Context, env Env, fsid string) (events.Btrfs, error) {
	dir := "sys/fs/btrfs/" + fsid
	d := events.Btrfs{FSID: fsid, Source: "sysfs", DeviceNames: []string{}, Devices: []events.BtrfsDevice{}}
	var errs []error
	if l, err := readFirstLine(env.Root, dir+"/label"); err == nil {
		d.Label = l
	}
	if es, err := fs.ReadDir(env.Root, dir+"/devices"); err == nil {
		for _, e := range es {
			d.DeviceNames = append(d.DeviceNames, e.Name())
		}
	} else {
		errs = append(errs, fmt.Errorf("btrfs %s: list devices: %w", fsid, err))
	}
	for _, a := range []struct {
		name string
		dst  *events.BtrfsSpace
	}{{"data", &d.Allocation.Data}, {"metadata", &d.Allocation.Metadata}, {"system", &d.Allocation.System}} {
		for _, f := range []struct {
			file string
			dst  *uint64
		}{{"total_bytes", &a.dst.TotalBytes}, {"bytes_used", &a.dst.UsedBytes}} {
			v, err := readFirstLine(env.Root, dir+"/allocation/"+a.name+"/"+f.file)
			if err == nil {
				*f.dst, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("btrfs %s: allocation %s %s: %w", fsid, a.name, f.file, err))
			}
		}
	}
	devinfo, err := fs.ReadDir(env.Root, dir+"/devinfo")
	sysfsStats := err == nil
	for _, e := range devinfo {
		id, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dev := events.BtrfsDevice{DevID: id}
		if m, err := readFirstLine(env.Root, dir+"/devinfo/"+e.Name()+"/missing"); err == nil {
			dev.Missing = m == "1"
		}
		b, err := bounded.ReadFile(env.Root, dir+"/devinfo/"+e.Name()+"/error_stats", maxSmallFile)
		if errors.Is(err, fs.ErrNotExist) {
			sysfsStats = false
			break
		}
		if err == nil {
			dev.Errors, err = btrfsParseErrorStats(b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("btrfs %s device %d: error_stats: %w", fsid, id, err))
			continue
		}
		d.Devices = append(d.Devices, dev)
	}
	if !sysfsStats {
		d.Devices = d.Devices[:0]
		d.Source = "btrfs device stats"
		devs, err := b.deviceStats(ctx, env, d.DeviceNames)
		if err != nil {
			errs = append(errs, fmt.Errorf("btrfs %s: %w", fsid, err))
		}
		d.Devices = append(d.Devices, devs...)
	}
	sort.Slice(d.Devices, func(i, j int) bool {
		if d.Devices[i].DevID != d.Devices[j].DevID {
			return d.Devices[i].DevID < d.Devices[j].DevID
		}
		return d.Devices[i].Path < d.Devices[j].Path
	})
	return d, errors.Join(errs...)
}

// btrfsParseErrorStats parses devinfo/<devid>/error_stats ("write_errs 0"
// per line; fs/btrfs/sysfs.c btrfs_devinfo_error_stats_show).
func btrfsParseErrorStats(b []byte) (events.BtrfsCounters, error) {
	var c events.BtrfsCounters
	fields := map[string]*uint64{"write_errs": &c.WriteIOErrs, "read_errs": &c.ReadIOErrs, "flush_errs": &c.FlushIOErrs,
		"corruption_errs": &c.CorruptionErrs, "generation_errs": &c.GenerationErrs}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		dst, ok := fields[f[0]]
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return c, fmt.Errorf("%s: %w", f[0], err)
		}
		*dst = n
		seen++
	}
	if seen != len(fields) {
		return c, fmt.Errorf("want the 5 counters, got %d (truncated?)", seen)
	}
	return c, nil
}

// deviceStats runs `btrfs device stats <mount>` on a mount of the
// filesystem found in mountinfo by one of its device names.
func (b *Btrfs) deviceStats(ctx context.Context, env Env, names []string) ([]events.BtrfsDevice, error) {
	mi, err := bounded.ReadFile(env.Root, "proc/self/mountinfo", maxProcTable)
	if err != nil {
		return nil, fmt.Errorf("find mount for btrfs device stats: %w", err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	mount := ""
	for _, m := range storageParseMountinfo(mi) {
		if m.fsType == "btrfs" && want[path.Base(m.source)] {
			mount = m.mountPoint
			break
		}
	}
	if mount == "" {
		return nil, fmt.Errorf("no mount of devices %v in mountinfo for btrfs device stats", names)
	}
	out, code, err := env.Run.Run(ctx, b.btrfs, "device", "stats", mount)
	if err != nil {
		return nil, fmt.Errorf("btrfs device stats %s: %w", mount, err)
	}
	devs, perr := ParseBtrfsDeviceStats(out)
	// Exit code 64 means some counter is non-zero (with --check); other
	// non-zero codes are failures.
	if code != 0 && code != 64 && perr == nil && len(devs) == 0 {
		return nil, fmt.Errorf("btrfs device stats %s: exit code %d", mount, code)
	}
	return devs, perr
}

// ParseBtrfsDeviceStats parses `btrfs device stats` output, lines like
// "[/dev/sda1].write_io_errs    0" (btrfs-progs cmds/device.c).
func ParseBtrfsDeviceStats(b []byte) ([]events.BtrfsDevice, error) {
	byPath := map[string]*events.BtrfsCounters{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || !strings.HasPrefix(f[0], "[") {
			return nil, fmt.Errorf("btrfs device stats: unexpected line %q", line)
		}
		dev, counter, ok := strings.Cut(f[0][1:], "].")
		if !ok {
			return nil, fmt.Errorf("btrfs device stats: unexpected line %q", line)
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("btrfs device stats: %q: %w", line, err)
		}
		c, ok := byPath[dev]
		if !ok {
			c = &events.BtrfsCounters{}
			byPath[dev] = c
			order = append(order, dev)
		}
		switch counter {
		case "write_io_errs":
			c.WriteIOErrs = n
		case "read_io_errs":
			c.ReadIOErrs = n
		case "flush_io_errs":
			c.FlushIOErrs = n
		case "corruption_errs":
			c.CorruptionErrs = n
		case "generation_errs":
			c.GenerationErrs = n
		}
	}
	if len(order) == 0 {
		return nil, errors.New("btrfs device stats: no counters in the output")
	}
	var devs []events.BtrfsDevice
	for _, p := range order {
		devs = append(devs, events.BtrfsDevice{Path: p, Missing: p == "<missing disk>", Errors: *byPath[p]})
	}
	return devs, nil
}

// JudgeBtrfs is the verdict over one filesystem whose devices carry their
// counters and baselines. Failing: a device is missing; any counter rose
// above its baseline (write, read and flush errors are I/O failures of the
// device, corruption errors are checksum failures, generation errors are
// lost writes). Warning, on the first sighting only: counters already
// above zero, recorded before pinkie looked.
func JudgeBtrfs(d events.Btrfs, first bool) (string, []string) {
	var j storageJudgement
	since := d.FirstSeen.UTC().Format(time.RFC3339)
	for _, dev := range d.Devices {
		name := "device " + btrfsDevKey(dev)
		if dev.DevID > 0 && dev.Path != "" {
			name += " (" + dev.Path + ")"
		}
		if dev.Missing {
			j.fail("%s is missing", name)
		}
		for _, c := range btrfsCounterList(dev.Errors, dev.Baseline) {
			switch {
			case c.now > c.base:
				j.fail("%s: %s rose from %d to %d since %s (reset with `btrfs device stats -z` once dealt with)", name, c.name, c.base, c.now, since)
			case first && c.now > 0:
				j.warn("%s: %d %s were recorded before pinkie first looked (the counters persist across reboots; reset with `btrfs device stats -z`)", name, c.now, c.name)
			}
		}
	}
	return j.result()
}

type btrfsCounter struct {
	name      string
	now, base uint64
}

func btrfsCounterList(now, base events.BtrfsCounters) []btrfsCounter {
	return []btrfsCounter{
		{"write_io_errs", now.WriteIOErrs, base.WriteIOErrs},
		{"read_io_errs", now.ReadIOErrs, base.ReadIOErrs},
		{"flush_io_errs", now.FlushIOErrs, base.FlushIOErrs},
		{"corruption_errs", now.CorruptionErrs, base.CorruptionErrs},
		{"generation_errs", now.GenerationErrs, base.GenerationErrs},
	}
}

// storageMount is one line of /proc/self/mountinfo.
type storageMount struct {
	mountID    string
	devID      string // major:minor
	root       string // the mounted directory within the filesystem
	mountPoint string
	options    string
	fsType     string
	source     string
}

// storageParseMountinfo parses /proc/self/mountinfo (proc(5)): "36 35
// 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
// the optional fields end at "-". Mount points escape space, tab, newline
// and backslash as octal (\040).
func storageParseMountinfo(b []byte) []storageMount {
	var out []storageMount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		out = append(out, storageMount{mountID: f[0], devID: f[2], root: storageUnescape(f[3]), mountPoint: storageUnescape(f[4]), options: f[5],
			fsType: f[sep+1], source: storageUnescape(f[sep+2])})
	}
	return out
}

// storageUnescape undoes mountinfo's octal escapes (\040 is a space).
func storageUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
