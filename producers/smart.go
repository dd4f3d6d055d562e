package producers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

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
		},
		Saved: &SavedInput{Flag: "smartctl-json", What: "smartctl --json output", Limit: MaxSmartctlJSON, Judge: judgeSavedSMART}}
}

// judgeSavedSMART judges one drive's saved smartctl --json output.
func judgeSavedSMART(b []byte, _ time.Time) ([]Observation, error) {
	m, err := ParseSmartctlJSON(b)
	if err != nil {
		return nil, err
	}
	return []Observation{{Kind: "smart", Object: m.Device, Data: m}}, nil
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
