package producers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// ZFS reports every ZFS pool: state, capacity and fragmentation from
// `zpool list -Hp` (machine output), and the vdev tree, error counters,
// scrub/resilver and data errors from `zpool status -p` (text only; see
// ParseZpoolStatus).
//
// github.com/mistifyio/go-zfs, which the issue suggests, is not used: it
// runs zpool through os/exec itself, so it cannot go through the agent's
// injected Runner (and so not through tests' fakes), and it has no vdev
// tree or scan state; the one machine-readable command it would save us
// is parsed by zfsParseList in a dozen lines.
type ZFS struct {
	every time.Duration
	zpool string
}

type zfsOptions struct {
	// ZpoolPath is the zpool binary (default "zpool").
	ZpoolPath string `json:"zpool_path"`
}

// zfsScrubMaxAge is how old the last completed scrub may be before the
// verdict warns: monthly scrubs (the common schedule) plus a few days.
const zfsScrubMaxAge = 35 * 24 * time.Hour

// zfsCapacityWarn is the pool capacity (percent allocated) from which the
// verdict warns: ZFS slows down markedly when nearly full.
const zfsCapacityWarn = 90

func zfsSpec() Spec {
	return Spec{Name: "zfs", Doc: "ZFS pool health, capacity, vdev errors, scrub age (zpool) with a verdict", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) {
			o := zfsOptions{ZpoolPath: "zpool"}
			if err := DecodeOptions(raw, &o); err != nil {
				return nil, err
			}
			return &ZFS{every: 5 * time.Minute, zpool: o.ZpoolPath}, nil
		},
		Saved: &SavedInput{Flag: "zpool-status", What: "'zpool status' output", Limit: MaxZpoolStatus, Judge: judgeSavedZpoolStatus}}
}

// judgeSavedZpoolStatus judges saved `zpool status` output, read in the
// local time zone as the producer reads it.
func judgeSavedZpoolStatus(b []byte, now time.Time) ([]Observation, error) {
	pools, err := ParseZpoolStatus(b, now, time.Local)
	if err != nil {
		return nil, err
	}
	var obs []Observation
	for _, pool := range pools {
		obs = append(obs, Observation{Kind: "zfs", Object: pool.Pool, Data: pool})
	}
	return obs, nil
}

func (z *ZFS) Name() string            { return "zfs" }
func (z *ZFS) Interval() time.Duration { return z.every }

func (z *ZFS) Collect(ctx context.Context, env Env) ([]Observation, error) {
	out, code, err := env.Run.Run(ctx, z.zpool, "list", "-Hp", "-o", "name,size,alloc,free,frag,cap,health")
	if err != nil {
		if storageCommandMissing(err) {
			return nil, ErrNotApplicable
		}
		return nil, fmt.Errorf("zpool list: %w", err)
	}
	if code != 0 {
		return nil, fmt.Errorf("zpool list: exit code %d", code)
	}
	list, err := zfsParseList(out)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, ErrNotApplicable
	}
	now := env.Now()
	var errs []error
	out, code, err = env.Run.Run(ctx, z.zpool, "status", "-p")
	var pools []events.ZFSPool
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("zpool status: %w", err))
	case code != 0:
		errs = append(errs, fmt.Errorf("zpool status: exit code %d", code))
	}
	if err == nil {
		pools, err = ParseZpoolStatus(out, now, time.Local)
		if err != nil {
			errs = append(errs, err)
		}
	}
	byName := map[string]*events.ZFSPool{}
	for i := range pools {
		byName[pools[i].Pool] = &pools[i]
	}
	var obs []Observation
	for _, l := range list {
		p, ok := byName[l.name]
		if !ok {
			// zpool status failed or left the pool out: report what list
			// said, the vdev tree unknown.
			p = &events.ZFSPool{Pool: l.name, State: l.health, Vdevs: []events.ZFSVdev{}, Scan: events.ZFSScan{Function: "unknown"}}
			errs = append(errs, fmt.Errorf("zpool status has no pool %s", l.name))
		}
		p.SizeBytes, p.AllocatedBytes, p.FreeBytes = l.size, l.alloc, l.free
		p.CapacityPercent, p.FragmentationPercent = l.cap, l.frag
		p.Verdict, p.Reasons = JudgeZFSPool(*p)
		obs = append(obs, Observation{Kind: "zfs", Object: p.Pool, Data: *p, ID: storageEventID(env.Host, "zfs", p.Pool, *p)})
	}
	return obs, errors.Join(errs...)
}

