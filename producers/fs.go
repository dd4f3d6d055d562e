package producers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// Filesystems reports every real mounted filesystem from
// /proc/self/mountinfo: size, used, available and inodes, from statfs(2).
// A filesystem is published when its use moved by 1% of its size or more,
// when its verdict changed, or an hour after it was last published, so
// growth can be predicted from the history without an event a minute.
//
// Pseudo and memory filesystems (tmpfs, overlay, proc, cgroup, squashfs,
// most FUSE...) are skipped, and so are network filesystems (nfs, cifs,
// sshfs): statfs on a dead server blocks. A filesystem mounted several
// times (bind mounts) is reported once, at its first mount point.
type Filesystems struct {
	every time.Duration
	// statfs reads a mount's usage; the real one calls statfs(2), tests
	// inject a fake.
	statfs func(path string) (FSUsage, error)
	mu     sync.Mutex
	last   map[string]fsPublished
}

// FSUsage is what statfs(2) says about a filesystem, in bytes and inodes.
type FSUsage struct {
	TotalBytes     uint64
	FreeBytes      uint64 // free, including blocks reserved for root
	AvailableBytes uint64 // free for unprivileged users
	Inodes         uint64
	InodesFree     uint64
}

type fsPublished struct {
	used    uint64
	verdict string
	at      time.Time
}

// fsSkipTypes are filesystem types that hold no data of their own, live in
// memory, or are read-only images.
var fsSkipTypes = map[string]bool{
	"tmpfs": true, "devtmpfs": true, "ramfs": true, "overlay": true, "proc": true, "sysfs": true,
	"cgroup": true, "cgroup2": true, "squashfs": true, "nsfs": true, "autofs": true, "devpts": true,
	"mqueue": true, "debugfs": true, "tracefs": true, "securityfs": true, "pstore": true, "bpf": true,
	"configfs": true, "fusectl": true, "hugetlbfs": true, "binfmt_misc": true, "efivarfs": true,
	"rpc_pipefs": true, "selinuxfs": true, "nfsd": true, "iso9660": true, "udf": true, "zram": true,
	// network filesystems: statfs blocks while the server is away
	"nfs": true, "nfs4": true, "cifs": true, "smb3": true, "smbfs": true, "9p": true, "ceph": true, "glusterfs": true,
}

// fsRealFUSE are FUSE filesystems that store data on local disks.
var fsRealFUSE = map[string]bool{"fuseblk": true, "fuse.mergerfs": true, "fuse.zfs": true}

func fsSpec() Spec {
	return Spec{Name: "fs", Doc: "size, use and inodes of every real mounted filesystem with a verdict", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) {
			if err := DecodeOptions(raw, &struct{}{}); err != nil {
				return nil, err
			}
			return NewFilesystems(FSStatfs), nil
		}}
}

// NewFilesystems returns the fs producer reading usage with statfs.
func NewFilesystems(statfs func(path string) (FSUsage, error)) *Filesystems {
	return &Filesystems{every: 5 * time.Minute, statfs: statfs, last: map[string]fsPublished{}}
}

// FSStatfs reads a filesystem's usage with statfs(2).
func FSStatfs(path string) (FSUsage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return FSUsage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return FSUsage{TotalBytes: st.Blocks * bs, FreeBytes: st.Bfree * bs, AvailableBytes: st.Bavail * bs,
		Inodes: st.Files, InodesFree: st.Ffree}, nil
}

func (f *Filesystems) Name() string            { return "fs" }
func (f *Filesystems) Interval() time.Duration { return f.every }

