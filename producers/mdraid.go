package producers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// MDRaid reports every Linux software RAID array: level, state, members,
// sync action and progress and mismatch count, from /proc/mdstat (parsed by
// github.com/prometheus/procfs) and md sysfs (sys/block/mdX/md/...), which
// is exact where mdstat is terse (array_state, degraded, sync_action,
// mismatch_cnt).
type MDRaid struct {
	every time.Duration
}

func mdraidSpec() Spec {
	return Spec{Name: "mdraid", Doc: "Linux md arrays: state, members, sync, mismatches (/proc/mdstat, sysfs) with a verdict", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) {
			if err := DecodeOptions(raw, &struct{}{}); err != nil {
				return nil, err
			}
			return &MDRaid{every: 5 * time.Minute}, nil
		},
		Saved: &SavedInput{Flag: "mdstat", What: "a /proc/mdstat", Limit: MaxMDStat, Judge: judgeSavedMDStat}}
}

// judgeSavedMDStat judges a saved /proc/mdstat (without sysfs details).
func judgeSavedMDStat(b []byte, _ time.Time) ([]Observation, error) {
	arrays, err := ParseMDStat(b)
	if err != nil {
		return nil, err
	}
	var obs []Observation
	for _, md := range arrays {
		obs = append(obs, Observation{Kind: "mdraid", Object: md.Device, Data: md})
	}
	return obs, nil
}

func (m *MDRaid) Name() string            { return "mdraid" }
func (m *MDRaid) Interval() time.Duration { return m.every }

func (m *MDRaid) Collect(ctx context.Context, env Env) ([]Observation, error) {
	b, err := bounded.ReadFile(env.Root, "proc/mdstat", MaxMDStat)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotApplicable // no md driver loaded
	}
	if err != nil {
		return nil, fmt.Errorf("read /proc/mdstat: %w", err)
	}
	arrays, err := ParseMDStat(b)
	if err != nil {
		return nil, err
	}
	if len(arrays) == 0 {
		return nil, ErrNotApplicable
	}
	var obs []Observation
	var errs []error
	for _, a := range arrays {
		if err := mdraidReadSysfs(env.Root, &a); err != nil {
			errs = append(errs, err)
		}
		a.Verdict, a.Reasons = JudgeMDRaid(a)
		obs = append(obs, Observation{Kind: "mdraid", Object: a.Device, Data: a, ID: storageEventID(env.Host, "mdraid", a.Device, a)})
	}
	return obs, errors.Join(errs...)
}

// ParseMDStat parses /proc/mdstat into judged arrays (without sysfs
// facts). The parsing is procfs's; its parser only reads files, so the
// bytes go through a temporary directory. A file with no "Personalities"
// line and no array is not /proc/mdstat.
func ParseMDStat(b []byte) ([]events.MDRaid, error) {
	if !bytes.Contains(b, []byte("Personalities")) && !bytes.Contains(b, []byte(" : ")) {
		return nil, errors.New("not /proc/mdstat: no Personalities line and no array")
	}
	if !mdstatHasArray(b) {
		// The driver without arrays, the common case: nothing for procfs
		// to parse, and no temporary directory written every cycle.
		return []events.MDRaid{}, nil
	}
	stats, err := mdraidProcfs(b)
	if err != nil {
		return nil, err
	}
	extra := mdraidScanText(b)
	out := make([]events.MDRaid, 0, len(stats))
	for _, s := range stats {
		a := events.MDRaid{
			Device: s.Name, State: s.ActivityState, RequiredDisks: int(s.DisksTotal), ActiveDisks: int(s.DisksActive),
			FailedDisks: int(s.DisksFailed), SpareDisks: int(s.DisksSpare), DegradedDisks: int(s.DisksDown),
			SizeBlocks: uint64(max(s.BlocksTotal, 0)), Members: []events.MDMember{},
		}
		if s.Type != "unknown" {
			a.Level = s.Type
		}
		for _, d := range s.Devices {
			a.Members = append(a.Members, events.MDMember{Name: d.Name, Index: int(d.DescriptorIndex), Faulty: d.Faulty, Spare: d.Spare})
		}
		x := extra[s.Name]
		a.Metadata = x.metadata
		a.Container = strings.HasPrefix(x.metadata, "external:") && !strings.Contains(x.metadata, "/")
		switch s.ActivityState {
		case "recovering":
			a.SyncAction = "recover"
		case "resyncing":
			a.SyncAction = "resync"
		case "checking":
			a.SyncAction = "check"
		case "reshaping":
			a.SyncAction = "reshape"
		}
		if x.pending != "" {
			a.SyncCompleted = x.pending
		} else if a.SyncAction != "" {
			pct, fin := s.BlocksSyncedPct, s.BlocksSyncedFinishTime
			a.SyncPercent, a.SyncFinishMins = &pct, &fin
			a.SyncCompleted = fmt.Sprintf("%d / %d", s.BlocksSynced, s.BlocksToBeSynced)
		}
		a.Verdict, a.Reasons = JudgeMDRaid(a)
		out = append(out, a)
	}
	return out, nil
}