type zfsListEntry struct {
	name              string
	size, alloc, free uint64
	frag              *int
	cap               int
	health            string
}

// zfsParseList parses `zpool list -Hp -o name,size,alloc,free,frag,cap,health`:
// one pool per line, tab-separated, exact numbers, "-" for a value the pool
// does not have (zpool(8), -H and -p).
func zfsParseList(b []byte) ([]zfsListEntry, error) {
	var out []zfsListEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 7 {
			return out, fmt.Errorf("zpool list: want 7 tab-separated fields, got %q", line)
		}
		e := zfsListEntry{name: f[0], health: f[6]}
		var err error
		for i, dst := range []*uint64{&e.size, &e.alloc, &e.free} {
			if *dst, err = strconv.ParseUint(f[1+i], 10, 64); err != nil {
				return out, fmt.Errorf("zpool list %s field %d: %w", f[0], 2+i, err)
			}
		}
		if v, err := strconv.Atoi(strings.TrimSuffix(f[4], "%")); err == nil {
			e.frag = &v
		}
		if e.cap, err = strconv.Atoi(strings.TrimSuffix(f[5], "%")); err != nil {
			return out, fmt.Errorf("zpool list %s capacity: %w", f[0], err)
		}
		out = append(out, e)
	}
	return out, nil
}

var (
	zfsKeyRE       = regexp.MustCompile(`^\s*([a-z]+): ?(.*)$`)
	zfsScanDoneRE  = regexp.MustCompile(`^(scrub repaired|resilvered) (\S+) in (.+?) with (\d+) errors on (.+)$`)
	zfsScanProgRE  = regexp.MustCompile(`^(scrub|resilver) in progress since (.+)$`)
	zfsScanCancRE  = regexp.MustCompile(`^(scrub|resilver) canceled on (.+)$`)
	zfsScanPauseRE = regexp.MustCompile(`^scrub paused since (.+)$`)
	zfsPercentRE   = regexp.MustCompile(`([0-9.]+)% done`)
	zfsDataErrRE   = regexp.MustCompile(`(\d+) data errors`)
)

// zfsTimeLayout is ctime(3)'s format, which zpool prints scan times in
// (local time, no zone).
const zfsTimeLayout = "Mon Jan _2 15:04:05 2006"

