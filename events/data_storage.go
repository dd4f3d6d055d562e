package events

import "time"

// Verdicts of the storage events. Every storage event carries the raw facts
// and one verdict with the reasons for it in words, so alert rules and
// people read the same judgement. Reasons are empty when the verdict is ok.
const (
	VerdictOK      = "ok"
	VerdictWarning = "warning"
	VerdictFailing = "failing"
)

// SMART is the health of one drive, normalised from smart.go (read by the
// agent itself) or from `smartctl --json` output.
type SMART struct {
	// Device is the device path, e.g. /dev/sda or /dev/nvme0.
	Device string `json:"device"`
	// Protocol is ata, nvme or scsi.
	Protocol string `json:"protocol"`
	// Source is where the facts came from: smart.go or smartctl.
	Source string `json:"source"`
	// DeviceType is smartctl's device type (sat, sat+megaraid,1,
	// usbjmicron, nvme, scsi), when smartctl was the source.
	DeviceType    string `json:"device_type,omitempty"`
	Model         string `json:"model,omitempty"`
	Serial        string `json:"serial,omitempty"`
	Firmware      string `json:"firmware,omitempty"`
	CapacityBytes uint64 `json:"capacity_bytes,omitempty"`
	// RotationRateRPM is 0 for a solid-state drive; absent when unknown.
	RotationRateRPM *int    `json:"rotation_rate_rpm,omitempty"`
	TemperatureC    *int    `json:"temperature_c,omitempty"`
	PowerOnHours    *uint64 `json:"power_on_hours,omitempty"`
	PowerCycles     *uint64 `json:"power_cycles,omitempty"`
	// SmartPassed is the drive's overall self-assessment; absent when it
	// was not read.
	SmartPassed *bool `json:"smart_passed,omitempty"`
	// SmartctlExitStatus is smartctl's exit status bitmask, when smartctl
	// was the source (8: disk failing, 16: prefail attribute at or below
	// threshold, 32: an attribute was at or below threshold in the past,
	// 64: error log has entries, 128: self-test log has errors).
	SmartctlExitStatus *int           `json:"smartctl_exit_status,omitempty"`
	ATAAttributes      []ATAAttribute `json:"ata_attributes,omitempty"`
	ATAErrorLogCount   *uint64        `json:"ata_error_log_count,omitempty"`
	LastSelfTest       *SMARTSelfTest `json:"last_self_test,omitempty"`
	NVMe               *NVMeHealth    `json:"nvme,omitempty"`
	SCSI               *SCSIHealth    `json:"scsi,omitempty"`
	Verdict            string         `json:"verdict"`
	Reasons            []string       `json:"reasons,omitempty"`
}

// ATAAttribute is one ATA SMART attribute.
type ATAAttribute struct {
	ID        int    `json:"id"`
	Name      string `json:"name,omitempty"`
	Value     int    `json:"value"`
	Worst     int    `json:"worst"`
	Threshold int    `json:"threshold"`
	// Prefailure is set for attributes whose crossing of the threshold
	// predicts imminent failure (smartctl's "Pre-fail" type).
	Prefailure bool `json:"prefailure"`
	// WhenFailed is smartctl's "now" or "past" when the value is or was at
	// or below the threshold; empty otherwise.
	WhenFailed string `json:"when_failed,omitempty"`
	// Raw is the raw value as a count: the leading number of smartctl's
	// decoded raw string ("2111 (12437 0)" is 2111), else the raw value.
	Raw uint64 `json:"raw"`
	// RawString is smartctl's decoded raw value, when smartctl read it.
	RawString string `json:"raw_string,omitempty"`
}

// SMARTSelfTest is the most recent entry of the drive's self-test log.
type SMARTSelfTest struct {
	Type string `json:"type"`
	// Status is the drive's status text ("Completed without error",
	// "Completed: read failure", "Aborted by host").
	Status string `json:"status"`
	// Result is passed, failed, aborted (by the host or a reset: no
	// judgement) or in_progress.
	Result        string `json:"result"`
	LifetimeHours uint64 `json:"lifetime_hours"`
}