func (f *Filesystems) Collect(ctx context.Context, env Env) ([]Observation, error) {
	b, err := bounded.ReadFile(env.Root, "proc/self/mountinfo", maxProcTable)
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	mounts := storageParseMountinfo(b)
	if len(mounts) == 0 {
		return nil, errors.New("/proc/self/mountinfo lists no mounts")
	}
	now := env.Now()
	seen := map[string]bool{}
	var obs []Observation
	var errs []error
	for _, m := range mounts {
		if !fsReal(m.fsType) || seen[m.devID] {
			continue
		}
		seen[m.devID] = true
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		u, err := f.statfs(m.mountPoint)
		if err != nil {
			errs = append(errs, fmt.Errorf("fs %s: %w", m.mountPoint, err))
			continue
		}
		if u.TotalBytes == 0 {
			continue // nothing to fill
		}
		d := fsFacts(m, u)
		d.Verdict, d.Reasons = JudgeFilesystem(d)
		if !f.due(d, now) {
			continue
		}
		obs = append(obs, Observation{Kind: "fs", Object: d.MountPoint, Data: d, ID: storageEventID(env.Host, "fs", d.MountPoint, d)})
	}
	return obs, errors.Join(errs...)
}

func fsReal(typ string) bool {
	if strings.HasPrefix(typ, "fuse") {
		return fsRealFUSE[typ]
	}
	return !fsSkipTypes[typ]
}

// fsFacts fills the event from a mount and its usage; used_percent is df's
// used / (used + available), which leaves out the blocks reserved for root.
func fsFacts(m storageMount, u FSUsage) events.Filesystem {
	d := events.Filesystem{MountPoint: m.mountPoint, Device: m.source, FSType: m.fsType,
		SizeBytes: u.TotalBytes, AvailableBytes: u.AvailableBytes, Inodes: u.Inodes, InodesFree: u.InodesFree}
	for _, o := range strings.Split(m.options, ",") {
		if o == "ro" {
			d.ReadOnly = true
		}
	}
	if u.TotalBytes > u.FreeBytes {
		d.UsedBytes = u.TotalBytes - u.FreeBytes
	}
	if d.UsedBytes+d.AvailableBytes > 0 {
		d.UsedPercent = fsRound(float64(d.UsedBytes) / float64(d.UsedBytes+d.AvailableBytes) * 100)
	}
	if u.Inodes > u.InodesFree {
		d.InodesUsed = u.Inodes - u.InodesFree
	}
	if u.Inodes > 0 {
		d.InodesUsedPercent = fsRound(float64(d.InodesUsed) / float64(u.Inodes) * 100)
	}
	return d
}

func fsRound(v float64) float64 { return math.Min(100, math.Round(v*100)/100) }

// due reports whether the filesystem's facts are worth publishing now: use
// moved by 1% of the size, the verdict changed, or an hour passed.
func (f *Filesystems) due(d events.Filesystem, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	last, ok := f.last[d.MountPoint]
	if ok && last.verdict == d.Verdict && now.Sub(last.at) < time.Hour && !now.Before(last.at) {
		diff := d.UsedBytes - last.used
		if last.used > d.UsedBytes {
			diff = last.used - d.UsedBytes
		}
		if float64(diff) < float64(d.SizeBytes)/100 {
			return false
		}
	}
	f.last[d.MountPoint] = fsPublished{used: d.UsedBytes, verdict: d.Verdict, at: now}
	return true
}

// JudgeFilesystem is the verdict over one filesystem: 85% or more of the
// space or of the inodes used is a warning, 95% or more failing. A
// read-only filesystem is not judged on space: nothing can fill it. (Alert
// rules predict "full in N days" from the history.)
func JudgeFilesystem(d events.Filesystem) (string, []string) {
	var j storageJudgement
	if d.ReadOnly {
		return j.result()
	}
	for _, x := range []struct {
		what string
		pct  float64
	}{{"space", d.UsedPercent}, {"inodes", d.InodesUsedPercent}} {
		switch {
		case x.pct >= 95:
			j.fail("%.1f%% of the %s is used (warning at 85%%, failing at 95%%)", x.pct, x.what)
		case x.pct >= 85:
			j.warn("%.1f%% of the %s is used (warning at 85%%, failing at 95%%)", x.pct, x.what)
		}
	}
	return j.result()
}
