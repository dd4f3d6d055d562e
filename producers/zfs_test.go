package producers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

// zfsFixtureInput splits a fixture input into the harness's timestamp (its
// first line, TEST_TIMESTAMP=…, not zpool's) and zpool's output.
func zfsFixtureInput(t testing.TB, b []byte) (time.Time, []byte) {
	t.Helper()
	first, rest, _ := bytes.Cut(b, []byte("\n"))
	ts, ok := strings.CutPrefix(string(first), "TEST_TIMESTAMP=")
	if !ok {
		t.Fatalf("first line %q is not the harness's TEST_TIMESTAMP", first)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(n, 0).UTC(), rest
}

// zfsGauges reads the expected states of the fixture's output file
// (Prometheus text: name{labels} value), leaving out the status
// description, which pinkie keeps as zpool's text.
func zfsGauges(t *testing.T, b []byte) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "zpool_pool_status_desc") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// zfsAsGauges renders parsed pools in the fixture's gauge vocabulary.
func zfsAsGauges(pools []events.ZFSPool) map[string]float64 {
	states := map[string]float64{"ONLINE": 10, "OFFLINE": 25, "SPLIT": 26, "DEGRADED": 50, "FAULTED": 60, "SUSPENDED": 70, "REMOVED": 80, "UNAVAIL": 100}
	m := map[string]float64{}
	for _, p := range pools {
		l := fmt.Sprintf(`{pool=%q}`, p.Pool)
		m["zpool_pool_state"+l] = states[p.State]
		scan := map[string]float64{"scrub finished": 10, "resilver finished": 15, "scrub in_progress": 30, "scrub canceled": 35, "none ": 40}[p.Scan.Function+" "+p.Scan.State]
		m["zpool_scan_state"+l] = scan
		if p.Scan.Function != "none" {
			age := 0.0
			if p.Scan.AgeSeconds != nil {
				age = float64(*p.Scan.AgeSeconds) / 3600
			}
			m["zpool_scan_age"+l] = age
		}
		switch {
		case p.DataErrors == "":
			m["zpool_error_state"+l] = 0
		case strings.Contains(p.DataErrors, "No known data errors"):
			m["zpool_error_state"+l] = 10
		default:
			m["zpool_error_state"+l] = 50
		}
		for _, v := range p.Vdevs {
			dev := v.Path
			if v.Depth == 0 && v.Group == "" {
				dev = "__root__"
			}
			dl := fmt.Sprintf(`{pool=%q,dev=%q}`, p.Pool, dev)
			m["zpool_dev_state"+dl] = states[v.State]
			m["zpool_dev_errors_read"+dl] = float64(v.ReadErrors)
			m["zpool_dev_errors_write"+dl] = float64(v.WriteErrors)
			m["zpool_dev_errors_checksum"+dl] = float64(v.ChecksumErrors)
		}
	}
	return m
}

