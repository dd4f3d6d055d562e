package producers

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

// TestParseMDStatFixture judges every array of procfs's /proc/mdstat
// fixture (../shared/fixtures/mdstat), each with the verdict read off its
// lines.
func TestParseMDStatFixture(t *testing.T) {
	dir := storageFixtures(t, "mdstat")
	b, err := os.ReadFile(filepath.Join(dir, "procfs-mdstat.txt"))
	if err != nil {
		t.Fatal(err)
	}
	arrays, err := ParseMDStat(b)
	if err != nil {
		t.Fatalf("ParseMDStat: %v", err)
	}
	want := map[string]struct {
		verdict string
		reasons []string
	}{
		"md3":   {"ok", nil},                                       // raid6 [8/8] with two spares
		"md127": {"ok", nil},                                       // raid1 [2/2]
		"md0":   {"ok", nil},                                       // raid1 [2/2]
		"md4":   {"failing", []string{"inactive", "failed: sda3"}}, // inactive raid1, sda3 faulty
		"md6": {"failing", []string{"degraded: 1 of 2", "failed: sdb2", // [2/1] [U_], rebuilding onto the spare
			"recover in progress: 8.5% done, about 17 minutes left"}},
		"md8":   {"warning", []string{"resync in progress: 8.5% done"}},                       // resync of a complete raid1
		"md201": {"ok", nil},                                                                  // a check is routine
		"md7":   {"failing", []string{"degraded: 1 of 4", "failed: sdc1"}},                    // raid6 [4/3]
		"md9":   {"failing", []string{"2 member(s) failed: sde, sdf", "resync delayed"}},      // two faulty members
		"md10":  {"ok", nil},                                                                  // raid0
		"md11":  {"failing", []string{"failed: sdc3", "resync pending"}},                      // faulty member, resync pending
		"md12":  {"ok", nil},                                                                  // raid0
		"md126": {"ok", nil},                                                                  // raid0 volume in an IMSM container
		"md219": {"ok", nil},                                                                  // the IMSM container: inactive by design
		"md00":  {"ok", nil},                                                                  // raid0 of one
		"md120": {"ok", nil},                                                                  // linear
		"md101": {"ok", nil},                                                                  // read-only raid0
		"md42":  {"failing", []string{"degraded: 1 of 3", "reshape in progress: 56.1% done"}}, // raid5 [3/2] reshaping
	}
	if len(arrays) != len(want) {
		t.Errorf("%d arrays, want %d", len(arrays), len(want))
	}
	counts := map[string]int{}
	for _, a := range arrays {
		counts[a.Verdict]++
		w, ok := want[a.Device]
		if !ok {
			t.Errorf("array %s has no expected verdict", a.Device)
			continue
		}
		if a.Verdict != w.verdict {
			t.Errorf("%s: verdict %s, want %s; reasons %q", a.Device, a.Verdict, w.verdict, a.Reasons)
		}
		for _, r := range w.reasons {
			if !storageContainsSub(a.Reasons, r) {
				t.Errorf("%s: no reason mentions %q: %q", a.Device, r, a.Reasons)
			}
		}
		if a.Verdict == "ok" && len(a.Reasons) > 0 {
			t.Errorf("%s: ok with reasons %q", a.Device, a.Reasons)
		}
	}
	t.Logf("mdstat fixture verdicts: %v", counts)
	byName := map[string]events.MDRaid{}
	for _, a := range arrays {
		byName[a.Device] = a
	}
	if a := byName["md219"]; !a.Container || a.Metadata != "external:imsm" || a.State != "inactive" {
		t.Errorf("md219: %+v", a)
	}
	if a := byName["md3"]; a.Level != "raid6" || a.RequiredDisks != 8 || a.ActiveDisks != 8 || a.SpareDisks != 2 || len(a.Members) != 10 || a.Metadata != "1.2" {
		t.Errorf("md3: %+v", a)
	}
}