// mdraidProcfs runs procfs's mdstat parser over b.
func mdraidProcfs(b []byte) ([]procfs.MDStat, error) {
	dir, err := os.MkdirTemp("", "pinkie-mdstat-")
	if err != nil {
		return nil, fmt.Errorf("parse /proc/mdstat: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "mdstat"), b, 0o600); err != nil {
		return nil, fmt.Errorf("parse /proc/mdstat: %w", err)
	}
	pfs, err := procfs.NewFS(dir)
	if err != nil {
		return nil, fmt.Errorf("parse /proc/mdstat: %w", err)
	}
	stats, err := pfs.MDStat()
	if err != nil {
		return nil, fmt.Errorf("parse /proc/mdstat: %w", err)
	}
	return stats, nil
}

// mdstatHasArray reports whether /proc/mdstat has an array's line
// ("md0 : active raid1 …"), as mdraidScanText finds them.
func mdstatHasArray(b []byte) bool {
	for line := range strings.Lines(string(b)) {
		if _, _, ok := strings.Cut(line, " : "); ok && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "Personalities") {
			return true
		}
	}
	return false
}

type mdraidText struct {
	metadata string // "1.2", "external:imsm", "external:/md127/0"
	pending  string // "delayed" or "pending" for resync=DELAYED/PENDING
}

// mdraidScanText reads what procfs leaves out of each array's lines in
// /proc/mdstat (drivers/md/md.c md_seq_show): the superblock format after
// "super" and a delayed or pending resync.
func mdraidScanText(b []byte) map[string]mdraidText {
	out := map[string]mdraidText{}
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if name, _, ok := strings.Cut(line, " : "); ok && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "Personalities") {
			cur = strings.TrimSpace(name)
			continue
		}
		if cur == "" {
			continue
		}
		x := out[cur]
		f := strings.Fields(line)
		for i, w := range f {
			if w == "super" && i+1 < len(f) && x.metadata == "" {
				x.metadata = f[i+1]
			}
			if strings.HasPrefix(w, "resync=") {
				x.pending = strings.ToLower(strings.TrimPrefix(w, "resync="))
			}
		}
		out[cur] = x
	}
	return out
}

