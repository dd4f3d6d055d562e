package producers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pinkiefleet/pinkie/events"
)

// The smart producer's smartctl route: running `smartctl --json` and
// normalising its output into events.SMART.

// smartctl reads one drive with `smartctl --json -n standby`.
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
