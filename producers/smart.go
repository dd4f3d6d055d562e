package producers

import (
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
	"time"
	"unsafe"

	smartgo "github.com/anatol/smart.go"
	"golang.org/x/sys/unix"

	"github.com/pinkiefleet/pinkie/events"
)

// SMART reports the health of every drive: SATA/ATA, NVMe and SCSI. It
// reads drives itself with smart.go and falls back to `smartctl --json`
// when smart.go cannot reach a device (USB bridges, RAID controllers, SCSI
// health pages), or when configured to. Both are normalised into
// events.SMART and judged by the one pure function JudgeSMART.
//
// It never spins up a sleeping disk: before smart.go touches an ATA drive
// the producer sends ATA CHECK POWER MODE (E5h, through SG_IO ATA
// PASS-THROUGH, which the drive answers without spinning up) and skips a
// drive in standby; smartctl is run with `-n standby`, which does the same
// and exits without reading. A drive whose power mode cannot be checked is
// not read by smart.go either (smartctl, when installed, gets it instead).
// Device type detection reads sysfs only, never the drive.
//
// An unchanged drive is published at most once per publish_every (1h);
// a change of what matters (verdict, reasons, the critical counters) is
// published at once. Temperature and power-on hours alone are not changes.
type SMART struct {
	opts  smartOptions
	every time.Duration
	gate  *storageGate
	// read reads a drive with smart.go; replaced in tests.
	read func(dev smartDevice) (events.SMART, error)
}

type smartOptions struct {
	// Devices lists device paths to read (default: every disk in
	// /sys/block that can have SMART data: sd*, hd*, nvme*n*).
	Devices []string `json:"devices"`
	// Smartctl is auto (smart.go first, smartctl when smart.go cannot read
	// a device or for SCSI health), always, or never.
	Smartctl string `json:"smartctl"`
	// SmartctlPath is the smartctl binary (default "smartctl").
	SmartctlPath string `json:"smartctl_path"`
	// SmartctlDevices are drives only smartctl can reach, with its -d type
	// (e.g. {"device": "/dev/sda", "type": "megaraid,1"}).
	SmartctlDevices []smartctlDevice `json:"smartctl_devices"`
	// PublishEvery is how often an unchanged drive is published ("1h").
	PublishEvery string `json:"publish_every"`
}

type smartctlDevice struct {
	Device string `json:"device"`
	Type   string `json:"type"`
}

// smartDevice is one drive to read.
type smartDevice struct {
	Path string
	// Protocol is ata, nvme or scsi from sysfs; "" when unknown.
	Protocol string
	// SmartctlType is smartctl's -d type; set for smartctl-only drives.
	SmartctlType string
}

// ErrDriveAsleep marks a drive that was in standby and so was not read.
var ErrDriveAsleep = errors.New("drive is in standby; not read so as not to spin it up")

func smartSpec() Spec {
	return Spec{Name: "smart", Doc: "SMART health of every drive (smart.go, smartctl --json) with a verdict", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) {
			return NewSMART(raw)
		}}
}

// NewSMART builds the smart producer from its options.
func NewSMART(raw json.RawMessage) (*SMART, error) {
	o := smartOptions{Smartctl: "auto", SmartctlPath: "smartctl", PublishEvery: "1h"}
	if err := DecodeOptions(raw, &o); err != nil {
		return nil, err
	}
	switch o.Smartctl {
	case "auto", "always", "never":
	default:
		return nil, fmt.Errorf("options: smartctl is %q, want auto, always or never", o.Smartctl)
	}
	every, err := time.ParseDuration(o.PublishEvery)
	if err != nil || every <= 0 {
		return nil, fmt.Errorf("options: publish_every %q is not a positive duration", o.PublishEvery)
	}
	for _, d := range o.SmartctlDevices {
		if d.Device == "" {
			return nil, fmt.Errorf("options: smartctl_devices entry without device")
		}
	}
	return &SMART{opts: o, every: 10 * time.Minute, gate: newStorageGate(every), read: smartReadLib}, nil
}

func (s *SMART) Name() string            { return "smart" }
func (s *SMART) Interval() time.Duration { return s.every }

func (s *SMART) Collect(ctx context.Context, env Env) ([]Observation, error) {
	devs, err := s.devices(env.Root)
	if err != nil {
		return nil, err
	}
	if len(devs) == 0 {
		return nil, ErrNotApplicable
	}
	now := env.Now()
	var obs []Observation
	var errs []error
	for _, d := range devs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		m, err := s.readDevice(ctx, env, d)
		if errors.Is(err, ErrDriveAsleep) {
			if env.Log != nil {
				env.Log.Debug("drive asleep, not read", "device", d.Path)
			}
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("smart %s: %w", d.Path, err))
			continue
		}
		if !s.gate.due(m.Device, smartChangeKey(m), now) {
			continue
		}
		obs = append(obs, Observation{Kind: "smart", Object: m.Device, Data: m,
			ID: storageEventID(env.Host, "smart", m.Device, m)})
	}
	return obs, errors.Join(errs...)
}

