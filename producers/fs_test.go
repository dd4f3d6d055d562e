package producers

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

const fsMountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
23 22 8:2 / /boot rw,relatime shared:2 - vfat /dev/sda2 rw
24 22 0:39 /@home /home rw,relatime shared:3 - btrfs /dev/sdb1 rw,subvol=/@home
25 22 0:39 /@srv /srv rw,relatime shared:4 - btrfs /dev/sdb1 rw,subvol=/@srv
26 22 0:25 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
27 22 0:5 / /proc rw shared:6 - proc proc rw
28 22 0:50 / /run/user/1000/gvfs rw shared:7 - fuse.gvfsd-fuse gvfsd-fuse rw
29 22 0:51 / /mnt/windows rw shared:8 - fuseblk /dev/sdc1 rw
30 22 8:1 /nix/store /nix/store ro,relatime shared:9 - ext4 /dev/sda1 rw
31 22 11:0 / /media/cdrom ro shared:10 - iso9660 /dev/sr0 ro
32 22 0:60 / /mnt/nas rw shared:11 - nfs4 nas:/export rw
33 22 8:33 / /media/archive ro,relatime shared:12 - ext4 /dev/sdc2 ro
34 22 8:49 / /var/lib/big\040data rw,relatime shared:13 - xfs /dev/sdd1 rw
`

const fsGiB = 1 << 30

type fsFake struct {
	usage map[string]FSUsage
	calls []string
}

func (f *fsFake) statfs(p string) (FSUsage, error) {
	f.calls = append(f.calls, p)
	u, ok := f.usage[p]
	if !ok {
		return FSUsage{}, fmt.Errorf("statfs %s: %w", p, fs.ErrPermission)
	}
	return u, nil
}

func TestFilesystemsCollect(t *testing.T) {
	fake := &fsFake{usage: map[string]FSUsage{
		"/":                 {TotalBytes: 100 * fsGiB, FreeBytes: 60 * fsGiB, AvailableBytes: 55 * fsGiB, Inodes: 1000, InodesFree: 900},
		"/boot":             {TotalBytes: 1 * fsGiB, FreeBytes: fsGiB / 10, AvailableBytes: fsGiB / 10, Inodes: 0},
		"/home":             {TotalBytes: 1000 * fsGiB, FreeBytes: 40 * fsGiB, AvailableBytes: 40 * fsGiB},
		"/mnt/windows":      {TotalBytes: 500 * fsGiB, FreeBytes: 400 * fsGiB, AvailableBytes: 400 * fsGiB},
		"/media/archive":    {TotalBytes: 10 * fsGiB, FreeBytes: 0, AvailableBytes: 0, Inodes: 10, InodesFree: 0},
		"/var/lib/big data": {TotalBytes: 100 * fsGiB, FreeBytes: 50 * fsGiB, AvailableBytes: 50 * fsGiB, Inodes: 100, InodesFree: 10},
	}}
	spec, ok := Lookup("fs")
	if !ok || !spec.DefaultEnabled {
		t.Fatal("fs not in All() or not on by default")
	}
	if _, err := spec.New(json.RawMessage(`{"mounts":["/"]}`), Info{}); err == nil {
		t.Error("unknown option accepted")
	}
	p := NewFilesystems(fake.statfs)
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	root := fstest.MapFS{"proc/self/mountinfo": {Data: []byte(fsMountinfo)}}
	env := Env{Host: "goliath", Root: root, Now: func() time.Time { return now }}
	obs, err := p.Collect(context.Background(), env)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	wantCalls := []string{"/", "/boot", "/home", "/mnt/windows", "/media/archive", "/var/lib/big data"}
	if diff := cmp.Diff(wantCalls, fake.calls); diff != "" {
		t.Errorf("statfs calls (-want +got):\n%s", diff)
	}
	got := map[string]string{}
	for _, o := range obs {
		d := o.Data.(events.Filesystem)
		got[o.Object] = fmt.Sprintf("%s %.2f%% inodes %.2f%% %s", d.FSType, d.UsedPercent, d.InodesUsedPercent, d.Verdict)
	}
	want := map[string]string{
		"/":                 "ext4 42.11% inodes 10.00% ok", // 40 used / (40 + 55)
		"/boot":             "vfat 90.00% inodes 0.00% warning",
		"/home":             "btrfs 96.00% inodes 0.00% failing",
		"/mnt/windows":      "fuseblk 20.00% inodes 0.00% ok",
		"/media/archive":    "ext4 100.00% inodes 100.00% ok", // read-only: not judged
		"/var/lib/big data": "xfs 50.00% inodes 90.00% warning",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, o := range obs {
		d := o.Data.(events.Filesystem)
		if d.MountPoint == "/home" && (d.Device != "/dev/sdb1" || d.UsedBytes != 960*fsGiB || d.AvailableBytes != 40*fsGiB ||
			!storageContainsSub(d.Reasons, "96.0% of the space is used (warning at 85%, failing at 95%)")) {
			t.Errorf("/home: %+v", d)
		}
	}

	// Half an hour later / grew by 0.5% of its size: nothing published.
	// /home moved by 1%: published.
	now = now.Add(30 * time.Minute)
	fake.usage["/"] = FSUsage{TotalBytes: 100 * fsGiB, FreeBytes: 59*fsGiB + fsGiB/2, AvailableBytes: 54*fsGiB + fsGiB/2, Inodes: 1000, InodesFree: 900}
	fake.usage["/home"] = FSUsage{TotalBytes: 1000 * fsGiB, FreeBytes: 30 * fsGiB, AvailableBytes: 30 * fsGiB}
	obs, _ = p.Collect(context.Background(), env)
	if len(obs) != 1 || obs[0].Object != "/home" {
		t.Errorf("after 30 min: %+v", obs)
	}
	// An hour after the first publication everything goes out again.
	now = now.Add(31 * time.Minute)
	obs, _ = p.Collect(context.Background(), env)
	if len(obs) != 5 {
		t.Errorf("after an hour: %d observations, want 5 (/home was published 31 min ago)", len(obs))
	}

	// statfs fails for one filesystem: the others are still reported.
	delete(fake.usage, "/boot")
	p = NewFilesystems(fake.statfs)
	obs, err = p.Collect(context.Background(), env)
	if len(obs) != 5 || err == nil || !strings.Contains(err.Error(), "fs /boot: statfs /boot: permission denied") {
		t.Errorf("statfs error: %d observations, err %v", len(obs), err)
	}
}

func TestFilesystemsBadInput(t *testing.T) {
	p := NewFilesystems(FSStatfs)
	ctx := context.Background()
	if _, err := p.Collect(ctx, Env{Root: fstest.MapFS{}, Now: time.Now}); err == nil || !strings.Contains(err.Error(), "mountinfo") {
		t.Errorf("no mountinfo: %v", err)
	}
	garbage := fstest.MapFS{"proc/self/mountinfo": {Data: []byte("this is not\nmountinfo\n")}}
	if _, err := p.Collect(ctx, Env{Root: garbage, Now: time.Now}); err == nil || !strings.Contains(err.Error(), "no mounts") {
		t.Errorf("garbage mountinfo: %v", err)
	}
}

func TestJudgeFilesystem(t *testing.T) {
	for _, tt := range []struct {
		used, inodes float64
		want         string
	}{{84.99, 0, "ok"}, {85, 0, "warning"}, {94.99, 0, "warning"}, {95, 0, "failing"}, {10, 95, "failing"}, {10, 85, "warning"}} {
		if v, _ := JudgeFilesystem(events.Filesystem{UsedPercent: tt.used, InodesUsedPercent: tt.inodes}); v != tt.want {
			t.Errorf("used %.2f inodes %.2f: %s, want %s", tt.used, tt.inodes, v, tt.want)
		}
	}
}

// TestFSStatfsReal reads the real root filesystem with statfs(2).
func TestFSStatfsReal(t *testing.T) {
	u, err := FSStatfs("/")
	if err != nil {
		t.Fatalf("statfs /: %v", err)
	}
	if u.TotalBytes == 0 || u.FreeBytes > u.TotalBytes || u.AvailableBytes > u.FreeBytes {
		t.Errorf("implausible usage of /: %+v", u)
	}
	// The whole producer against this host: it must not fail.
	obs, err := NewFilesystems(FSStatfs).Collect(context.Background(), Env{Host: "h", Root: os.DirFS("/"), Now: time.Now})
	if err != nil {
		t.Logf("Collect on this host: %v", err)
	}
	for _, o := range obs {
		d := o.Data.(events.Filesystem)
		t.Logf("%s %s %.1f%% %s", d.MountPoint, d.FSType, d.UsedPercent, d.Verdict)
	}
}
