package producers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

// storageFixtures is a folder of the shared real-world fixtures
// (../shared/fixtures, next to the project root; see its README.md for
// provenance). Tests skip when it is absent: it is not part of the repo.
func storageFixtures(t testing.TB, sub string) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "fixtures", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared fixtures %s not available (%v): they live outside the repo in ../shared/fixtures", dir, err)
	}
	return dir
}

// TestParseSmartctlJSONFixtures judges every real smartctl output in
// ../shared/fixtures/smart with an expected verdict decided by reading
// the file: see the comment on each row.
func TestParseSmartctlJSONFixtures(t *testing.T) {
	dir := storageFixtures(t, "smart")
	tests := []struct {
		file     string
		protocol string
		verdict  string
		reasons  []string // each must appear in some reason
		wantErr  string
	}{
		// WD 14 TB SATA, every attribute healthy, self-test passed.
		{file: "smart-ata.json", protocol: "ata", verdict: "ok"},
		{file: "smart-ata-date.json", protocol: "ata", verdict: "ok"},
		// The same drive edited by scrutiny: raw value 10 on attributes
		// 5, 10, 196, 197, 198 (the decoded strings still say 0).
		{file: "smart-ata-date2.json", protocol: "ata", verdict: "warning", reasons: []string{
			"5 Reallocated_Sector_Ct raw count is 10", "10 Spin_Retry_Count raw count is 10",
			"196 Reallocated_Event_Count raw count is 10", "197 Current_Pending_Sector raw count is 10",
			"198 Offline_Uncorrectable raw count is 10"}},
		// Samsung 840 that scrutiny's statistical model flags; its own
		// thresholds and the critical attributes are clean (199 CRC errors
		// are a cable, not the drive).
		{file: "smart-ata-failed-scrutiny.json", protocol: "ata", verdict: "ok"},
		{file: "smart-ata-full.json", protocol: "ata", verdict: "ok"},
		{file: "smart-ata2.json", protocol: "ata", verdict: "ok"},
		// smartctl could not open the device: no drive data at all.
		{file: "smart-fail.json", wantErr: "could not read the device (exit status 2)"},
		// Hitachi behind a USB bridge: overall FAILED, 5 failing now,
		// 1975 reallocated, 8 pending; exit status 216.
		{file: "smart-fail2.json", protocol: "ata", verdict: "failing", reasons: []string{
			"overall SMART self-assessment is FAILED",
			"5 Reallocated_Sector_Ct (pre-fail) is at or below its threshold now: value 1, threshold 5",
			"5 Reallocated_Sector_Ct raw count is 1975", "197 Current_Pending_Sector raw count is 8",
			"196 Reallocated_Event_Count raw count is 3831"}},
		// WD behind a MegaRAID controller: clean (exit 4 is a failed
		// command, not the drive).
		{file: "smart-megaraid0.json", protocol: "ata", verdict: "ok"},
		// Its sibling has 387 reallocated sectors in 9 events.
		{file: "smart-megaraid1.json", protocol: "ata", verdict: "warning", reasons: []string{
			"5 Reallocated_Sector_Ct raw count is 387", "196 Reallocated_Event_Count raw count is 9"}},
		// Samsung 970 EVO with 7 media errors.
		{file: "smart-nvme-failed.json", protocol: "nvme", verdict: "failing", reasons: []string{"7 media and data integrity errors"}},
		{file: "smart-nvme.json", protocol: "nvme", verdict: "ok"},
		// 8382 error-log entries are not media errors: ok.
		{file: "smart-nvme2.json", protocol: "nvme", verdict: "ok"},
		// `smartctl -H` only: passed.
		{file: "smart-pass.json", protocol: "ata", verdict: "ok"},
		// An Intel RAID volume: no health data to judge.
		{file: "smart-raid.json", protocol: "scsi", verdict: "ok", reasons: []string{"nothing to judge"}},
		// `smartctl -A` of a Seagate: 2111 reallocation events.
		{file: "smart-sat.json", protocol: "ata", verdict: "warning", reasons: []string{"196 Reallocated_Event_Count raw count is 2111"}},
		// SAS Seagate with 56 grown defects, no uncorrected errors.
		{file: "smart-scsi.json", protocol: "scsi", verdict: "warning", reasons: []string{"grown defect list has 56 entries"}},
		{file: "smart-scsi2.json", protocol: "scsi", verdict: "ok"},
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.file] = true
	}
	for _, e := range entries {
		if !covered[e.Name()] {
			t.Errorf("fixture %s has no expected verdict in this table", e.Name())
		}
	}
	counts := map[string]int{}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseSmartctlJSON(b)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				counts["error"]++
				return
			}
			if err != nil {
				t.Fatalf("ParseSmartctlJSON: %v", err)
			}
			counts[m.Verdict]++
			if m.Protocol != tt.protocol || m.Source != "smartctl" || m.Device == "" {
				t.Errorf("protocol %q source %q device %q, want %q smartctl and a device", m.Protocol, m.Source, m.Device, tt.protocol)
			}
			if m.Verdict != tt.verdict {
				t.Errorf("verdict %q, want %q; reasons %q", m.Verdict, tt.verdict, m.Reasons)
			}
			if m.Verdict != events.VerdictOK && len(m.Reasons) == 0 {
				t.Errorf("verdict %s without reasons", m.Verdict)
			}
			for _, want := range tt.reasons {
				if !storageContainsSub(m.Reasons, want) {
					t.Errorf("no reason mentions %q; reasons %q", want, m.Reasons)
				}
			}
			// Re-judging the normalised model gives the same verdict.
			if v, _ := JudgeSMART(m); v != m.Verdict {
				t.Errorf("JudgeSMART = %s, parse said %s", v, m.Verdict)
			}
		})
	}
	t.Logf("smart fixture verdicts: %v", counts)
}