// readDevice reads one drive by the configured route and judges it.
func (s *SMART) readDevice(ctx context.Context, env Env, d smartDevice) (events.SMART, error) {
	useSmartctl := s.opts.Smartctl == "always" || d.SmartctlType != ""
	if !useSmartctl {
		m, err := s.read(d)
		if err == nil || errors.Is(err, ErrDriveAsleep) || s.opts.Smartctl == "never" {
			if err == nil {
				m.Verdict, m.Reasons = JudgeSMART(m)
			}
			return m, err
		}
		// smart.go could not read it: smartctl may (USB bridges, SCSI
		// health pages). When smartctl is missing, the smart.go error is
		// the one worth reporting.
		m2, err2 := s.smartctl(ctx, env, d)
		if err2 != nil && storageCommandMissing(err2) {
			return events.SMART{}, err
		}
		if err2 != nil {
			return events.SMART{}, fmt.Errorf("%v; smartctl: %w", err, err2)
		}
		return m2, nil
	}
	return s.smartctl(ctx, env, d)
}

func (s *SMART) smartctl(ctx context.Context, env Env, d smartDevice) (events.SMART, error) {
	args := []string{"--json=c", "-a", "-n", "standby"}
	if d.SmartctlType != "" {
		args = append(args, "-d", d.SmartctlType)
	}
	args = append(args, d.Path)
	out, code, err := env.Run.Run(ctx, s.opts.SmartctlPath, args...)
	if err != nil {
		return events.SMART{}, fmt.Errorf("run smartctl: %w", err)
	}
	m, err := ParseSmartctlJSON(out)
	if err != nil {
		return events.SMART{}, fmt.Errorf("smartctl exit code %d: %w", code, err)
	}
	switch {
	case d.SmartctlType != "":
		// Drives behind one controller share its path (/dev/bus/0 for
		// every MegaRAID disk): the type names the drive.
		m.Device = d.Path + ":" + d.SmartctlType
	case m.Device == "":
		m.Device = d.Path
	}
	return m, nil
}

var smartNVMeRE = regexp.MustCompile(`^nvme[0-9]+n[0-9]+$`)

// devices lists the drives to read: the configured ones, or every disk in
// sys/block that can have SMART data. Loop, zram, dm, md, virtio, optical
// and removable devices are skipped.
func (s *SMART) devices(root fs.FS) ([]smartDevice, error) {
	var devs []smartDevice
	seen := map[string]bool{}
	for _, d := range s.opts.SmartctlDevices {
		devs = append(devs, smartDevice{Path: d.Device, SmartctlType: d.Type})
	}
	if len(s.opts.Devices) > 0 {
		for _, p := range s.opts.Devices {
			if !seen[p] {
				seen[p] = true
				devs = append(devs, smartDevice{Path: p, Protocol: smartSysfsProtocol(root, path.Base(p))})
			}
		}
		return devs, nil
	}
	entries, err := fs.ReadDir(root, "sys/block")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return devs, nil
		}
		return devs, fmt.Errorf("list /sys/block: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "sd") && !strings.HasPrefix(name, "hd") && !smartNVMeRE.MatchString(name) {
			continue
		}
		if r, err := readFirstLine(root, "sys/block/"+name+"/removable"); err == nil && r == "1" {
			continue
		}
		devs = append(devs, smartDevice{Path: "/dev/" + name, Protocol: smartSysfsProtocol(root, name)})
	}
	return devs, nil
}

// smartSysfsProtocol tells ATA, SCSI and NVMe disks apart from sysfs
// alone (libata disks show the SCSI vendor "ATA"), so detection sends no
// command to the drive.
func smartSysfsProtocol(root fs.FS, name string) string {
	switch {
	case strings.HasPrefix(name, "nvme"):
		return "nvme"
	case strings.HasPrefix(name, "hd"):
		return "ata"
	case strings.HasPrefix(name, "sd"):
		v, err := readFirstLine(root, "sys/block/"+name+"/device/vendor")
		if err != nil {
			return ""
		}
		if v == "ATA" {
			return "ata"
		}
		return "scsi"
	}
	return ""
}