func TestMDRaidCollectSysfs(t *testing.T) {
	spec, ok := Lookup("mdraid")
	if !ok || !spec.DefaultEnabled {
		t.Fatal("mdraid not in All() or not on by default")
	}
	c, err := spec.New(nil, Info{})
	if err != nil {
		t.Fatal(err)
	}
	env := Env{Host: "goliath", Root: os.DirFS(filepath.Join("testdata", "mdraid")), Now: time.Now}
	obs, err := c.(*MDRaid).Collect(context.Background(), env)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	got := map[string]events.MDRaid{}
	for _, o := range obs {
		got[o.Object] = o.Data.(events.MDRaid)
		if o.Kind != "mdraid" || o.ID == "" {
			t.Errorf("observation %+v", o)
		}
	}
	md0, md1 := got["md0"], got["md1"]
	if md0.Verdict != "warning" || md0.MismatchCount == nil || *md0.MismatchCount != 128 || md0.ArrayState != "clean" || md0.SyncAction != "" {
		t.Errorf("md0: %+v", md0)
	}
	if !storageContainsSub(md0.Reasons, "mismatch_cnt is 128") {
		t.Errorf("md0 reasons %q", md0.Reasons)
	}
	if md1.Verdict != "failing" || md1.DegradedDisks != 1 || md1.SyncAction != "recover" || md1.SyncCompleted != "1000000 / 4000000" ||
		md1.SyncPercent == nil || *md1.SyncPercent != 25 || md1.FailedDisks != 1 {
		t.Errorf("md1: %+v", md1)
	}
	wantReasons := []string{"array is degraded: 1 of 3 members missing", "1 member(s) failed: sdd1", "recover in progress: 25.0% done, about 120 minutes left"}
	if diff := cmp.Diff(wantReasons, md1.Reasons); diff != "" {
		t.Errorf("md1 reasons (-want +got):\n%s", diff)
	}
}

func TestMDRaidBadInput(t *testing.T) {
	m := &MDRaid{}
	ctx := context.Background()
	// No md driver: not applicable.
	if _, err := m.Collect(ctx, Env{Root: fstest.MapFS{}, Now: time.Now}); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no mdstat: %v", err)
	}
	// The driver but no arrays.
	none := fstest.MapFS{"proc/mdstat": {Data: []byte("Personalities : \nunused devices: <none>\n")}}
	if _, err := m.Collect(ctx, Env{Root: none, Now: time.Now}); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no arrays: %v", err)
	}
	// Unreadable.
	denied := fstest.MapFS{"proc/mdstat": {Data: []byte("x"), Mode: 0}}
	if _, err := m.Collect(ctx, Env{Root: storageDenyFS{denied, "proc/mdstat"}, Now: time.Now}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("denied: %v", err)
	}
	for _, tt := range []struct{ name, in string }{
		{"garbage", "hello world\n"},
		{"truncated", "Personalities : [raid1]\nmd0 : active raid1 sda1[0] sdb1[1]\n"},
		{"bad status line", "Personalities : [raid1]\nmd0 : active raid1 sda1[0] sdb1[1]\n      lots of blocks\n\n\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseMDStat([]byte(tt.in)); err == nil {
				t.Errorf("accepted %q", tt.in)
			}
		})
	}
	// A sysfs file with garbage is reported; the array is still judged.
	root := fstest.MapFS{
		"proc/mdstat":                     {Data: []byte("Personalities : [raid1]\nmd0 : active raid1 sdb1[1] sda1[0]\n      1048512 blocks super 1.2 [2/2] [UU]\n\nunused devices: <none>\n")},
		"sys/block/md0/md/mismatch_cnt":   {Data: []byte("lots\n")},
		"sys/block/md0/md/array_state":    {Data: []byte("clean\n")},
		"sys/block/md0/md/sync_completed": {Data: []byte("none\n")},
	}
	obs, err := m.Collect(ctx, Env{Root: root, Now: time.Now})
	if len(obs) != 1 || obs[0].Data.(events.MDRaid).Verdict != "ok" || err == nil || !strings.Contains(err.Error(), `"lots" is not a number`) {
		t.Errorf("garbage sysfs: %+v, %v", obs, err)
	}
	if _, err := mdraidSpec().New(json.RawMessage(`{"arrays":["md0"]}`), Info{}); err == nil {
		t.Error("unknown option accepted")
	}
}

// storageDenyFS refuses to open one file, as a root-only file would.
type storageDenyFS struct {
	fs.FS
	name string
}

func (d storageDenyFS) Open(name string) (fs.File, error) {
	if name == d.name {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return d.FS.Open(name)
}
