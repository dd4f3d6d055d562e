package producers

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
)

// The smart producer's device scan: which drives to read and their
// protocol, from the configuration or from sysfs alone (no command is sent
// to a drive to find out what it is).

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