// smartChangeKey is what must change for a drive to be published before
// its hour is up: identity, verdict and reasons, and the health counters.
// Temperature, power-on hours and data written drift all the time.
func smartChangeKey(m events.SMART) string {
	type nvme struct {
		CW, Spare, Used int
		Media           uint64
	}
	k := struct {
		Device, Model, Serial, Firmware, Verdict string
		Reasons                                  []string
		Passed                                   *bool
		Critical                                 map[int]uint64
		NVMe                                     *nvme
		SCSI                                     *events.SCSIHealth
		SelfTest                                 *events.SMARTSelfTest
	}{Device: m.Device, Model: m.Model, Serial: m.Serial, Firmware: m.Firmware, Verdict: m.Verdict,
		Reasons: m.Reasons, Passed: m.SmartPassed, SCSI: m.SCSI, SelfTest: m.LastSelfTest, Critical: map[int]uint64{}}
	for _, a := range m.ATAAttributes {
		if smartCriticalATA[a.ID] {
			k.Critical[a.ID] = a.Raw
		}
	}
	if n := m.NVMe; n != nil {
		k.NVMe = &nvme{n.CriticalWarning, n.AvailableSpare, n.PercentageUsed, n.MediaErrors}
	}
	return storageKey(k)
}

// smartCriticalATA are the ATA attributes whose raw count above zero
// predicts failure (Backblaze's drive stats and smartmontools' notes):
// reallocated sectors, spin retries, end-to-end errors, reported
// uncorrectable, command timeouts, reallocation events, pending and
// offline-uncorrectable sectors, soft read errors.
var smartCriticalATA = map[int]bool{5: true, 10: true, 184: true, 187: true, 188: true, 196: true, 197: true, 198: true, 201: true}

// JudgeSMART is the one verdict over the normalised model, whatever read
// it. Failing: the drive's own overall assessment failed; a pre-fail
// attribute at or below its threshold; the most recent self-test failed;
// an NVMe critical warning other than temperature, spare below its
// threshold, or media errors; SCSI uncorrected errors. Warning: a
// critical ATA attribute's raw count above zero; an old-age attribute at
// or below its threshold, or any attribute that was in the past; NVMe
// temperature warning or 90% or more of the rated endurance used; a SCSI
// grown defect list. A drive that reports nothing to judge is ok, and the
// reasons say so.
func JudgeSMART(m events.SMART) (string, []string) {
	var j storageJudgement
	if m.SmartPassed != nil && !*m.SmartPassed {
		j.fail("the drive's overall SMART self-assessment is FAILED")
	}
	exit := 0
	if m.SmartctlExitStatus != nil {
		exit = *m.SmartctlExitStatus
	}
	if exit&8 != 0 && (m.SmartPassed == nil || *m.SmartPassed) {
		j.fail("smartctl reports the disk failing (exit status bit 3)")
	}
	nowFailed, pastFailed := false, false
	for _, a := range m.ATAAttributes {
		name := strings.TrimSpace(fmt.Sprintf("%d %s", a.ID, a.Name))
		below := a.Threshold > 0 && a.Value <= a.Threshold
		switch {
		case below || a.WhenFailed == "now":
			nowFailed = true
			if a.Prefailure {
				j.fail("attribute %s (pre-fail) is at or below its threshold now: value %d, threshold %d", name, a.Value, a.Threshold)
			} else {
				j.warn("attribute %s (old-age) is at or below its threshold now: value %d, threshold %d", name, a.Value, a.Threshold)
			}
		case a.WhenFailed == "past" || (a.Threshold > 0 && a.Worst <= a.Threshold):
			pastFailed = true
			j.warn("attribute %s was at or below its threshold in the past: worst %d, threshold %d", name, a.Worst, a.Threshold)
		}
		if smartCriticalATA[a.ID] && a.Raw > 0 {
			j.warn("attribute %s raw count is %d", name, a.Raw)
		}
	}
	if exit&16 != 0 && !nowFailed {
		j.fail("smartctl reports a pre-fail attribute at or below its threshold (exit status bit 4)")
	}
	if exit&32 != 0 && !pastFailed && !nowFailed {
		j.warn("smartctl reports an attribute was at or below its threshold in the past (exit status bit 5)")
	}
	if t := m.LastSelfTest; t != nil && t.Result == "failed" {
		j.fail("the most recent self-test (%s, at %d hours) failed: %s", t.Type, t.LifetimeHours, t.Status)
	}
	if n := m.NVMe; n != nil {
		cw := n.CriticalWarning
		for _, b := range []struct {
			bit  int
			fail bool
			what string
		}{
			{0x01, true, "available spare below threshold"},
			{0x02, false, "temperature outside its thresholds"},
			{0x04, true, "NVM subsystem reliability degraded"},
			{0x08, true, "media placed in read-only mode"},
			{0x10, true, "volatile memory backup device failed"},
			{0x20, true, "persistent memory region read-only"},
		} {
			if cw&b.bit == 0 {
				continue
			}
			if b.fail {
				j.fail("NVMe critical warning: %s", b.what)
			} else {
				j.warn("NVMe critical warning: %s", b.what)
			}
		}
		if cw&0x01 == 0 && n.AvailableSpareThreshold > 0 && n.AvailableSpare < n.AvailableSpareThreshold {
			j.fail("NVMe available spare %d%% is below its threshold %d%%", n.AvailableSpare, n.AvailableSpareThreshold)
		}
		if n.MediaErrors > 0 {
			j.fail("NVMe reports %d media and data integrity errors (data the drive could not return)", n.MediaErrors)
		}
		if n.PercentageUsed >= 90 {
			j.warn("NVMe has used %d%% of its rated endurance (warning from 90%%)", n.PercentageUsed)
		}
	}
	if sc := m.SCSI; sc != nil {
		if sc.GrownDefects != nil && *sc.GrownDefects > 0 {
			j.warn("SCSI grown defect list has %d entries", *sc.GrownDefects)
		}
		if n := sc.ReadUncorrectedErrors + sc.WriteUncorrectedErrors + sc.VerifyUncorrectedErrors; n > 0 {
			j.fail("SCSI error counter log has %d uncorrected errors (read %d, write %d, verify %d)", n,
				sc.ReadUncorrectedErrors, sc.WriteUncorrectedErrors, sc.VerifyUncorrectedErrors)
		}
	}
	v, reasons := j.result()
	if v == events.VerdictOK && m.SmartPassed == nil && len(m.ATAAttributes) == 0 && m.NVMe == nil && m.SCSI == nil {
		reasons = []string{"the drive reported no health status or attributes: nothing to judge"}
	}
	return v, reasons
}