// ParseZpoolStatus parses the text of `zpool status [-p]` (one or more
// pools) and judges each pool with JudgeZFSPool. zpool has no machine
// output for status before OpenZFS 2.3's -j, so this follows the text
// printed by OpenZFS cmd/zpool/zpool_main.c: status_callback prints the
// "pool:", "state:", "status:", "action:", "see:", "scan:" and "config:"
// sections (continuation lines indented with a tab), print_status_config
// prints the vdev tree after a "NAME STATE READ WRITE CKSUM" header, two
// spaces of indent per level, and print_scan_status the scan line; the
// "errors:" lines close each pool. Scan times are ctime strings in loc;
// scan ages are relative to now. Capacity is not in zpool status: the
// producer adds it from zpool list.
func ParseZpoolStatus(b []byte, now time.Time, loc *time.Location) ([]events.ZFSPool, error) {
	var pools []events.ZFSPool
	var cur *events.ZFSPool
	section := ""
	var scanLines []string
	var stack []string // names of the vdev path at each depth
	group := ""
	flush := func() {
		if cur == nil {
			return
		}
		cur.Scan = zfsParseScan(scanLines, now, loc)
		cur.Verdict, cur.Reasons = JudgeZFSPool(*cur)
		pools = append(pools, *cur)
		cur, scanLines, stack, group = nil, nil, nil, ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			if section == "config" && cur != nil && len(cur.Vdevs) > 0 {
				section = ""
			}
			continue
		}
		if !strings.HasPrefix(line, "\t") {
			if m := zfsKeyRE.FindStringSubmatch(line); m != nil {
				key, val := m[1], strings.TrimSpace(m[2])
				if key == "pool" {
					flush()
					cur = &events.ZFSPool{Pool: val, Vdevs: []events.ZFSVdev{}}
					section = ""
					continue
				}
				if cur == nil {
					continue // "no pools available", harness lines
				}
				section = key
				switch key {
				case "state":
					cur.State = val
				case "status":
					cur.Status = val
				case "action":
					cur.Action = val
				case "scan":
					scanLines = append(scanLines, val)
				case "errors":
					if cur.DataErrors == "" {
						cur.DataErrors = val
					} else {
						cur.DataErrors += "; " + val
					}
				}
				continue
			}
		}
		if cur == nil {
			continue
		}
		text := strings.TrimSpace(line)
		switch section {
		case "status":
			cur.Status += " " + text
		case "action":
			cur.Action += " " + text
		case "scan":
			scanLines = append(scanLines, text)
		case "errors":
			if n := strings.Count(cur.DataErrors, ";"); n < 20 {
				cur.DataErrors += "; " + text
			}
		case "config":
			row := strings.TrimPrefix(line, "\t")
			indent := len(row) - len(strings.TrimLeft(row, " "))
			f := strings.Fields(row)
			if len(f) == 0 || (f[0] == "NAME" && len(f) >= 2 && f[1] == "STATE") {
				continue
			}
			depth := indent / 2
			switch {
			case depth == 0 && len(f) == 1 && zfsGroups[f[0]]:
				group = f[0]
				stack = []string{f[0]}
				continue
			case depth == 0:
				group = ""
				stack = nil
			}
			if depth < len(stack) {
				stack = stack[:depth]
			}
			for len(stack) < depth {
				stack = append(stack, "?")
			}
			stack = append(stack, f[0])
			v := events.ZFSVdev{Name: f[0], Depth: depth, Group: group}
			if depth == 0 {
				v.Path = f[0]
			} else if group != "" {
				v.Path = strings.Join(stack, "/")
			} else {
				v.Path = strings.Join(stack[1:], "/")
			}
			if len(f) > 1 {
				v.State = f[1]
			}
			if len(f) >= 5 && zfsIsCount(f[2]) && zfsIsCount(f[3]) && zfsIsCount(f[4]) {
				v.ReadErrors = zfsParseCount(f[2])
				v.WriteErrors = zfsParseCount(f[3])
				v.ChecksumErrors = zfsParseCount(f[4])
				v.Note = strings.Join(f[5:], " ")
			} else if len(f) > 2 {
				v.Note = strings.Join(f[2:], " ")
			}
			cur.Vdevs = append(cur.Vdevs, v)
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return pools, fmt.Errorf("read zpool status: %w", err)
	}
	if len(pools) == 0 {
		return nil, errors.New("not zpool status output: no \"pool:\" line")
	}
	var errs []error
	for _, p := range pools {
		if p.State == "" {
			errs = append(errs, fmt.Errorf("zpool status: pool %s has no state line (truncated?)", p.Pool))
		}
	}
	return pools, errors.Join(errs...)
}

var zfsGroups = map[string]bool{"logs": true, "cache": true, "spares": true, "special": true, "dedup": true}

// zfsIsCount reports whether s looks like an error counter ("0", "12",
// "1.2K"), as opposed to the note of a spare ("currently in use").
func zfsIsCount(s string) bool {
	return s != "" && s[0] >= '0' && s[0] <= '9'
}

// zfsParseCount reads an error counter: exact with -p, else zpool's
// nicenum ("1.2K").
func zfsParseCount(s string) uint64 {
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return n
	}
	mult := map[byte]float64{'K': 1e3, 'M': 1e6, 'G': 1e9, 'T': 1e12}
	if len(s) > 1 {
		if m, ok := mult[s[len(s)-1]]; ok {
			if f, err := strconv.ParseFloat(s[:len(s)-1], 64); err == nil && f >= 0 {
				return uint64(f * m)
			}
		}
	}
	return 0
}

// zfsParseScan reads the "scan:" section: its first line says what ran and
// how it ended; while in progress the following lines hold the progress.
func zfsParseScan(lines []string, now time.Time, loc *time.Location) events.ZFSScan {
	if len(lines) == 0 {
		return events.ZFSScan{Function: "none"}
	}
	first := lines[0]
	s := events.ZFSScan{Function: "unknown", Line: strings.Join(lines, " ")}
	parse := func(v string) *time.Time {
		t, err := time.ParseInLocation(zfsTimeLayout, strings.TrimSpace(v), loc)
		if err != nil {
			return nil
		}
		return &t
	}
	switch {
	case first == "none requested":
		s.Function, s.Line = "none", first
	case zfsScanDoneRE.MatchString(first):
		m := zfsScanDoneRE.FindStringSubmatch(first)
		s.Function = "scrub"
		if m[1] == "resilvered" {
			s.Function = "resilver"
		}
		s.State, s.Repaired = "finished", m[2]
		s.Errors, _ = strconv.ParseUint(m[4], 10, 64)
		s.Finished = parse(m[5])
	case zfsScanProgRE.MatchString(first):
		m := zfsScanProgRE.FindStringSubmatch(first)
		s.Function, s.State, s.Started = m[1], "in_progress", parse(m[2])
		if p := zfsPercentRE.FindStringSubmatch(s.Line); p != nil {
			if v, err := strconv.ParseFloat(p[1], 64); err == nil && v >= 0 && v <= 100 {
				s.ProgressPercent = &v
			}
		}
	case zfsScanCancRE.MatchString(first):
		m := zfsScanCancRE.FindStringSubmatch(first)
		s.Function, s.State, s.Finished = m[1], "canceled", parse(m[2])
	case zfsScanPauseRE.MatchString(first):
		m := zfsScanPauseRE.FindStringSubmatch(first)
		s.Function, s.State, s.Started = "scrub", "paused", parse(m[1])
	}
	if s.Finished != nil {
		age := int64(now.Sub(*s.Finished) / time.Second)
		s.AgeSeconds = &age
	}
	return s
}

