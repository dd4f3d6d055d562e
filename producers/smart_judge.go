package producers

import (
	"fmt"
	"strings"

	"github.com/pinkiefleet/pinkie/events"
)

// The smart producer's judgement: one pure function from the normalised
// model (events.SMART) to a verdict and its reasons, whatever read the drive.

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