// NVMeHealth is the NVMe SMART / health information log (log page 02h).
type NVMeHealth struct {
	CriticalWarning         int    `json:"critical_warning"`
	AvailableSpare          int    `json:"available_spare"`
	AvailableSpareThreshold int    `json:"available_spare_threshold"`
	PercentageUsed          int    `json:"percentage_used"`
	MediaErrors             uint64 `json:"media_errors"`
	ErrorLogEntries         uint64 `json:"error_log_entries"`
	UnsafeShutdowns         uint64 `json:"unsafe_shutdowns"`
	DataUnitsRead           uint64 `json:"data_units_read"`
	DataUnitsWritten        uint64 `json:"data_units_written"`
	WarningTempMinutes      uint64 `json:"warning_temp_minutes"`
	CriticalTempMinutes     uint64 `json:"critical_temp_minutes"`
}

// SCSIHealth is what a SCSI/SAS drive reports about its media.
type SCSIHealth struct {
	// GrownDefects is the length of the grown defect list; absent when the
	// drive did not report it.
	GrownDefects            *uint64 `json:"grown_defects,omitempty"`
	ReadUncorrectedErrors   uint64  `json:"read_uncorrected_errors"`
	WriteUncorrectedErrors  uint64  `json:"write_uncorrected_errors"`
	VerifyUncorrectedErrors uint64  `json:"verify_uncorrected_errors"`
}

// ZFSPool is one ZFS pool: its health, capacity and vdev tree from
// `zpool list` and `zpool status`.
type ZFSPool struct {
	Pool string `json:"pool"`
	// State is the pool state from zpool status: ONLINE, DEGRADED,
	// FAULTED, OFFLINE, REMOVED, UNAVAIL, SUSPENDED.
	State string `json:"state"`
	// Status and Action are zpool's own explanation, when it gives one.
	Status               string `json:"status,omitempty"`
	Action               string `json:"action,omitempty"`
	SizeBytes            uint64 `json:"size_bytes"`
	AllocatedBytes       uint64 `json:"allocated_bytes"`
	FreeBytes            uint64 `json:"free_bytes"`
	CapacityPercent      int    `json:"capacity_percent"`
	FragmentationPercent *int   `json:"fragmentation_percent,omitempty"`
	// Vdevs is the vdev tree in zpool status order, the pool root first.
	Vdevs []ZFSVdev `json:"vdevs"`
	Scan  ZFSScan   `json:"scan"`
	// DataErrors is zpool's "errors:" line, e.g. "No known data errors".
	DataErrors string   `json:"data_errors,omitempty"`
	Verdict    string   `json:"verdict"`
	Reasons    []string `json:"reasons,omitempty"`
}

// ZFSVdev is one line of the config tree of zpool status.
type ZFSVdev struct {
	Name string `json:"name"`
	// Path is the vdev's position in the tree, parents joined by "/",
	// e.g. "mirror-1/sdb".
	Path string `json:"path"`
	// Depth is 0 for the pool root (and the logs, cache, spares, special
	// and dedup group lines), 1 for top-level vdevs, 2 for their leaves.
	Depth int `json:"depth"`
	// Group is logs, cache, spares, special or dedup for vdevs under such a
	// group; empty for the data vdevs.
	Group          string `json:"group,omitempty"`
	State          string `json:"state"`
	ReadErrors     uint64 `json:"read_errors"`
	WriteErrors    uint64 `json:"write_errors"`
	ChecksumErrors uint64 `json:"checksum_errors"`
	// Note is what zpool printed after the counters ("corrupted data",
	// "(resilvering)", "was /dev/sdb1").
	Note string `json:"note,omitempty"`
}

