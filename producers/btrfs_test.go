package producers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// btrfsMemState is an agent state in memory.
type btrfsMemState struct {
	m      map[string][]byte
	getErr error
}

func (s *btrfsMemState) Get(key string) ([]byte, bool, error) {
	if s.getErr != nil {
		return nil, false, s.getErr
	}
	v, ok := s.m[key]
	return v, ok, nil
}

func (s *btrfsMemState) Put(key string, v []byte) error {
	s.m[key] = append([]byte(nil), v...)
	return nil
}

// btrfsCopyTree copies a testdata tree into a MapFS the test can change.
func btrfsCopyTree(t *testing.T, dir string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(filepath.Join(dir, p))
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const (
	btrfsFSData     = "1b6e7c1a-3f0e-4c35-9d3a-5f2e8d9b0a11"
	btrfsFSDegraded = "9c0d2e4f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"
)

func btrfsCollectMap(t *testing.T, b *Btrfs, env Env) map[string]events.Btrfs {
	t.Helper()
	obs, err := b.Collect(context.Background(), env)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	out := map[string]events.Btrfs{}
	for _, o := range obs {
		if o.Kind != "btrfs" || o.ID == "" || o.Object != o.Data.(events.Btrfs).FSID {
			t.Errorf("observation %+v", o)
		}
		out[o.Object] = o.Data.(events.Btrfs)
	}
	return out
}

func TestBtrfsIncreasesAgainstBaseline(t *testing.T) {
	root := btrfsCopyTree(t, filepath.Join("testdata", "btrfs", "new"))
	state := &btrfsMemState{m: map[string][]byte{}}
	t0 := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	now := t0
	env := Env{Host: "goliath", Root: root, State: state, Now: func() time.Time { return now }}
	spec, ok := Lookup("btrfs")
	if !ok || !spec.DefaultEnabled {
		t.Fatal("btrfs not in All() or not on by default")
	}
	c, err := spec.New(nil, Info{})
	if err != nil {
		t.Fatal(err)
	}
	b := c.(*Btrfs)

	// First sighting: old corruption errors are a warning, a missing
	// device is failing.
	got := btrfsCollectMap(t, b, env)
	d := got[btrfsFSData]
	if d.Verdict != "warning" || !storageContainsSub(d.Reasons, "device 2: 3 corruption_errs were recorded before pinkie first looked") {
		t.Errorf("first sighting: %s %q", d.Verdict, d.Reasons)
	}
	if d.Label != "data" || len(d.Devices) != 2 || d.Devices[1].Errors.CorruptionErrs != 3 || d.Devices[1].Baseline.CorruptionErrs != 3 ||
		d.Allocation.Data.TotalBytes != 1073741824 || d.Allocation.Metadata.UsedBytes != 16777216 || d.Source != "sysfs" ||
		strings.Join(d.DeviceNames, ",") != "sda2,sdb2" || !d.FirstSeen.Equal(t0) {
		t.Errorf("facts: %+v", d)
	}
	if g := got[btrfsFSDegraded]; g.Verdict != "failing" || !storageContainsSub(g.Reasons, "device 2 is missing") {
		t.Errorf("missing device: %s %q", g.Verdict, g.Reasons)
	}

	// The same counters later: ok. A new producer (agent restart) reads
	// the baseline from state.
	now = t0.Add(time.Hour)
	b = NewBtrfs("btrfs")
	if d := btrfsCollectMap(t, b, env)[btrfsFSData]; d.Verdict != "ok" || len(d.Reasons) != 0 || !d.FirstSeen.Equal(t0) {
		t.Errorf("unchanged: %s %q first seen %v", d.Verdict, d.Reasons, d.FirstSeen)
	}

	// They rise: failing, and it stays failing.
	root["sys/fs/btrfs/"+btrfsFSData+"/devinfo/2/error_stats"].Data = []byte("write_errs 0\nread_errs 1\nflush_errs 0\ncorruption_errs 5\ngeneration_errs 0\n")
	for i := 0; i < 2; i++ {
		d := btrfsCollectMap(t, b, env)[btrfsFSData]
		if d.Verdict != "failing" || !storageContainsSub(d.Reasons, "device 2: corruption_errs rose from 3 to 5 since 2026-11-27T02:00:00Z") ||
			!storageContainsSub(d.Reasons, "read_io_errs rose from 0 to 1") {
			t.Errorf("risen (%d): %s %q", i, d.Verdict, d.Reasons)
		}
	}
	// The operator resets them (btrfs device stats -z): ok, new baseline.
	root["sys/fs/btrfs/"+btrfsFSData+"/devinfo/2/error_stats"].Data = []byte("write_errs 0\nread_errs 0\nflush_errs 0\ncorruption_errs 0\ngeneration_errs 0\n")
	if d := btrfsCollectMap(t, b, env)[btrfsFSData]; d.Verdict != "ok" || d.Devices[1].Baseline.CorruptionErrs != 0 {
		t.Errorf("after reset: %s %q %+v", d.Verdict, d.Reasons, d.Devices[1])
	}
	var saved btrfsBaseline
	if err := json.Unmarshal(state.m["btrfs/"+btrfsFSData], &saved); err != nil || saved.Devices["2"].CorruptionErrs != 0 || !saved.FirstSeen.Equal(t0) {
		t.Errorf("state %s: %v", state.m["btrfs/"+btrfsFSData], err)
	}
}

func TestBtrfsDeviceStatsFallback(t *testing.T) {
	out := "[/dev/sdd1].write_io_errs    0\n[/dev/sdd1].read_io_errs     0\n[/dev/sdd1].flush_io_errs    0\n[/dev/sdd1].corruption_errs  0\n[/dev/sdd1].generation_errs  2\n"
	run := &smartFakeRunner{out: map[string][]byte{"btrfs device stats /srv/back up": []byte(out)}}
	env := Env{Host: "goliath", Root: os.DirFS(filepath.Join("testdata", "btrfs", "old")), Run: run, Now: time.Now}
	d := btrfsCollectMap(t, NewBtrfs("btrfs"), env)["4e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a7b"]
	if d.Source != "btrfs device stats" || len(d.Devices) != 1 || d.Devices[0].Path != "/dev/sdd1" || d.Devices[0].Errors.GenerationErrs != 2 {
		t.Errorf("fallback: %+v", d)
	}
	if d.Verdict != "warning" || !storageContainsSub(d.Reasons, "device /dev/sdd1: 2 generation_errs were recorded before") {
		t.Errorf("verdict %s %q", d.Verdict, d.Reasons)
	}
	// Without the btrfs command: an error, the allocation still reported.
	env.Run = &smartFakeRunner{}
	obs, err := NewBtrfs("btrfs").Collect(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "btrfs device stats /srv/back up") {
		t.Errorf("no btrfs binary: err %v", err)
	}
	if len(obs) != 0 {
		t.Errorf("observations without counters: %+v", obs)
	}
}

func TestParseBtrfsDeviceStats(t *testing.T) {
	devs, err := ParseBtrfsDeviceStats([]byte("[/dev/sda].write_io_errs 1\n[/dev/sda].read_io_errs 2\n[/dev/sda].flush_io_errs 3\n[/dev/sda].corruption_errs 4\n[/dev/sda].generation_errs 5\n[/dev/sdb].corruption_errs 9\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].Errors != (events.BtrfsCounters{WriteIOErrs: 1, ReadIOErrs: 2, FlushIOErrs: 3, CorruptionErrs: 4, GenerationErrs: 5}) || devs[1].Errors.CorruptionErrs != 9 {
		t.Errorf("%+v", devs)
	}
	for _, bad := range []string{"", "ERROR: not a btrfs filesystem: /x\n", "[/dev/sda].write_io_errs lots\n", "[/dev/sda]write_io_errs 1\n"} {
		if _, err := ParseBtrfsDeviceStats([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestBtrfsBadInput(t *testing.T) {
	ctx := context.Background()
	b := NewBtrfs("btrfs")
	if _, err := b.Collect(ctx, Env{Root: fstest.MapFS{}, Now: time.Now}); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no btrfs module: %v", err)
	}
	only := fstest.MapFS{"sys/fs/btrfs/features/x": {Data: []byte("0")}}
	if _, err := b.Collect(ctx, Env{Root: only, Now: time.Now}); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no filesystems: %v", err)
	}
	root := btrfsCopyTree(t, filepath.Join("testdata", "btrfs", "new"))
	root["sys/fs/btrfs/"+btrfsFSData+"/devinfo/2/error_stats"].Data = []byte("write_errs 0\nread_er")
	delete(root, "sys/fs/btrfs/"+btrfsFSData+"/allocation/system/bytes_used")
	state := &btrfsMemState{m: map[string][]byte{"btrfs/" + btrfsFSDegraded: []byte("{garbage")}}
	obs, err := b.Collect(ctx, Env{Host: "h", Root: root, State: state, Now: time.Now})
	for _, want := range []string{"device 2: error_stats: want the 5 counters, got 1 (truncated?)", "allocation system bytes_used", "state is not valid"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v does not mention %q", err, want)
		}
	}
	if len(obs) != 2 {
		t.Errorf("%d observations, want both filesystems reported", len(obs))
	}
	// Unreadable state: reported, the verdict still given.
	state = &btrfsMemState{m: map[string][]byte{}, getErr: fs.ErrPermission}
	obs, err = NewBtrfs("btrfs").Collect(ctx, Env{Host: "h", Root: btrfsCopyTree(t, filepath.Join("testdata", "btrfs", "new")), State: state, Now: time.Now})
	if len(obs) != 2 || err == nil || !strings.Contains(err.Error(), "read state: permission denied") {
		t.Errorf("state unreadable: %d, %v", len(obs), err)
	}
	if _, err := btrfsSpec().New(json.RawMessage(`{"mounts":[]}`), Info{}); err == nil {
		t.Error("unknown option accepted")
	}
}

func TestStorageParseMountinfo(t *testing.T) {
	m := storageParseMountinfo([]byte("45 22 8:49 / /srv/back\\040up rw,relatime shared:30 master:2 - btrfs /dev/sdd1 rw\nshort line\n"))
	if len(m) != 1 || m[0].mountPoint != "/srv/back up" || m[0].fsType != "btrfs" || m[0].source != "/dev/sdd1" || m[0].mountID != "45" {
		t.Errorf("%+v", m)
	}
}

// TestBtrfsRealLoopDevice makes a real btrfs on a loop device, corrupts a
// data block of a file behind the filesystem's back, reads the file and
// checks that corruption_errs rose and the verdict turned failing. It
// needs root, a free loop device, mkfs.btrfs and btrfs (btrfs-progs).
func TestBtrfsRealLoopDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the loop-device btrfs test")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a loop device")
	}
	for _, tool := range []string{"mkfs.btrfs", "btrfs", "losetup", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install -y btrfs-progs): %v", tool, err)
		}
	}
	if out, err := exec.Command("losetup", "-f").CombinedOutput(); err != nil {
		t.Skipf("no free loop device (losetup -f: %v %s)", err, out)
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "btrfs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(256 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6], u[8] = (u[6]&0x0f)|0x40, (u[8]&0x3f)|0x80
	fsid := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	sh := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	// Data single (no second copy to heal from), metadata dup.
	sh("mkfs.btrfs", "-q", "-U", fsid, "-d", "single", "-m", "dup", img)
	mount := func() {
		sh("mount", "-o", "loop", img, mnt)
		t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	}
	mount()
	content := make([]byte, 1<<20)
	mrand.New(mrand.NewSource(42)).Read(content)
	if err := os.WriteFile(filepath.Join(mnt, "victim"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	sh("sync")

	state := &btrfsMemState{m: map[string][]byte{}}
	env := Env{Host: "testhost", Root: os.DirFS("/"), Run: ExecRunner{Timeout: 30 * time.Second}, State: state, Now: time.Now}
	b := NewBtrfs("btrfs")
	before, ok := btrfsCollectMapAny(t, b, env)[fsid]
	if !ok {
		t.Fatalf("filesystem %s not reported", fsid)
	}
	if before.Verdict != "ok" || before.Source != "sysfs" || len(before.Devices) != 1 || before.Devices[0].Errors != (events.BtrfsCounters{}) ||
		before.Allocation.Data.TotalBytes == 0 {
		t.Fatalf("fresh filesystem: %+v", before)
	}

	// Corrupt the file's first 4 KiB in the image, behind btrfs's back.
	sh("umount", mnt)
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(raw, content[:64])
	if off < 0 {
		t.Fatal("file content not found in the image")
	}
	junk := make([]byte, 4096)
	_, _ = rand.Read(junk)
	fi, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fi.WriteAt(junk, int64(off)); err != nil {
		t.Fatal(err)
	}
	fi.Close()
	mount()
	if _, err := os.ReadFile(filepath.Join(mnt, "victim")); err == nil {
		t.Fatal("reading the corrupted file succeeded; btrfs should have refused it (EIO)")
	}

	after := btrfsCollectMapAny(t, b, env)[fsid]
	if after.Devices[0].Errors.CorruptionErrs == 0 || after.Verdict != "failing" ||
		!storageContainsSub(after.Reasons, fmt.Sprintf("corruption_errs rose from 0 to %d", after.Devices[0].Errors.CorruptionErrs)) {
		t.Fatalf("after corruption: %s %q %+v", after.Verdict, after.Reasons, after.Devices)
	}
	// btrfs device stats agrees with sysfs.
	out, _, err := env.Run.Run(context.Background(), "btrfs", "device", "stats", mnt)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := ParseBtrfsDeviceStats(out)
	if err != nil || len(devs) != 1 || devs[0].Errors != after.Devices[0].Errors {
		t.Errorf("btrfs device stats %+v (%v) differs from sysfs %+v", devs, err, after.Devices[0].Errors)
	}
	t.Logf("corruption_errs rose to %d; reasons %q", after.Devices[0].Errors.CorruptionErrs, after.Reasons)
}

// btrfsCollectMapAny collects on a real host, where other filesystems may
// report errors of their own.
func btrfsCollectMapAny(t *testing.T, b *Btrfs, env Env) map[string]events.Btrfs {
	t.Helper()
	obs, err := b.Collect(context.Background(), env)
	if err != nil {
		t.Logf("Collect on the real host: %v", err)
	}
	out := map[string]events.Btrfs{}
	for _, o := range obs {
		out[o.Object] = o.Data.(events.Btrfs)
	}
	return out
}
