package producers

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The smart producer's SG_IO: asking an ATA drive for its power mode
// without waking it, before smart.go reads it.

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