// TestParseZpoolStatusFixtures checks every input in
// ../shared/fixtures/zpool against the states in its output file, and
// the verdict chosen for each pool.
func TestParseZpoolStatusFixtures(t *testing.T) {
	dir := storageFixtures(t, "zpool")
	verdicts := map[string]map[string]string{
		// mirror-1 lost loop3 (UNAVAIL, corrupted data): DEGRADED.
		"input-01-corrupted.txt": {"dummy": "failing"},
		// ONLINE, but 1 data error and the scrub ended with 1 error.
		"input-02-online-data-corruption.txt": {"jeremy": "failing"},
		// A finished resilver, all ONLINE.
		"input-03-resilvered.txt": {"dummy": "ok"},
		// A scrub in progress is routine.
		"input-04-scrub-progress.txt": {"neptune": "ok"},
		// Features not enabled are not a fault.
		"input-05-features.txt": {"rpool": "ok", "wilbur": "ok"},
	}
	inputs, err := filepath.Glob(filepath.Join(dir, "input-*.txt"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs in %s: %v", dir, err)
	}
	counts := map[string]int{}
	for _, in := range inputs {
		name := filepath.Base(in)
		t.Run(name, func(t *testing.T) {
			want, ok := verdicts[name]
			if !ok {
				t.Fatalf("fixture %s has no expected verdict in this table", name)
			}
			b, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			now, status := zfsFixtureInput(t, b)
			pools, err := ParseZpoolStatus(status, now, time.UTC)
			if err != nil {
				t.Fatalf("ParseZpoolStatus: %v", err)
			}
			out, err := os.ReadFile(filepath.Join(dir, "output-"+strings.TrimPrefix(name, "input-")))
			if err != nil {
				t.Fatal(err)
			}
			wantG, gotG := zfsGauges(t, out), zfsAsGauges(pools)
			for k, w := range wantG {
				g, ok := gotG[k]
				if !ok {
					t.Errorf("%s missing", k)
				} else if math.Abs(g-w) > 0.001 {
					t.Errorf("%s = %v, want %v", k, g, w)
				}
			}
			for k := range gotG {
				if _, ok := wantG[k]; !ok {
					t.Errorf("%s reported but not expected", k)
				}
			}
			got := map[string]string{}
			for _, p := range pools {
				got[p.Pool] = p.Verdict
				counts[p.Verdict]++
				if p.Verdict != "ok" && len(p.Reasons) == 0 {
					t.Errorf("%s: verdict %s without reasons", p.Pool, p.Verdict)
				}
				t.Logf("%s: %s %q", p.Pool, p.Verdict, p.Reasons)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
		})
	}
	t.Logf("zpool fixture verdicts: %v", counts)
}

const zfsStatusBig = `  pool: tank
 state: ONLINE
status: One or more devices has experienced an unrecoverable error.
	Applications are unaffected.
action: Determine if the device needs to be replaced.
  scan: resilver in progress since Sun Nov 22 10:00:00 2026
	1.20T scanned at 500M/s, 600G issued at 250M/s, 2.40T total
	150G resilvered, 25.00% done, 02:00:00 to go
config:

	NAME          STATE     READ WRITE CKSUM
	tank          ONLINE       0     0     0
	  raidz2-0    ONLINE       0     0     0
	    sda       ONLINE       0     0    12
	    sdb       ONLINE     1.2K    0     0
	    spare-2   ONLINE       0     0     0
	      sdc     ONLINE       0     0     0  (resilvering)
	      sdh     ONLINE       0     0     0
	logs
	  mirror-1    ONLINE       0     0     0
	    nvme0n1   ONLINE       0     0     0
	    nvme1n1   OFFLINE      0     0     0
	cache
	  sdf         FAULTED      0     0     0  too many errors
	spares
	  sdh         INUSE     currently in use
	  sdi         AVAIL

errors: No known data errors
`

func TestParseZpoolStatusTree(t *testing.T) {
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	pools, err := ParseZpoolStatus([]byte(zfsStatusBig), now, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != 1 {
		t.Fatalf("%d pools", len(pools))
	}
	p := pools[0]
	var got []string
	for _, v := range p.Vdevs {
		got = append(got, fmt.Sprintf("%d %s %s %s %d/%d/%d %s", v.Depth, v.Group, v.Path, v.State, v.ReadErrors, v.WriteErrors, v.ChecksumErrors, v.Note))
	}
	want := []string{
		"0  tank ONLINE 0/0/0 ",
		"1  raidz2-0 ONLINE 0/0/0 ",
		"2  raidz2-0/sda ONLINE 0/0/12 ",
		"2  raidz2-0/sdb ONLINE 1200/0/0 ",
		"2  raidz2-0/spare-2 ONLINE 0/0/0 ",
		"3  raidz2-0/spare-2/sdc ONLINE 0/0/0 (resilvering)",
		"3  raidz2-0/spare-2/sdh ONLINE 0/0/0 ",
		"1 logs logs/mirror-1 ONLINE 0/0/0 ",
		"2 logs logs/mirror-1/nvme0n1 ONLINE 0/0/0 ",
		"2 logs logs/mirror-1/nvme1n1 OFFLINE 0/0/0 ",
		"1 cache cache/sdf FAULTED 0/0/0 too many errors",
		"1 spares spares/sdh INUSE 0/0/0 currently in use",
		"1 spares spares/sdi AVAIL 0/0/0 ",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("vdevs (-want +got):\n%s", diff)
	}
	if p.Scan.Function != "resilver" || p.Scan.State != "in_progress" || p.Scan.ProgressPercent == nil || *p.Scan.ProgressPercent != 25 ||
		p.Scan.Started == nil || !p.Scan.Started.Equal(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("scan %+v", p.Scan)
	}
	if p.Status != "One or more devices has experienced an unrecoverable error. Applications are unaffected." {
		t.Errorf("status %q", p.Status)
	}
	if p.Verdict != "warning" {
		t.Errorf("verdict %s", p.Verdict)
	}
	for _, r := range []string{"raidz2-0/sda has 0 read, 0 write and 12 checksum errors", "raidz2-0/sdb has 1200 read",
		"logs/mirror-1/nvme1n1 is OFFLINE", "cache/sdf is FAULTED (too many errors)", "resilver in progress: 25.0% done"} {
		if !storageContainsSub(p.Reasons, r) {
			t.Errorf("no reason mentions %q: %q", r, p.Reasons)
		}
	}
	if storageContainsSub(p.Reasons, "spares/") {
		t.Errorf("spares AVAIL/INUSE judged: %q", p.Reasons)
	}
}

func TestJudgeZFSPool(t *testing.T) {
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	status := func(state, scan, errs string) events.ZFSPool {
		s := fmt.Sprintf("  pool: p\n state: %s\n  scan: %s\nconfig:\n\n\tNAME STATE READ WRITE CKSUM\n\tp %s 0 0 0\n\t  sda ONLINE 0 0 0\n\nerrors: %s\n", state, scan, state, errs)
		pools, err := ParseZpoolStatus([]byte(s), now, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		return pools[0]
	}
	tests := []struct {
		name    string
		p       events.ZFSPool
		cap     int
		verdict string
		reason  string
	}{
		{"recent scrub", status("ONLINE", "scrub repaired 0B in 00:10:00 with 0 errors on Sun Nov 22 04:00:00 2026", "No known data errors"), 50, "ok", ""},
		{"old scrub", status("ONLINE", "scrub repaired 0B in 00:10:00 with 0 errors on Sun Oct 18 04:00:00 2026", "No known data errors"), 50, "warning", "finished 39 days ago"},
		{"scrub 34 days", status("ONLINE", "scrub repaired 0B in 00:10:00 with 0 errors on Sat Oct 24 04:00:00 2026", "No known data errors"), 50, "ok", ""},
		{"scrub repaired", status("ONLINE", "scrub repaired 1.50M in 00:10:00 with 0 errors on Sun Nov 22 04:00:00 2026", "No known data errors"), 50, "warning", "repaired 1.50M"},
		{"scrub canceled", status("ONLINE", "scrub canceled on Sun Nov 22 04:00:00 2026", "No known data errors"), 50, "warning", "canceled"},
		{"never scrubbed", status("ONLINE", "none requested", "No known data errors"), 50, "ok", ""},
		{"old resilver not judged", status("ONLINE", "resilvered 21K in 00:00:00 with 0 errors on Sat Feb 10 20:30:44 2024", "No known data errors"), 50, "ok", ""},
		{"full", status("ONLINE", "none requested", "No known data errors"), 91, "warning", "91% full"},
		{"faulted", status("FAULTED", "none requested", "No known data errors"), 0, "failing", "FAULTED"},
		{"suspended", status("SUSPENDED", "none requested", "No known data errors"), 0, "failing", "cannot be used"},
		{"permanent errors", status("ONLINE", "none requested", "Permanent errors have been detected in the following files:"), 0, "failing", "permanent data errors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.CapacityPercent = tt.cap
			v, reasons := JudgeZFSPool(tt.p)
			if v != tt.verdict {
				t.Errorf("verdict %s, want %s; reasons %q", v, tt.verdict, reasons)
			}
			if tt.reason != "" && !storageContainsSub(reasons, tt.reason) {
				t.Errorf("no reason mentions %q: %q", tt.reason, reasons)
			}
		})
	}
}

func TestParseZpoolStatusBadInput(t *testing.T) {
	for _, tt := range []struct{ name, in, wantErr string }{
		{"empty", "", "no \"pool:\" line"},
		{"no pools", "no pools available\n", "no \"pool:\" line"},
		{"garbage", "\x00\x01 binary junk", "no \"pool:\" line"},
		{"truncated after pool", "  pool: tank\n", "pool tank has no state line"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseZpoolStatus([]byte(tt.in), time.Now(), time.UTC)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
	// A status cut in the middle of the vdev tree keeps what it had.
	cut := zfsStatusBig[:strings.Index(zfsStatusBig, "spare-2")]
	pools, err := ParseZpoolStatus([]byte(cut), time.Now(), time.UTC)
	if err != nil || len(pools) != 1 || len(pools[0].Vdevs) != 4 || pools[0].DataErrors != "" {
		t.Errorf("truncated: %v, %+v", err, pools)
	}
}

func FuzzParseZpoolStatus(f *testing.F) {
	if ins, err := filepath.Glob(filepath.Join("..", "..", "shared", "fixtures", "zpool", "input-*.txt")); err == nil {
		for _, in := range ins {
			if b, err := os.ReadFile(in); err == nil {
				_, rest, _ := bytes.Cut(b, []byte("\n"))
				f.Add(rest)
			}
		}
	}
	f.Add([]byte(zfsStatusBig))
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		pools, _ := ParseZpoolStatus(b, now, time.UTC)
		for _, p := range pools {
			if p.Verdict != "ok" && p.Verdict != "warning" && p.Verdict != "failing" {
				t.Fatalf("verdict %q", p.Verdict)
			}
			if _, err := json.Marshal(p); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestZFSCollect(t *testing.T) {
	dir := storageFixtures(t, "zpool")
	b, err := os.ReadFile(filepath.Join(dir, "input-05-features.txt"))
	if err != nil {
		t.Fatal(err)
	}
	_, status := zfsFixtureInput(t, b)
	list := "rpool\t1992864825344\t512000000000\t1480864825344\t3\t25\tONLINE\nwilbur\t7999376588800\t7439420227584\t559956361216\t-\t93\tONLINE\n"
	run := &smartFakeRunner{out: map[string][]byte{
		"zpool list -Hp -o name,size,alloc,free,frag,cap,health": []byte(list),
		"zpool status -p": status,
	}}
	now := time.Date(2024, 2, 12, 0, 0, 0, 0, time.Local)
	spec, ok := Lookup("zfs")
	if !ok || !spec.DefaultEnabled {
		t.Fatal("zfs not in All() or not on by default")
	}
	c, err := spec.New(nil, Info{})
	if err != nil {
		t.Fatal(err)
	}
	z := c.(*ZFS)
	obs, err := z.Collect(context.Background(), Env{Host: "goliath", Run: run, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	got := map[string]string{}
	for _, o := range obs {
		p := o.Data.(events.ZFSPool)
		got[o.Object] = fmt.Sprintf("%s cap %d frag %v size %d %s", p.State, p.CapacityPercent, p.FragmentationPercent != nil, p.SizeBytes, p.Verdict)
		if o.Kind != "zfs" || o.ID == "" || len(p.Vdevs) != 4 {
			t.Errorf("observation %+v", o)
		}
	}
	want := map[string]string{
		"rpool":  "ONLINE cap 25 frag true size 1992864825344 ok",
		"wilbur": "ONLINE cap 93 frag false size 7999376588800 warning",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// zpool status fails: the pools from zpool list are still reported.
	run.out["zpool status -p"] = nil
	delete(run.out, "zpool status -p")
	obs, err = z.Collect(context.Background(), Env{Host: "goliath", Run: &zfsStatusFails{run}, Now: func() time.Time { return now }})
	if len(obs) != 2 || err == nil || !strings.Contains(err.Error(), "zpool status: exit code 1") {
		t.Errorf("status failing: %d observations, err %v", len(obs), err)
	}
}

type zfsStatusFails struct{ *smartFakeRunner }

func (r *zfsStatusFails) Run(ctx context.Context, name string, args ...string) ([]byte, int, error) {
	if len(args) > 0 && args[0] == "status" {
		return []byte("cannot open: permission denied\n"), 1, nil
	}
	return r.smartFakeRunner.Run(ctx, name, args...)
}

func TestZFSNotApplicableAndBadList(t *testing.T) {
	z := &ZFS{zpool: "zpool"}
	// No zpool binary.
	_, err := z.Collect(context.Background(), Env{Run: &smartFakeRunner{}, Now: time.Now})
	if !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no zpool: %v", err)
	}
	// zpool present, no pools.
	run := &smartFakeRunner{out: map[string][]byte{"zpool list -Hp -o name,size,alloc,free,frag,cap,health": nil}}
	_, err = z.Collect(context.Background(), Env{Run: run, Now: time.Now})
	if !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no pools: %v", err)
	}
	// Garbage from zpool list.
	run.out["zpool list -Hp -o name,size,alloc,free,frag,cap,health"] = []byte("NAME SIZE\ntank 1T\n")
	_, err = z.Collect(context.Background(), Env{Run: run, Now: time.Now})
	if err == nil || errors.Is(err, ErrNotApplicable) || !strings.Contains(err.Error(), "7 tab-separated fields") {
		t.Errorf("garbage list: %v", err)
	}
	// zpool list itself fails.
	run.out["zpool list -Hp -o name,size,alloc,free,frag,cap,health"] = nil
	run.code = map[string]int{"zpool list -Hp -o name,size,alloc,free,frag,cap,health": 1}
	_, err = z.Collect(context.Background(), Env{Run: run, Now: time.Now})
	if err == nil || !strings.Contains(err.Error(), "exit code 1") {
		t.Errorf("failing list: %v", err)
	}
	if _, err := zfsSpec().New(json.RawMessage(`{"pools":["x"]}`), Info{}); err == nil {
		t.Error("unknown option accepted")
	}
	keys := []string{}
	for k := range zfsGroups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) != 5 {
		t.Errorf("groups %v", keys)
	}
}
