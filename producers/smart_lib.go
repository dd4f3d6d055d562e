package producers

import (
	"errors"
	"fmt"
	"sort"
	"time"

	smartgo "github.com/anatol/smart.go"

	"github.com/pinkiefleet/pinkie/events"
)

// The smart producer's smart.go route: reading ATA and NVMe drives
// directly with github.com/anatol/smart.go.

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