// smartctlOutput is the part of `smartctl --json` output the producer
// reads (smartmontools JSON format version 1; see smartctl(8), --json).
type smartctlOutput struct {
	JSONFormatVersion []int `json:"json_format_version"`
	Smartctl          *struct {
		ExitStatus *int `json:"exit_status"`
		Messages   []struct {
			String   string `json:"string"`
			Severity string `json:"severity"`
		} `json:"messages"`
	} `json:"smartctl"`
	Device *struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		Protocol string `json:"protocol"`
	} `json:"device"`
	ModelName       string `json:"model_name"`
	ScsiModelName   string `json:"scsi_model_name"`
	Vendor          string `json:"vendor"`
	Product         string `json:"product"`
	SerialNumber    string `json:"serial_number"`
	FirmwareVersion string `json:"firmware_version"`
	Revision        string `json:"revision"`
	ScsiRevision    string `json:"scsi_revision"`
	UserCapacity    *struct {
		Bytes uint64 `json:"bytes"`
	} `json:"user_capacity"`
	NVMeTotalCapacity uint64 `json:"nvme_total_capacity"`
	RotationRate      *int   `json:"rotation_rate"`
	Temperature       *struct {
		Current *int `json:"current"`
	} `json:"temperature"`
	PowerOnTime *struct {
		Hours *uint64 `json:"hours"`
	} `json:"power_on_time"`
	PowerCycleCount *uint64 `json:"power_cycle_count"`
	SmartStatus     *struct {
		Passed *bool `json:"passed"`
	} `json:"smart_status"`
	ATASmartAttributes *struct {
		Table []struct {
			ID         int    `json:"id"`
			Name       string `json:"name"`
			Value      int    `json:"value"`
			Worst      int    `json:"worst"`
			Thresh     int    `json:"thresh"`
			WhenFailed string `json:"when_failed"`
			Flags      struct {
				Prefailure bool `json:"prefailure"`
			} `json:"flags"`
			Raw struct {
				Value  uint64 `json:"value"`
				String string `json:"string"`
			} `json:"raw"`
		} `json:"table"`
	} `json:"ata_smart_attributes"`
	ATASmartErrorLog *struct {
		Summary *struct {
			Count *uint64 `json:"count"`
		} `json:"summary"`
		Extended *struct {
			Count *uint64 `json:"count"`
		} `json:"extended"`
	} `json:"ata_smart_error_log"`
	ATASmartSelfTestLog *struct {
		Standard *smartctlSelfTestTable `json:"standard"`
		Extended *smartctlSelfTestTable `json:"extended"`
	} `json:"ata_smart_self_test_log"`
	NVMeLog *struct {
		CriticalWarning         int    `json:"critical_warning"`
		AvailableSpare          int    `json:"available_spare"`
		AvailableSpareThreshold int    `json:"available_spare_threshold"`
		PercentageUsed          int    `json:"percentage_used"`
		DataUnitsRead           uint64 `json:"data_units_read"`
		DataUnitsWritten        uint64 `json:"data_units_written"`
		UnsafeShutdowns         uint64 `json:"unsafe_shutdowns"`
		MediaErrors             uint64 `json:"media_errors"`
		NumErrLogEntries        uint64 `json:"num_err_log_entries"`
		WarningTempTime         uint64 `json:"warning_temp_time"`
		CriticalCompTime        uint64 `json:"critical_comp_time"`
	} `json:"nvme_smart_health_information_log"`
	SCSIGrownDefectList *uint64 `json:"scsi_grown_defect_list"`
	SCSIErrorCounterLog *struct {
		Read   *smartctlSCSICounter `json:"read"`
		Write  *smartctlSCSICounter `json:"write"`
		Verify *smartctlSCSICounter `json:"verify"`
	} `json:"scsi_error_counter_log"`
}