// JudgeZFSPool is the verdict over one pool. Failing: the pool is not
// ONLINE (DEGRADED too: it has lost redundancy, one more failure loses
// data), or it has data errors, or the last scrub or resilver ended with
// errors it could not repair. Warning: a vdev not ONLINE (spares AVAIL or
// INUSE are fine) or with read, write or checksum errors; a scrub that
// repaired data; a resilver in progress; the last scrub canceled, or
// finished more than 35 days ago; capacity at 90% or more. A pool never
// scrubbed, or whose last scan was a resilver, is not judged on scrub age.
func JudgeZFSPool(p events.ZFSPool) (string, []string) {
	var j storageJudgement
	switch p.State {
	case "ONLINE":
	case "DEGRADED":
		j.fail("pool state is DEGRADED: it has lost redundancy")
	case "":
		j.fail("pool state unknown")
	default:
		j.fail("pool state is %s: the pool cannot be used", p.State)
	}
	for _, v := range p.Vdevs {
		if v.Depth == 0 && v.Group == "" {
			continue // the pool root: its state is the pool's
		}
		if v.State != "" && v.State != "ONLINE" && v.State != "AVAIL" && v.State != "INUSE" {
			note := ""
			if v.Note != "" {
				note = " (" + v.Note + ")"
			}
			j.warn("vdev %s is %s%s", v.Path, v.State, note)
		}
		if v.ReadErrors+v.WriteErrors+v.ChecksumErrors > 0 {
			j.warn("vdev %s has %d read, %d write and %d checksum errors", v.Path, v.ReadErrors, v.WriteErrors, v.ChecksumErrors)
		}
	}
	if m := zfsDataErrRE.FindStringSubmatch(p.DataErrors); m != nil && m[1] != "0" {
		j.fail("pool has %s data errors (zpool status -v lists the files)", m[1])
	} else if strings.Contains(p.DataErrors, "Permanent errors") {
		j.fail("pool has permanent data errors: %s", p.DataErrors)
	}
	s := p.Scan
	switch {
	case s.State == "finished" && s.Errors > 0:
		j.fail("the last %s ended with %d errors it could not repair", s.Function, s.Errors)
	case s.State == "finished" && s.Function == "scrub" && !zfsZeroSize(s.Repaired):
		j.warn("the last scrub repaired %s: a device returned bad data", s.Repaired)
	}
	switch {
	case s.Function == "resilver" && s.State == "in_progress":
		if s.ProgressPercent != nil {
			j.warn("resilver in progress: %.1f%% done", *s.ProgressPercent)
		} else {
			j.warn("resilver in progress")
		}
	case s.Function == "scrub" && s.State == "canceled":
		j.warn("the last scrub was canceled: no completed scrub is known")
	case s.Function == "scrub" && s.State == "finished" && s.AgeSeconds != nil && time.Duration(*s.AgeSeconds)*time.Second > zfsScrubMaxAge:
		j.warn("the last scrub finished %d days ago (warning after %d days)", *s.AgeSeconds/86400, int(zfsScrubMaxAge.Hours()/24))
	}
	if p.CapacityPercent >= zfsCapacityWarn {
		j.warn("pool is %d%% full (warning from %d%%)", p.CapacityPercent, zfsCapacityWarn)
	}
	return j.result()
}

// zfsZeroSize reports whether a zpool size string ("0B", "0", "0.00K") is
// zero.
func zfsZeroSize(s string) bool {
	v := strings.TrimRight(s, "BKMGTPE")
	f, err := strconv.ParseFloat(v, 64)
	return err == nil && f == 0
}