func storageContainsSub(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestParseSmartctlJSONFields(t *testing.T) {
	dir := storageFixtures(t, "smart")
	b, err := os.ReadFile(filepath.Join(dir, "smart-fail2.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseSmartctlJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Model != "Hitachi HDS721050DLE630" || m.Serial != "MSK423Y20S3HBC" || m.Firmware != "MS1OA650" ||
		m.CapacityBytes != 500107862016 || *m.RotationRateRPM != 7200 || *m.TemperatureC != 25 ||
		*m.PowerOnHours != 65592 || *m.PowerCycles != 86 || *m.SmartPassed || *m.SmartctlExitStatus != 216 ||
		*m.ATAErrorLogCount != 56 || m.DeviceType != "usbjmicron" {
		t.Errorf("identity not as in the file: %+v", m)
	}
	if m.LastSelfTest == nil || m.LastSelfTest.Result != "passed" || m.LastSelfTest.LifetimeHours != 42 {
		t.Errorf("last self-test %+v", m.LastSelfTest)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "smart-nvme-failed.json"))
	m, err = ParseSmartctlJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &events.NVMeHealth{CriticalWarning: 0, AvailableSpare: 99, AvailableSpareThreshold: 10, PercentageUsed: 3,
		MediaErrors: 7, ErrorLogEntries: 62, UnsafeShutdowns: 10, DataUnitsRead: 17176794, DataUnitsWritten: 65602088}
	if diff := cmp.Diff(want, m.NVMe); diff != "" {
		t.Errorf("NVMe (-want +got):\n%s", diff)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "smart-megaraid1.json"))
	m, _ = ParseSmartctlJSON(b)
	if m.LastSelfTest == nil || m.LastSelfTest.Result != "aborted" || m.DeviceType != "sat+megaraid,1" {
		t.Errorf("megaraid1: self-test %+v, type %q", m.LastSelfTest, m.DeviceType)
	}
}

func TestParseSmartctlJSONBadInput(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "not smartctl --json output"},
		{"garbage", "this is not json", "not smartctl --json output"},
		{"truncated", `{"json_format_version":[1,0],"smartctl":{"exit_status":0},"device":{"name":"/dev/sda","protocol":"AT`, "not smartctl --json output"},
		{"other JSON", `{"hello":"world"}`, "no smartctl and device sections"},
		{"array", `[1,2,3]`, "not smartctl --json output"},
		{"unknown protocol", `{"json_format_version":[1,0],"smartctl":{"exit_status":0},"device":{"name":"/dev/sg0","protocol":"Tape"}}`, `unknown device protocol "Tape"`},
		{"no device", `{"json_format_version":[1,0],"smartctl":{"exit_status":1,"messages":[{"string":"bad option","severity":"error"}]}}`, "bad option"},
		{"standby", `{"json_format_version":[1,0],"smartctl":{"exit_status":2,"messages":[{"string":"Device is in STANDBY mode, exit(2)","severity":"information"}]},"device":{"name":"/dev/sda","protocol":"ATA"}}`, "standby"},
		{"ill-typed", `{"json_format_version":[1,0],"smartctl":{"exit_status":"zero"}}`, "not smartctl --json output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSmartctlJSON([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
	_, err := ParseSmartctlJSON([]byte(tests[7].in))
	if !errors.Is(err, ErrDriveAsleep) {
		t.Errorf("standby output: %v is not ErrDriveAsleep", err)
	}
}

func FuzzParseSmartctlJSON(f *testing.F) {
	dir := filepath.Join("..", "..", "shared", "fixtures", "smart")
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(`{"json_format_version":[1,0],"smartctl":{"exit_status":0},"device":{"name":"/dev/sda","protocol":"ATA"},"ata_smart_attributes":{"table":[{"id":5,"value":1,"worst":1,"thresh":5,"raw":{"value":1,"string":"1 (2 3)"}}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSmartctlJSON(b)
		if err != nil {
			return
		}
		switch m.Verdict {
		case events.VerdictOK, events.VerdictWarning, events.VerdictFailing:
		default:
			t.Fatalf("verdict %q", m.Verdict)
		}
		if m.Verdict != events.VerdictOK && len(m.Reasons) == 0 {
			t.Fatalf("verdict %s without reasons", m.Verdict)
		}
	})
}

func TestJudgeSMART(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	f := false
	tests := []struct {
		name    string
		m       events.SMART
		verdict string
		reason  string
	}{
		{"nothing", events.SMART{}, "ok", "nothing to judge"},
		{"overall failed", events.SMART{SmartPassed: &f}, "failing", "FAILED"},
		{"prefail below threshold", events.SMART{ATAAttributes: []events.ATAAttribute{{ID: 3, Name: "Spin_Up_Time", Value: 20, Worst: 20, Threshold: 21, Prefailure: true}}}, "failing", "3 Spin_Up_Time (pre-fail) is at or below its threshold now"},
		{"old-age below threshold", events.SMART{ATAAttributes: []events.ATAAttribute{{ID: 177, Name: "Wear_Leveling_Count", Value: 5, Worst: 5, Threshold: 5}}}, "warning", "(old-age)"},
		{"failed in the past", events.SMART{ATAAttributes: []events.ATAAttribute{{ID: 3, Value: 100, Worst: 20, Threshold: 21, Prefailure: true, WhenFailed: "past"}}}, "warning", "in the past"},
		{"threshold zero never fails", events.SMART{ATAAttributes: []events.ATAAttribute{{ID: 9, Value: 0, Worst: 0, Threshold: 0}}}, "ok", ""},
		{"pending sectors", events.SMART{ATAAttributes: []events.ATAAttribute{{ID: 197, Name: "Current_Pending_Sector", Value: 100, Worst: 100, Raw: 3}}}, "warning", "197 Current_Pending_Sector raw count is 3"},
		{"201 soft read errors", events.SMART{ATAAttributes: []events.ATAAttribute{{ID: 201, Value: 100, Worst: 100, Raw: 1}}}, "warning", "201"},
		{"uncritical raw ignored", events.SMART{ATAAttributes: []events.ATAAttribute{{ID: 1, Value: 100, Worst: 100, Raw: 123456}}}, "ok", ""},
		{"self-test read failure", events.SMART{LastSelfTest: &events.SMARTSelfTest{Type: "Extended offline", Status: "Completed: read failure", Result: "failed", LifetimeHours: 9}}, "failing", "read failure"},
		{"self-test aborted", events.SMART{LastSelfTest: &events.SMARTSelfTest{Result: "aborted"}, ATAAttributes: []events.ATAAttribute{{ID: 5, Value: 100, Worst: 100}}}, "ok", ""},
		{"exit bit 3", events.SMART{SmartctlExitStatus: smartPtr(8)}, "failing", "bit 3"},
		{"exit bit 4", events.SMART{SmartctlExitStatus: smartPtr(16)}, "failing", "bit 4"},
		{"exit bit 5", events.SMART{SmartctlExitStatus: smartPtr(32)}, "warning", "bit 5"},
		{"nvme spare bit", events.SMART{NVMe: &events.NVMeHealth{CriticalWarning: 1, AvailableSpare: 5, AvailableSpareThreshold: 10}}, "failing", "available spare below threshold"},
		{"nvme spare below threshold without the bit", events.SMART{NVMe: &events.NVMeHealth{AvailableSpare: 5, AvailableSpareThreshold: 10}}, "failing", "available spare 5% is below its threshold 10%"},
		{"nvme temperature", events.SMART{NVMe: &events.NVMeHealth{CriticalWarning: 2, AvailableSpare: 100, AvailableSpareThreshold: 10}}, "warning", "temperature"},
		{"nvme read-only", events.SMART{NVMe: &events.NVMeHealth{CriticalWarning: 8, AvailableSpare: 100}}, "failing", "read-only"},
		{"nvme reliability", events.SMART{NVMe: &events.NVMeHealth{CriticalWarning: 4, AvailableSpare: 100}}, "failing", "reliability degraded"},
		{"nvme worn 89", events.SMART{NVMe: &events.NVMeHealth{PercentageUsed: 89, AvailableSpare: 100}}, "ok", ""},
		{"nvme worn 90", events.SMART{NVMe: &events.NVMeHealth{PercentageUsed: 90, AvailableSpare: 100}}, "warning", "90% of its rated endurance"},
		{"nvme worn 120", events.SMART{NVMe: &events.NVMeHealth{PercentageUsed: 120, AvailableSpare: 100}}, "warning", "120%"},
		{"scsi uncorrected", events.SMART{SCSI: &events.SCSIHealth{GrownDefects: u(0), ReadUncorrectedErrors: 2}}, "failing", "2 uncorrected errors"},
		{"scsi clean", events.SMART{SCSI: &events.SCSIHealth{GrownDefects: u(0)}}, "ok", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, reasons := JudgeSMART(tt.m)
			if v != tt.verdict {
				t.Errorf("verdict %s, want %s (reasons %q)", v, tt.verdict, reasons)
			}
			if tt.reason != "" && !storageContainsSub(reasons, tt.reason) {
				t.Errorf("no reason mentions %q: %q", tt.reason, reasons)
			}
			if tt.reason == "" && len(reasons) > 0 {
				t.Errorf("reasons %q, want none", reasons)
			}
		})
	}
}

func smartPtr[T any](v T) *T { return &v }

// smartFakeRunner answers commands from a table keyed by the command line.
type smartFakeRunner struct {
	out   map[string][]byte
	code  map[string]int
	err   error
	calls []string
}

func (r *smartFakeRunner) Run(_ context.Context, name string, args ...string) ([]byte, int, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	r.calls = append(r.calls, line)
	if r.err != nil {
		return nil, -1, r.err
	}
	if b, ok := r.out[line]; ok {
		return b, r.code[line], nil
	}
	return nil, -1, fmt.Errorf("run %s: %w", name, exec.ErrNotFound)
}

// smartFakeRoot is a sysfs with an ATA disk, a SCSI disk, an NVMe drive,
// a removable stick and devices without SMART (loop, virtio, zram).
func smartFakeRoot() fstest.MapFS {
	return fstest.MapFS{
		"sys/block/sda/device/vendor": {Data: []byte("ATA     \n")},
		"sys/block/sda/removable":     {Data: []byte("0\n")},
		"sys/block/sdb/device/vendor": {Data: []byte("SEAGATE \n")},
		"sys/block/sdb/removable":     {Data: []byte("0\n")},
		"sys/block/sdc/device/vendor": {Data: []byte("Kingston\n")},
		"sys/block/sdc/removable":     {Data: []byte("1\n")},
		"sys/block/nvme0n1/removable": {Data: []byte("0\n")},
		"sys/block/loop0/removable":   {Data: []byte("0\n")},
		"sys/block/vda/removable":     {Data: []byte("0\n")},
		"sys/block/zram0/removable":   {Data: []byte("0\n")},
	}
}

type smartClock struct{ t time.Time }

func (c *smartClock) now() time.Time { return c.t }

func TestSMARTCollect(t *testing.T) {
	dir := storageFixtures(t, "smart")
	scsi, err := os.ReadFile(filepath.Join(dir, "smart-scsi.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewSMART(nil)
	if err != nil {
		t.Fatal(err)
	}
	reallocated := uint64(0)
	var reads []string
	p.read = func(d smartDevice) (events.SMART, error) {
		reads = append(reads, d.Path+":"+d.Protocol)
		switch d.Path {
		case "/dev/sda":
			temp := 30 + int(reallocated) // drifts with every read
			return events.SMART{Device: d.Path, Protocol: "ata", Source: "smart.go", TemperatureC: &temp,
				ATAAttributes: []events.ATAAttribute{{ID: 5, Name: "Reallocated_Sector_Ct", Value: 100, Worst: 100, Threshold: 10, Prefailure: true, Raw: reallocated}}}, nil
		case "/dev/nvme0n1":
			return events.SMART{}, ErrDriveAsleep
		}
		return smartReadLib(d)
	}
	run := &smartFakeRunner{out: map[string][]byte{"smartctl --json=c -a -n standby /dev/sdb": scsi}}
	clock := &smartClock{t: time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)}
	env := Env{Host: "goliath", Root: smartFakeRoot(), Run: run, Now: clock.now}

	obs, err := p.Collect(context.Background(), env)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if diff := cmp.Diff([]string{"/dev/nvme0n1:nvme", "/dev/sda:ata", "/dev/sdb:scsi"}, reads); diff != "" {
		t.Errorf("drives read (-want +got):\n%s", diff)
	}
	got := map[string]string{}
	for _, o := range obs {
		m := o.Data.(events.SMART)
		got[o.Object] = m.Source + " " + m.Verdict
		if o.Kind != "smart" || o.ID == "" {
			t.Errorf("observation %+v", o)
		}
	}
	want := map[string]string{"/dev/sda": "smart.go ok", "/dev/sdg": "smartctl warning"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("observations (-want +got):\n%s", diff)
	}

	// Half an hour later nothing that matters changed: nothing published,
	// though the temperature moved.
	clock.t = clock.t.Add(30 * time.Minute)
	reallocated = 0
	obs, err = p.Collect(context.Background(), env)
	if err != nil || len(obs) != 0 {
		t.Fatalf("unchanged drives after 30 min: %d observations, err %v", len(obs), err)
	}
	// A reallocated sector is a change: published at once.
	clock.t = clock.t.Add(10 * time.Minute)
	reallocated = 1
	obs, _ = p.Collect(context.Background(), env)
	if len(obs) != 1 || obs[0].Object != "/dev/sda" || obs[0].Data.(events.SMART).Verdict != "warning" {
		t.Fatalf("after a reallocation: %+v", obs)
	}
	// An hour after their last publication, unchanged drives go out again.
	clock.t = clock.t.Add(61 * time.Minute)
	obs, _ = p.Collect(context.Background(), env)
	if len(obs) != 2 {
		t.Fatalf("after an hour: %d observations, want 2", len(obs))
	}
	// The same observation gets the same id.
	again := storageEventID("goliath", "smart", obs[0].Object, obs[0].Data)
	if again != obs[0].ID {
		t.Errorf("event id not deterministic")
	}
}

func TestSMARTCollectErrors(t *testing.T) {
	p, err := NewSMART(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.read = func(d smartDevice) (events.SMART, error) {
		if d.Path == "/dev/sda" {
			return events.SMART{Device: d.Path, Protocol: "ata", Source: "smart.go"}, nil
		}
		return events.SMART{}, fmt.Errorf("open %s: %w", d.Path, fs.ErrPermission)
	}
	// No smartctl on the host: the SCSI and NVMe drives report their
	// smart.go errors, the ATA drive is still published.
	env := Env{Host: "goliath", Root: smartFakeRoot(), Run: &smartFakeRunner{}, Now: time.Now}
	obs, err := p.Collect(context.Background(), env)
	if len(obs) != 1 || obs[0].Object != "/dev/sda" {
		t.Errorf("observations %+v, want /dev/sda only", obs)
	}
	if err == nil || !strings.Contains(err.Error(), "smart /dev/sdb: open /dev/sdb: permission denied") ||
		!strings.Contains(err.Error(), "smart /dev/nvme0n1") {
		t.Errorf("err = %v", err)
	}

	// smartctl output that is not JSON.
	p, _ = NewSMART(json.RawMessage(`{"smartctl":"always","devices":["/dev/sdz"]}`))
	run := &smartFakeRunner{out: map[string][]byte{"smartctl --json=c -a -n standby /dev/sdz": []byte("Segmentation fault")}, code: map[string]int{"smartctl --json=c -a -n standby /dev/sdz": 139}}
	env.Run = run
	_, err = p.Collect(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "smartctl exit code 139: not smartctl --json output") {
		t.Errorf("err = %v", err)
	}
}

func TestSMARTSmartctlDevicesAndStandby(t *testing.T) {
	p, err := NewSMART(json.RawMessage(`{"smartctl_devices":[{"device":"/dev/bus/0","type":"megaraid,1"}],"devices":["/dev/sdx"],"smartctl":"always"}`))
	if err != nil {
		t.Fatal(err)
	}
	asleep := []byte(`{"json_format_version":[1,0],"smartctl":{"exit_status":2,"messages":[{"string":"Device is in STANDBY mode, exit(2)","severity":"information"}]}}`)
	pass := []byte(`{"json_format_version":[1,0],"smartctl":{"exit_status":0},"device":{"name":"/dev/bus/0","type":"sat+megaraid,1","protocol":"ATA"},"smart_status":{"passed":true}}`)
	run := &smartFakeRunner{out: map[string][]byte{
		"smartctl --json=c -a -n standby -d megaraid,1 /dev/bus/0": pass,
		"smartctl --json=c -a -n standby /dev/sdx":                 asleep,
	}, code: map[string]int{"smartctl --json=c -a -n standby /dev/sdx": 2}}
	obs, err := p.Collect(context.Background(), Env{Host: "h", Root: fstest.MapFS{}, Run: run, Now: time.Now})
	if err != nil {
		t.Fatalf("Collect: %v (a sleeping drive is not an error)", err)
	}
	if len(obs) != 1 || obs[0].Data.(events.SMART).DeviceType != "sat+megaraid,1" || obs[0].Object != "/dev/bus/0:megaraid,1" {
		t.Errorf("observations %+v", obs)
	}
}

func TestSMARTNotApplicable(t *testing.T) {
	p, _ := NewSMART(nil)
	root := fstest.MapFS{"sys/block/loop0/removable": {Data: []byte("0")}, "sys/block/vda/removable": {Data: []byte("0")}}
	_, err := p.Collect(context.Background(), Env{Root: root, Run: &smartFakeRunner{}, Now: time.Now})
	if !errors.Is(err, ErrNotApplicable) {
		t.Errorf("err = %v, want ErrNotApplicable", err)
	}
	_, err = p.Collect(context.Background(), Env{Root: fstest.MapFS{}, Run: &smartFakeRunner{}, Now: time.Now})
	if !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no sysfs: err = %v, want ErrNotApplicable", err)
	}
}

func TestSMARTOptions(t *testing.T) {
	for _, raw := range []string{`{"nope":1}`, `{"smartctl":"sometimes"}`, `{"publish_every":"soon"}`, `{"smartctl_devices":[{"type":"sat"}]}`} {
		if _, err := NewSMART(json.RawMessage(raw)); err == nil {
			t.Errorf("options %s accepted", raw)
		}
	}
	s, ok := Lookup("smart")
	if !ok || !s.DefaultEnabled {
		t.Fatalf("smart not listed in All() or not on by default")
	}
	if _, err := s.New(nil, Info{}); err != nil {
		t.Errorf("default options: %v", err)
	}
}

func TestSmartSenseCount(t *testing.T) {
	desc := make([]byte, 22)
	desc[0], desc[7] = 0x72, 14
	desc[8], desc[9], desc[13] = 0x09, 0x0c, 0xff // ATA Status Return: count FFh (active or idle)
	fixed := []byte{0x70, 0, 0, 0, 0x50, 0, 0x00, 0}
	tests := []struct {
		name  string
		sense []byte
		count byte
		ok    bool
	}{
		{"descriptor active", desc, 0xff, true},
		{"fixed standby", fixed, 0x00, true},
		{"short", []byte{0x72}, 0, false},
		{"no ATA descriptor", []byte{0x72, 0, 0, 0, 0, 0, 0, 4, 0x01, 0x02, 0, 0}, 0, false},
	}
	for _, tt := range tests {
		c, ok := smartSenseCount(tt.sense)
		if c != tt.count || ok != tt.ok {
			t.Errorf("%s: got %#x %v, want %#x %v", tt.name, c, ok, tt.count, tt.ok)
		}
	}
}

func TestSMARTRawCount(t *testing.T) {
	tests := []struct {
		s    string
		v    uint64
		want uint64
	}{
		{"2111 (12437 0)", 53416508262463, 2111},
		{"29 (Min/Max 19/29)", 487784477, 29},
		{"2725h+17m+32.123s", 999, 2725},
		{"0", 10, 10},
		{"", 7, 7},
		{"-", 7, 7},
	}
	for _, tt := range tests {
		if got := smartRawCount(tt.s, tt.v); got != tt.want {
			t.Errorf("smartRawCount(%q, %d) = %d, want %d", tt.s, tt.v, got, tt.want)
		}
	}
}

func TestSMARTDeviceOrderStable(t *testing.T) {
	p, _ := NewSMART(nil)
	devs, err := p.devices(smartFakeRoot())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range devs {
		got = append(got, d.Path+":"+d.Protocol)
	}
	want := []string{"/dev/nvme0n1:nvme", "/dev/sda:ata", "/dev/sdb:scsi"}
	if !sort.StringsAreSorted(got) || !cmp.Equal(want, got) {
		t.Errorf("devices %v, want %v", got, want)
	}
}