type smartctlSelfTestTable struct {
	Table []struct {
		Type struct {
			String string `json:"string"`
		} `json:"type"`
		Status struct {
			Value  int    `json:"value"`
			String string `json:"string"`
			Passed *bool  `json:"passed"`
		} `json:"status"`
		LifetimeHours uint64 `json:"lifetime_hours"`
	} `json:"table"`
}

type smartctlSCSICounter struct {
	TotalUncorrectedErrors uint64 `json:"total_uncorrected_errors"`
}

// ParseSmartctlJSON normalises `smartctl --json` output (of -a, -x, -A or
// -H) into events.SMART and judges it with JudgeSMART. Input that is not
// smartctl JSON, output of a device smartctl could not open, a drive in
// standby (ErrDriveAsleep) and unknown protocols are errors that say so.
func ParseSmartctlJSON(b []byte) (events.SMART, error) {
	var o smartctlOutput
	if err := json.Unmarshal(b, &o); err != nil {
		return events.SMART{}, fmt.Errorf("not smartctl --json output: %w", err)
	}
	// Saved files are sometimes trimmed to the drive's sections; a device
	// or a smartctl section is what makes it smartctl output.
	if o.Smartctl == nil && o.Device == nil {
		return events.SMART{}, errors.New("not smartctl --json output: no smartctl and device sections")
	}
	var msgs []string
	exit := -1
	if o.Smartctl != nil {
		for _, m := range o.Smartctl.Messages {
			msgs = append(msgs, m.String)
		}
		if o.Smartctl.ExitStatus != nil {
			exit = *o.Smartctl.ExitStatus
		}
	}
	joined := strings.Join(msgs, "; ")
	if lower := strings.ToLower(joined); strings.Contains(lower, "standby mode") || strings.Contains(lower, "sleep mode") {
		return events.SMART{}, fmt.Errorf("%w (%s)", ErrDriveAsleep, joined)
	}
	if o.Device == nil || o.Device.Name == "" {
		if joined == "" {
			joined = "no device section"
		}
		return events.SMART{}, fmt.Errorf("smartctl could not read the device (exit status %d): %s", exit, joined)
	}
	m := events.SMART{Device: o.Device.Name, Source: "smartctl", DeviceType: o.Device.Type}
	switch strings.ToLower(o.Device.Protocol) {
	case "ata":
		m.Protocol = "ata"
	case "nvme":
		m.Protocol = "nvme"
	case "scsi":
		m.Protocol = "scsi"
	default:
		return events.SMART{}, fmt.Errorf("smartctl output for %s: unknown device protocol %q (want ATA, NVMe or SCSI)", o.Device.Name, o.Device.Protocol)
	}
	if exit >= 0 {
		m.SmartctlExitStatus = &exit
	}
	m.Model = smartFirstNonEmpty(o.ModelName, o.ScsiModelName, strings.TrimSpace(o.Vendor+" "+o.Product))
	m.Serial = o.SerialNumber
	m.Firmware = smartFirstNonEmpty(o.FirmwareVersion, o.ScsiRevision, o.Revision)
	if o.UserCapacity != nil {
		m.CapacityBytes = o.UserCapacity.Bytes
	}
	if m.CapacityBytes == 0 {
		m.CapacityBytes = o.NVMeTotalCapacity
	}
	m.RotationRateRPM = o.RotationRate
	if o.Temperature != nil {
		m.TemperatureC = o.Temperature.Current
	}
	if o.PowerOnTime != nil {
		m.PowerOnHours = o.PowerOnTime.Hours
	}
	m.PowerCycles = o.PowerCycleCount
	if o.SmartStatus != nil {
		m.SmartPassed = o.SmartStatus.Passed
	}
	if o.ATASmartAttributes != nil {
		for _, a := range o.ATASmartAttributes.Table {
			wf := a.WhenFailed
			if wf != "now" && wf != "past" {
				wf = ""
			}
			m.ATAAttributes = append(m.ATAAttributes, events.ATAAttribute{
				ID: a.ID, Name: a.Name, Value: a.Value, Worst: a.Worst, Threshold: a.Thresh,
				Prefailure: a.Flags.Prefailure, WhenFailed: wf,
				Raw: smartRawCount(a.Raw.String, a.Raw.Value), RawString: a.Raw.String,
			})
		}
	}
	if l := o.ATASmartErrorLog; l != nil {
		if l.Extended != nil && l.Extended.Count != nil {
			m.ATAErrorLogCount = l.Extended.Count
		} else if l.Summary != nil && l.Summary.Count != nil {
			m.ATAErrorLogCount = l.Summary.Count
		}
	}
	if l := o.ATASmartSelfTestLog; l != nil {
		t := l.Extended
		if t == nil || len(t.Table) == 0 {
			t = l.Standard
		}
		if t != nil && len(t.Table) > 0 {
			e := t.Table[0] // smartctl lists the most recent test first
			m.LastSelfTest = &events.SMARTSelfTest{Type: e.Type.String, Status: e.Status.String,
				Result: smartSelfTestResult(e.Status.Value, e.Status.Passed), LifetimeHours: e.LifetimeHours}
		}
	}
	if n := o.NVMeLog; n != nil {
		m.NVMe = &events.NVMeHealth{
			CriticalWarning: n.CriticalWarning, AvailableSpare: n.AvailableSpare,
			AvailableSpareThreshold: n.AvailableSpareThreshold, PercentageUsed: n.PercentageUsed,
			MediaErrors: n.MediaErrors, ErrorLogEntries: n.NumErrLogEntries, UnsafeShutdowns: n.UnsafeShutdowns,
			DataUnitsRead: n.DataUnitsRead, DataUnitsWritten: n.DataUnitsWritten,
			WarningTempMinutes: n.WarningTempTime, CriticalTempMinutes: n.CriticalCompTime,
		}
	}
	if o.SCSIGrownDefectList != nil || o.SCSIErrorCounterLog != nil {
		sc := &events.SCSIHealth{GrownDefects: o.SCSIGrownDefectList}
		if l := o.SCSIErrorCounterLog; l != nil {
			if l.Read != nil {
				sc.ReadUncorrectedErrors = l.Read.TotalUncorrectedErrors
			}
			if l.Write != nil {
				sc.WriteUncorrectedErrors = l.Write.TotalUncorrectedErrors
			}
			if l.Verify != nil {
				sc.VerifyUncorrectedErrors = l.Verify.TotalUncorrectedErrors
			}
		}
		m.SCSI = sc
	}
	m.Verdict, m.Reasons = JudgeSMART(m)
	return m, nil
}