// ZFSScan is the last or current scrub or resilver of a pool.
type ZFSScan struct {
	// Function is scrub, resilver or none (never scanned).
	Function string `json:"function"`
	// State is finished, in_progress or canceled ("" when none).
	State string `json:"state,omitempty"`
	// Line is zpool's scan text as printed.
	Line     string     `json:"line,omitempty"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// Repaired is the amount repaired, as zpool prints it ("0B", "21K").
	Repaired string `json:"repaired,omitempty"`
	// Errors is the number of errors the finished scan reported.
	Errors uint64 `json:"errors"`
	// ProgressPercent is set while a scan is in progress.
	ProgressPercent *float64 `json:"progress_percent,omitempty"`
	// AgeSeconds is how long ago the finished scan ended.
	AgeSeconds *int64 `json:"age_seconds,omitempty"`
}

// Btrfs is one btrfs filesystem: its devices' error counters, allocation
// and missing devices.
type Btrfs struct {
	FSID  string `json:"fsid"`
	Label string `json:"label,omitempty"`
	// DeviceNames are the block devices of the filesystem (loop0, sda2).
	DeviceNames []string `json:"device_names"`
	// Source is sysfs (error_stats, kernel ≥ 5.14) or "btrfs device stats".
	Source     string          `json:"source"`
	Devices    []BtrfsDevice   `json:"devices"`
	Allocation BtrfsAllocation `json:"allocation"`
	// FirstSeen is when pinkie first recorded this filesystem's counters:
	// the baseline increases are measured against.
	FirstSeen time.Time `json:"first_seen"`
	Verdict   string    `json:"verdict"`
	Reasons   []string  `json:"reasons,omitempty"`
}

// BtrfsDevice is one device of a btrfs filesystem.
type BtrfsDevice struct {
	// DevID is btrfs's device id (1, 2, ...); 0 when unknown (from btrfs
	// device stats, which names devices by path).
	DevID   int    `json:"devid"`
	Path    string `json:"path,omitempty"`
	Missing bool   `json:"missing"`
	// Errors are the counters as the kernel reports them now; they persist
	// across reboots until reset with `btrfs device stats -z`.
	Errors BtrfsCounters `json:"errors"`
	// Baseline are the counters pinkie first saw (or saw after a reset);
	// the verdict reacts to counters rising above them.
	Baseline BtrfsCounters `json:"baseline"`
}

// BtrfsCounters are the five per-device error counters of btrfs.
type BtrfsCounters struct {
	WriteIOErrs    uint64 `json:"write_io_errs"`
	ReadIOErrs     uint64 `json:"read_io_errs"`
	FlushIOErrs    uint64 `json:"flush_io_errs"`
	CorruptionErrs uint64 `json:"corruption_errs"`
	GenerationErrs uint64 `json:"generation_errs"`
}

// BtrfsAllocation is the space btrfs has allocated to chunks of each type
// (total) and how much of it holds data (used).
type BtrfsAllocation struct {
	Data     BtrfsSpace `json:"data"`
	Metadata BtrfsSpace `json:"metadata"`
	System   BtrfsSpace `json:"system"`
}

// BtrfsSpace is one allocation class.
type BtrfsSpace struct {
	TotalBytes uint64 `json:"total_bytes"`
	UsedBytes  uint64 `json:"used_bytes"`
}

// MDRaid is one Linux software RAID array, from /proc/mdstat and md sysfs.
type MDRaid struct {
	// Device is the array's name, e.g. md0.
	Device string `json:"device"`
	// Level is raid0, raid1, raid5, raid6, raid10, linear; empty for an
	// inactive array whose level is unknown.
	Level string `json:"level,omitempty"`
	// State is /proc/mdstat's activity state: active, inactive,
	// recovering, resyncing, reshaping, checking.
	State string `json:"state"`
	// ArrayState is md sysfs array_state (clean, active, inactive,
	// readonly, read-auto, broken...), when sysfs was readable.
	ArrayState string `json:"array_state,omitempty"`
	// Metadata is the superblock format (1.2, external:imsm), when known.
	Metadata string `json:"metadata,omitempty"`
	// Container is set for an IMSM/DDF container, which is inactive by
	// design; its volumes are separate arrays.
	Container bool `json:"container"`
	// RequiredDisks is how many members the array needs (raid_disks).
	RequiredDisks  int        `json:"required_disks"`
	ActiveDisks    int        `json:"active_disks"`
	FailedDisks    int        `json:"failed_disks"`
	SpareDisks     int        `json:"spare_disks"`
	DegradedDisks  int        `json:"degraded_disks"`
	Members        []MDMember `json:"members"`
	SizeBlocks     uint64     `json:"size_blocks"`
	SyncAction     string     `json:"sync_action,omitempty"`
	SyncPercent    *float64   `json:"sync_percent,omitempty"`
	SyncCompleted  string     `json:"sync_completed,omitempty"`
	SyncFinishMins *float64   `json:"sync_finish_minutes,omitempty"`
	MismatchCount  *uint64    `json:"mismatch_count,omitempty"`
	Verdict        string     `json:"verdict"`
	Reasons        []string   `json:"reasons,omitempty"`
}

// MDMember is one component device of an md array.
type MDMember struct {
	Name   string `json:"name"`
	Index  int    `json:"index"`
	Faulty bool   `json:"faulty"`
	Spare  bool   `json:"spare"`
}

// Filesystem is the usage of one mounted filesystem.
type Filesystem struct {
	MountPoint        string   `json:"mount_point"`
	Device            string   `json:"device"`
	FSType            string   `json:"fs_type"`
	ReadOnly          bool     `json:"read_only"`
	SizeBytes         uint64   `json:"size_bytes"`
	UsedBytes         uint64   `json:"used_bytes"`
	AvailableBytes    uint64   `json:"available_bytes"`
	UsedPercent       float64  `json:"used_percent"`
	Inodes            uint64   `json:"inodes"`
	InodesUsed        uint64   `json:"inodes_used"`
	InodesFree        uint64   `json:"inodes_free"`
	InodesUsedPercent float64  `json:"inodes_used_percent"`
	Verdict           string   `json:"verdict"`
	Reasons           []string `json:"reasons,omitempty"`
}

// PathUsage is the total size of a directory tree the operator listed.
type PathUsage struct {
	Path string `json:"path"`
	// SizeBytes is the sum of the files' apparent sizes.
	SizeBytes uint64 `json:"size_bytes"`
	// DiskBytes is the space the files occupy on disk (st_blocks × 512),
	// each hard-linked file counted once.
	DiskBytes uint64 `json:"disk_bytes"`
	Files     uint64 `json:"files"`
	Dirs      uint64 `json:"dirs"`
	// Unreadable counts entries the walk could not read.
	Unreadable uint64 `json:"unreadable"`
	// Complete is false when the walk stopped at its time or file budget;
	// the sizes then cover only what was walked.
	Complete         bool     `json:"complete"`
	IncompleteReason string   `json:"incomplete_reason,omitempty"`
	DurationSeconds  float64  `json:"duration_seconds"`
	Verdict          string   `json:"verdict"`
	Reasons          []string `json:"reasons,omitempty"`
}

// Postgres is one PostgreSQL database's size and its largest relations.
type Postgres struct {
	Database      string `json:"database"`
	ServerVersion string `json:"server_version"`
	SizeBytes     int64  `json:"size_bytes"`
	// XIDAge is age(datfrozenxid): transactions since the database was last
	// frozen; PostgreSQL stops writes near 2^31.
	XIDAge    int64              `json:"xid_age"`
	Relations []PostgresRelation `json:"relations"`
	Verdict   string             `json:"verdict"`
	Reasons   []string           `json:"reasons,omitempty"`
}

// PostgresRelation is one table, index, materialized view or TOAST table.
type PostgresRelation struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	// Kind is table, index, materialized_view, toast, sequence, other.
	Kind string `json:"kind"`
	// TotalBytes is pg_total_relation_size: with indexes and TOAST.
	TotalBytes int64 `json:"total_bytes"`
}