// mdraidReadSysfs adds what md sysfs says about a (Documentation/admin-guide/md.rst):
// it is exact where mdstat is terse. Missing files are skipped (older
// kernels, containers); other read errors are returned.
func mdraidReadSysfs(root fs.FS, a *events.MDRaid) error {
	dir := "sys/block/" + a.Device + "/md"
	if _, err := fs.Stat(root, dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("mdraid %s: %w", a.Device, err)
	}
	var errs []error
	read := func(name string) (string, bool) {
		v, err := readFirstLine(root, dir+"/"+name)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("mdraid %s: %w", a.Device, err))
			}
			return "", false
		}
		return v, true
	}
	num := func(name string) (uint64, bool) {
		v, ok := read(name)
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("mdraid %s: /%s/%s: %q is not a number", a.Device, dir, name, v))
			return 0, false
		}
		return n, true
	}
	if v, ok := read("array_state"); ok {
		a.ArrayState = v
	}
	if v, ok := read("level"); ok && v != "" {
		a.Level = v
	}
	if v, ok := read("metadata_version"); ok && v != "" && v != "none" {
		a.Metadata = v
		a.Container = strings.HasPrefix(v, "external:") && !strings.Contains(v, "/")
	}
	if n, ok := num("raid_disks"); ok {
		a.RequiredDisks = int(n)
	}
	if n, ok := num("degraded"); ok {
		a.DegradedDisks = int(n)
	}
	if n, ok := num("mismatch_cnt"); ok {
		a.MismatchCount = &n
	}
	if v, ok := read("sync_action"); ok {
		if v == "idle" || v == "frozen" {
			a.SyncAction, a.SyncPercent, a.SyncFinishMins = "", nil, nil
			a.SyncCompleted = ""
		} else {
			a.SyncAction = v
		}
	}
	if v, ok := read("sync_completed"); ok && v != "none" && a.SyncAction != "" {
		a.SyncCompleted = v
		// "done / total" in sectors.
		if d, t, ok := strings.Cut(v, " / "); ok {
			dn, err1 := strconv.ParseFloat(d, 64)
			tn, err2 := strconv.ParseFloat(t, 64)
			if err1 == nil && err2 == nil && tn > 0 {
				pct := float64(int(dn/tn*1000)) / 10
				a.SyncPercent = &pct
			}
		}
	}
	return errors.Join(errs...)
}

// JudgeMDRaid is the verdict over one array. Failing: the array is
// inactive (not an IMSM/DDF container, which is inactive by design) or
// broken; it is degraded (members missing); a member failed. Warning: a
// resync, recovery or reshape is running or pending (the array is not
// fully redundant until it ends); mismatch_cnt is above zero (the last
// check found blocks whose copies or parity disagree). A check or repair
// in progress is routine and judged ok.
func JudgeMDRaid(a events.MDRaid) (string, []string) {
	var j storageJudgement
	if a.Container {
		return j.result()
	}
	switch {
	case a.State == "inactive" || a.ArrayState == "inactive":
		j.fail("array is inactive: it is not running")
	case a.ArrayState == "broken":
		j.fail("array is broken: a member it cannot run without is missing")
	case a.ArrayState == "clear":
		j.fail("array is stopped (array_state clear)")
	}
	missing := a.DegradedDisks
	if missing == 0 && a.RequiredDisks > 0 && a.ActiveDisks > 0 && a.ActiveDisks < a.RequiredDisks {
		missing = a.RequiredDisks - a.ActiveDisks
	}
	if missing > 0 {
		j.fail("array is degraded: %d of %d members missing", missing, a.RequiredDisks)
	}
	var failed []string
	for _, m := range a.Members {
		if m.Faulty {
			failed = append(failed, m.Name)
		}
	}
	if len(failed) > 0 {
		j.fail("%d member(s) failed: %s", len(failed), strings.Join(failed, ", "))
	} else if a.FailedDisks > 0 {
		j.fail("%d member(s) failed", a.FailedDisks)
	}
	switch a.SyncAction {
	case "", "idle", "check", "repair":
	default:
		switch {
		case a.SyncCompleted == "delayed" || a.SyncCompleted == "pending":
			j.warn("%s %s: the array is not fully redundant until it has run", a.SyncAction, a.SyncCompleted)
		case a.SyncPercent != nil && a.SyncFinishMins != nil && *a.SyncFinishMins > 0:
			j.warn("%s in progress: %.1f%% done, about %.0f minutes left", a.SyncAction, *a.SyncPercent, *a.SyncFinishMins)
		case a.SyncPercent != nil:
			j.warn("%s in progress: %.1f%% done", a.SyncAction, *a.SyncPercent)
		default:
			j.warn("%s in progress", a.SyncAction)
		}
	}
	if a.MismatchCount != nil && *a.MismatchCount > 0 {
		j.warn("mismatch_cnt is %d: the last check found sectors whose copies or parity disagree", *a.MismatchCount)
	}
	return j.result()
}
