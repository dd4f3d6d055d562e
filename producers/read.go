package producers

import "github.com/pinkiefleet/pinkie/bounded"

// Limits on what producers read whole (bounded.ReadFile): each is far above
// the largest real input and far below what would hurt an agent's memory,
// so a wrong path or a runaway file is an error naming it, not an
// out-of-memory kill. Log followers read incrementally and cut long lines
// instead (logfollow.MaxLine).
const (
	// MaxMDStat bounds /proc/mdstat: about 150 bytes an array, a few KB on
	// a large host.
	MaxMDStat = 1 * bounded.MiB
	// MaxSmartctlJSON bounds one drive's smartctl --json output: 0.5 to
	// 40 KB in the fixtures (an ATA drive with full logs is the largest).
	MaxSmartctlJSON = 4 * bounded.MiB
	// MaxZpoolStatus bounds `zpool status` output: with -v it lists every
	// damaged file, so it can run long.
	MaxZpoolStatus = 16 * bounded.MiB
	// MaxCommandOutput bounds what a command may print to a producer.
	MaxCommandOutput = 64 * bounded.MiB

	// maxSmallFile bounds one-value /proc and /sys files (uptime, uevent,
	// memory.current, error_stats), os-release, resolv.conf, locale and
	// container configs: bytes to a few KB.
	maxSmallFile = 64 * bounded.KiB
	// maxProcTable bounds /proc tables and system databases read whole:
	// mountinfo (1 MB with thousands of mounts), cpuinfo (1.5 KB a CPU),
	// /proc/stat, /etc/passwd, pci.ids (1.3 MB).
	maxProcTable = 16 * bounded.MiB
	// maxBigTable bounds dpkg's status (0.7 MB on a small Debian, 10 MB on
	// a big desktop) and /proc/net/route (128 bytes a route; it is read
	// only without ip(8), so not on a router holding a full table).
	maxBigTable = 64 * bounded.MiB
	// maxStateFile bounds a producer's saved state (a log position, a
	// journal cursor, counters).
	maxStateFile = 1 * bounded.MiB
	// maxReplayIndex bounds a replay directory's commands.json (one line a
	// recorded command).
	maxReplayIndex = 1 * bounded.MiB
)