// smartRawCount is the raw value as a count. For a composite raw format
// smartctl's decoded string has more after the leading number ("2111
// (12437 0)", "29 (Min/Max 19/29)", "2725h+17m+32.123s") and the leading
// number is the count; for a plain number the 48-bit raw value is.
func smartRawCount(s string, value uint64) uint64 {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i == len(s) {
		return value
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return value
	}
	return n
}

// smartSelfTestResult classifies a self-test status byte (ATA: the high
// nibble; 0 ok, 1 aborted by host, 2 interrupted by reset, 3-8 failures,
// 15 in progress) or smartctl's passed flag.
func smartSelfTestResult(status int, passed *bool) string {
	switch hi := (status >> 4) & 0xf; {
	case hi == 15:
		return "in_progress"
	case hi == 1 || hi == 2:
		return "aborted"
	case passed != nil && *passed, hi == 0:
		return "passed"
	default:
		return "failed"
	}
}

func smartFirstNonEmpty(s ...string) string {
	for _, v := range s {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// smartReadLib reads a drive with smart.go. An ATA drive's power mode is
// checked first and a drive in standby is not read.
func smartReadLib(d smartDevice) (events.SMART, error) {
	switch d.Protocol {
	case "ata":
		standby, err := smartCheckStandby(d.Path)
		if err != nil {
			return events.SMART{}, fmt.Errorf("check power mode (not read, so as not to wake it): %w", err)
		}
		if standby {
			return events.SMART{}, ErrDriveAsleep
		}
		return smartReadATA(d.Path)
	case "nvme":
		return smartReadNVMe(d.Path)
	case "scsi":
		return events.SMART{}, errors.New("smart.go reads no health data from SCSI drives; install smartctl (smartmontools) to judge it")
	default:
		return events.SMART{}, errors.New("unknown device type (sysfs names no ATA, SCSI or NVMe protocol)")
	}
}

func smartReadATA(path string) (events.SMART, error) {
	dev, err := smartgo.OpenSata(path)
	if err != nil {
		return events.SMART{}, fmt.Errorf("open as SATA: %w", err)
	}
	defer dev.Close()
	m := events.SMART{Device: path, Protocol: "ata", Source: "smart.go"}
	id, err := dev.Identify()
	if err != nil {
		return m, fmt.Errorf("ATA IDENTIFY: %w", err)
	}
	m.Model, m.Serial, m.Firmware = id.ModelNumber(), id.SerialNumber(), id.FirmwareRevision()
	_, m.CapacityBytes, _, _, _ = id.Capacity()
	// Word 217: 1 is a non-rotating (solid state) device, 0401h-FFFEh the
	// nominal rotation rate in rpm; other values say nothing.
	switch r := int(id.RotationRate); {
	case r == 1:
		zero := 0
		m.RotationRateRPM = &zero
	case r >= 0x401 && r <= 0xfffe:
		m.RotationRateRPM = &r
	}
	page, err := dev.ReadSMARTData()
	if err != nil {
		return m, fmt.Errorf("read SMART data: %w", err)
	}
	thr, err := dev.ReadSMARTThresholds()
	if err != nil {
		return m, fmt.Errorf("read SMART thresholds: %w", err)
	}
	ids := make([]int, 0, len(page.Attrs))
	for id := range page.Attrs {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	for _, i := range ids {
		a := page.Attrs[uint8(i)]
		t := int(thr.Thresholds[a.Id])
		attr := events.ATAAttribute{ID: i, Name: a.Name, Value: int(a.Current), Worst: int(a.Worst), Threshold: t,
			Prefailure: a.Flags&smartgo.AtaAttributeFlagPrefailure != 0, Raw: a.ValueRaw}
		if t > 0 && int(a.Current) <= t {
			attr.WhenFailed = "now"
		} else if t > 0 && int(a.Worst) <= t {
			attr.WhenFailed = "past"
		}
		m.ATAAttributes = append(m.ATAAttributes, attr)
		switch a.Name {
		case "Temperature_Celsius", "Airflow_Temperature_Cel", "Temperature_Celsius_X10":
			if m.TemperatureC == nil {
				if c, _, _, _, err := a.ParseAsTemperature(); err == nil {
					m.TemperatureC = &c
				}
			}
		case "Power_On_Hours":
			h := a.ValueRaw
			if d, err := a.ParseAsDuration(); err == nil {
				h = uint64(d / time.Hour)
			}
			m.PowerOnHours = &h
		case "Power_Cycle_Count":
			c := a.ValueRaw
			m.PowerCycles = &c
		}
	}
	if l, err := dev.ReadSMARTErrorLogSummary(); err == nil {
		c := uint64(l.ErrorCount)
		m.ATAErrorLogCount = &c
	}
	if l, err := dev.ReadSMARTSelfTestLog(); err == nil {
		m.LastSelfTest = smartLatestSelfTest(l)
	}
	return m, nil
}

// smartLatestSelfTest picks the most recent entry of the circular ATA
// self-test log (Index points at it, 1-based; 0 means empty).
func smartLatestSelfTest(l *smartgo.AtaSmartSelfTestLog) *events.SMARTSelfTest {
	if l.Index == 0 || int(l.Index) > len(l.Entry) {
		return nil
	}
	e := l.Entry[l.Index-1]
	if e.LifeTimestamp == 0 && e.Status == 0 && e.LBA_7 == 0 {
		return nil
	}
	return &events.SMARTSelfTest{Type: fmt.Sprintf("subcommand 0x%02x", e.LBA_7),
		Status: fmt.Sprintf("status 0x%02x", e.Status), Result: smartSelfTestResult(int(e.Status), nil),
		LifetimeHours: uint64(e.LifeTimestamp)}
}

func smartReadNVMe(path string) (events.SMART, error) {
	dev, err := smartgo.OpenNVMe(path)
	if err != nil {
		return events.SMART{}, fmt.Errorf("open as NVMe: %w", err)
	}
	defer dev.Close()
	m := events.SMART{Device: path, Protocol: "nvme", Source: "smart.go"}
	c, ns, err := dev.Identify()
	if err != nil {
		return m, fmt.Errorf("NVMe identify: %w", err)
	}
	m.Model, m.Serial, m.Firmware = c.ModelNumber(), c.SerialNumber(), c.FirmwareRev()
	m.CapacityBytes = c.Tnvmcap.Val[0]
	if m.CapacityBytes == 0 && len(ns) > 0 {
		m.CapacityBytes = ns[0].Nsze * ns[0].LbaSize()
	}
	l, err := dev.ReadSMART()
	if err != nil {
		return m, fmt.Errorf("read NVMe health log: %w", err)
	}
	t := int(l.Temperature) - 273 // the log has Kelvin
	m.TemperatureC = &t
	poh, pc := l.PowerOnHours.Val[0], l.PowerCycles.Val[0]
	m.PowerOnHours, m.PowerCycles = &poh, &pc
	m.NVMe = &events.NVMeHealth{
		CriticalWarning: int(l.CritWarning), AvailableSpare: int(l.AvailSpare),
		AvailableSpareThreshold: int(l.SpareThresh), PercentageUsed: int(l.PercentUsed),
		MediaErrors: l.MediaErrors.Val[0], ErrorLogEntries: l.NumErrLogEntries.Val[0],
		UnsafeShutdowns: l.UnsafeShutdowns.Val[0], DataUnitsRead: l.DataUnitsRead.Val[0],
		DataUnitsWritten: l.DataUnitsWritten.Val[0], WarningTempMinutes: uint64(l.WarningTempTime),
		CriticalTempMinutes: uint64(l.CritCompTime),
	}
	return m, nil
}

// smartSgIoHdr is Linux's struct sg_io_hdr (include/scsi/sg.h), the
// argument of the SG_IO ioctl.
type smartSgIoHdr struct {
	interfaceID    int32
	dxferDirection int32
	cmdLen         uint8
	mxSbLen        uint8
	iovecCount     uint16
	dxferLen       uint32
	dxferp         uintptr
	cmdp           uintptr
	sbp            uintptr
	timeout        uint32
	flags          uint32
	packID         int32
	usrPtr         uintptr
	status         uint8
	maskedStatus   uint8
	msgStatus      uint8
	sbLenWr        uint8
	hostStatus     uint16
	driverStatus   uint16
	resid          int32
	duration       uint32
	info           uint32
}

// smartCheckStandby asks an ATA drive for its power mode with CHECK POWER
// MODE (E5h) in a SAT ATA PASS-THROUGH (16) command with CK_COND set, so
// the drive's registers come back in the sense data. A drive answers this
// command in standby without spinning up (ACS-3 7.3; smartctl -n standby
// uses the same command). Count 00h (standby) or 01h (standby_y) means
// standby.
func smartCheckStandby(path string) (bool, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	cdb := [16]byte{0: 0x85, 1: 3 << 1, 2: 0x20, 14: 0xe5} // protocol 3 (non-data), CK_COND
	sense := make([]byte, 32)
	hdr := smartSgIoHdr{interfaceID: 'S', dxferDirection: -1 /* SG_DXFER_NONE */, cmdLen: 16,
		mxSbLen: uint8(len(sense)), cmdp: uintptr(unsafe.Pointer(&cdb[0])), sbp: uintptr(unsafe.Pointer(&sense[0])),
		timeout: 10000}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), 0x2285 /* SG_IO */, uintptr(unsafe.Pointer(&hdr))); e != 0 {
		return false, fmt.Errorf("SG_IO CHECK POWER MODE: %w", e)
	}
	count, ok := smartSenseCount(sense[:hdr.sbLenWr])
	if !ok {
		return false, fmt.Errorf("CHECK POWER MODE: no ATA status in the sense data (status %#x, host %#x, driver %#x)",
			hdr.status, hdr.hostStatus, hdr.driverStatus)
	}
	return count == 0x00 || count == 0x01, nil
}

// smartSenseCount finds the ATA count register in sense data returned for
// an ATA PASS-THROUGH command with CK_COND (SAT-4 12.2.2.6): in the ATA
// Status Return descriptor (code 09h) of descriptor-format sense, or in the
// information field of fixed-format sense.
func smartSenseCount(sense []byte) (byte, bool) {
	if len(sense) < 8 {
		return 0, false
	}
	switch sense[0] & 0x7f {
	case 0x72, 0x73:
		for i := 8; i+1 < len(sense); i += 2 + int(sense[i+1]) {
			if sense[i] == 0x09 && i+6 <= len(sense) {
				return sense[i+5], true
			}
		}
	case 0x70, 0x71:
		if len(sense) >= 7 {
			return sense[6], true
		}
	}
	return 0, false
}
