package fleetmetrics

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
)

// Collector is a prometheus.Collector of one Snapshot. It is unchecked
// (Describe sends nothing): the series depend on what the fleet reports.
type Collector struct{ S *Snapshot }

// Describe sends nothing: the collector is unchecked.
func (Collector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the snapshot's metrics.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	e := &emitter{ch: ch, descs: map[string]*prometheus.Desc{}, seen: map[string]bool{}}
	s := c.S
	for _, h := range s.Hosts {
		writeHost(e, s, h)
	}
	for _, d := range s.Drives {
		writeDrive(e, d)
	}
	writeAlerts(e, s.Hosts, s.Alerts)
	writeDeploys(e, s)
	guests := append([]Guest(nil), s.Guests...)
	sort.Slice(guests, func(i, j int) bool {
		if guests[i].Host != guests[j].Host {
			return guests[i].Host < guests[j].Host
		}
		return guests[i].Name < guests[j].Name
	})
	for _, g := range guests {
		writeGuest(e, g)
	}
}

// emitter sends const metrics, one Desc per name, and drops a series
// already sent (two mounts on one mount point, as node_exporter does).
type emitter struct {
	ch    chan<- prometheus.Metric
	descs map[string]*prometheus.Desc
	seen  map[string]bool
}

// m is one metric: name, help and type.
type m struct {
	name, help string
	typ        prometheus.ValueType
}

func gauge(name, help string) m   { return m{name, help, prometheus.GaugeValue} }
func counter(name, help string) m { return m{name, help, prometheus.CounterValue} }

// emit sends one sample; labels are name, value pairs.
func (e *emitter) emit(mt m, v float64, labels ...string) {
	var names, values []string
	for i := 0; i+1 < len(labels); i += 2 {
		names = append(names, labels[i])
		values = append(values, labels[i+1])
	}
	key := mt.name + "{" + strings.Join(names, ",") + "}"
	d := e.descs[key]
	if d == nil {
		d = prometheus.NewDesc(mt.name, mt.help, names, nil)
		e.descs[key] = d
	}
	series := mt.name + "\x00" + strings.Join(values, "\x00")
	if e.seen[series] {
		return
	}
	e.seen[series] = true
	e.ch <- prometheus.MustNewConstMetric(d, mt.typ, v, values...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var (
	mHostUp       = gauge("pinkie_host_up", "1 while the host sends heartbeats (online), 0 when it is silent or has sent none.")
	mHostLastSeen = gauge("pinkie_host_last_seen_timestamp_seconds", "Time of the host's latest event of any kind (Unix seconds).")
	mHostLastHB   = gauge("pinkie_host_last_heartbeat_timestamp_seconds", "Time of the host's latest heartbeat (Unix seconds).")
	mHostInfo     = gauge("pinkie_host_info", "The host's OS and NixOS version from its latest profile (always 1).")
	mLoad1        = gauge("node_load1", "1m load average, from the host's latest heartbeat.")
	mLoad5        = gauge("node_load5", "5m load average, from the host's latest heartbeat.")
	mLoad15       = gauge("node_load15", "15m load average, from the host's latest heartbeat.")
	mMemTotal     = gauge("node_memory_MemTotal_bytes", "Memory information field MemTotal_bytes, from the host's latest heartbeat.")
	mMemAvail     = gauge("node_memory_MemAvailable_bytes", "Memory information field MemAvailable_bytes, from the host's latest heartbeat.")
	mUptime       = gauge("pinkie_host_uptime_seconds", "Seconds since the host booted, at its latest heartbeat.")

	mFSSize        = gauge("node_filesystem_size_bytes", "Filesystem size in bytes.")
	mFSAvail       = gauge("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.")
	mFSFree        = gauge("node_filesystem_free_bytes", "Filesystem free space in bytes.")
	mFSFiles       = gauge("node_filesystem_files", "Filesystem total file nodes.")
	mFSFilesFree   = gauge("node_filesystem_files_free", "Filesystem total free file nodes.")
	mFSReadOnly    = gauge("node_filesystem_readonly", "Filesystem read-only status.")
	mVerdict       = gauge("pinkie_storage_verdict", "1 for the storage object's current verdict (ok, warning, failing), 0 for the others; kind is smart, zfs, btrfs, mdraid, fs, path or postgres.")
	mReportTime    = gauge("pinkie_storage_report_timestamp_seconds", "Time of the storage object's latest report (Unix seconds).")
	mSMARTPassed   = gauge("pinkie_smart_passed", "1 if the drive's overall SMART self-assessment passed, 0 if it failed.")
	mSMARTTemp     = gauge("pinkie_smart_temperature_celsius", "Drive temperature in degrees Celsius.")
	mSMARTPowerOn  = gauge("pinkie_smart_power_on_seconds", "Drive power-on time in seconds (power-on hours × 3600).")
	mSMARTCycles   = gauge("pinkie_smart_power_cycles", "Drive power cycle count.")
	mSMARTCapacity = gauge("pinkie_smart_capacity_bytes", "Drive capacity in bytes.")
	mSMARTExit     = gauge("pinkie_smart_smartctl_exit_status", "smartctl's exit status bitmask (8: failing, 16: prefail attribute at threshold, 64: error log entries, 128: self-test errors).")
	mSMARTAttrRaw  = gauge("pinkie_smart_attribute_raw", "ATA SMART attribute raw value (the leading count of smartctl's decoded raw value).")
	mSMARTAttrVal  = gauge("pinkie_smart_attribute_value", "ATA SMART attribute normalised value.")
	mSMARTAttrThr  = gauge("pinkie_smart_attribute_threshold", "ATA SMART attribute threshold.")
	mSMARTErrLog   = gauge("pinkie_smart_ata_error_log_entries", "Entries in the drive's ATA error log.")
	mSMARTSelfTest = gauge("pinkie_smart_last_self_test_passed", "1 if the drive's last self-test passed, 0 if it failed (absent while none finished).")
	mNVMeWarn      = gauge("pinkie_smart_nvme_critical_warning", "NVMe critical warning bit field.")
	mNVMeSpare     = gauge("pinkie_smart_nvme_available_spare_ratio", "NVMe available spare (0..1).")
	mNVMeUsed      = gauge("pinkie_smart_nvme_percentage_used_ratio", "NVMe estimate of the life used (0..1, may exceed 1).")
	mNVMeMedia     = gauge("pinkie_smart_nvme_media_errors", "NVMe media and data integrity errors.")
	mNVMeUnsafe    = gauge("pinkie_smart_nvme_unsafe_shutdowns", "NVMe unsafe shutdowns.")

	mZpoolState   = gauge("node_zfs_zpool_state", "kstat.zfs.misc.state: 1 for the pool's current state, 0 for the others.")
	mZpoolSize    = gauge("pinkie_zfs_pool_size_bytes", "ZFS pool size in bytes (zpool list).")
	mZpoolAlloc   = gauge("pinkie_zfs_pool_allocated_bytes", "ZFS pool allocated bytes.")
	mZpoolFree    = gauge("pinkie_zfs_pool_free_bytes", "ZFS pool free bytes.")
	mZpoolFrag    = gauge("pinkie_zfs_pool_fragmentation_ratio", "ZFS pool fragmentation (0..1).")
	mZpoolErrors  = gauge("pinkie_zfs_pool_vdev_errors", "Read, write and checksum errors summed over the pool's vdevs, by type.")
	mZpoolScrubTS = gauge("pinkie_zfs_pool_last_scan_finished_timestamp_seconds", "When the pool's last scrub or resilver finished (Unix seconds).")

	mMDState    = gauge("node_md_state", "Indicates the state of md-device.")
	mMDDisks    = gauge("node_md_disks", "Number of active/failed/spare disks of device.")
	mMDRequired = gauge("node_md_disks_required", "Total number of disks of device.")
	mMDSync     = gauge("pinkie_md_sync_ratio", "Progress of the array's resync, recovery or check (0..1), while one runs.")

	mBtrfsErrors  = counter("node_btrfs_device_errors_total", "Errors reported for the device.")
	mBtrfsMissing = gauge("pinkie_btrfs_device_missing", "1 if the btrfs device is missing.")
	mBtrfsSize    = gauge("node_btrfs_size_bytes", "Amount of space allocated for a layout (data, metadata, system).")
	mBtrfsUsed    = gauge("node_btrfs_used_bytes", "Amount of used space by a layout (data, metadata, system).")

	mPGSize   = gauge("pinkie_postgres_database_size_bytes", "PostgreSQL database size in bytes (pg_database_size).")
	mPGXIDAge = gauge("pinkie_postgres_database_xid_age", "age(datfrozenxid): transactions since the database was last frozen.")

	mPathSize  = gauge("pinkie_path_size_bytes", "Apparent size of a watched directory tree in bytes.")
	mPathDisk  = gauge("pinkie_path_disk_bytes", "Disk space a watched directory tree occupies in bytes.")
	mPathFiles = gauge("pinkie_path_files", "Files in a watched directory tree.")

	mGuestUp       = gauge("pinkie_guest_up", "1 if the guest's unit is active and running.")
	mGuestRestarts = gauge("pinkie_guest_restarts", "Restarts of the guest's unit (systemd NRestarts).")
	mGuestMemory   = gauge("pinkie_guest_memory_bytes", "Memory the guest uses (its cgroup's memory.current).")
	mGuestCPU      = counter("pinkie_guest_cpu_seconds_total", "CPU time the guest used (its cgroup's usage).")
	mGuestDisk     = gauge("pinkie_guest_disk_bytes", "Disk space of the guest's state directory in bytes.")
	mGuestReport   = gauge("pinkie_guest_report_timestamp_seconds", "Time of the guest's latest report (Unix seconds).")
	mGuestMemMax   = gauge("pinkie_guest_memory_max_bytes", "The guest's memory limit (its cgroup's memory.max), when it has one.")
	mGuestUptime   = gauge("pinkie_guest_uptime_seconds", "Seconds since the guest's unit became active.")
	mGuestRX       = counter("pinkie_guest_network_receive_bytes_total", "Bytes the guest received over its links (the host ends' transmit counters).")
	mGuestTX       = counter("pinkie_guest_network_transmit_bytes_total", "Bytes the guest sent over its links (the host ends' receive counters).")
	mGuestDiskFree = gauge("pinkie_guest_disk_free_bytes", "Space available on the filesystem holding the guest's state directory.")

	mAlertFiring = gauge("pinkie_alert_firing", "1 for each alert firing now, with its rule, object, severity and whether a silence covers it.")
	mAlertsCount = gauge("pinkie_alerts_firing", "Alerts firing now and not silenced, by host and severity.")

	mDeployTS  = gauge("pinkie_deploy_last_success_timestamp_seconds", "When the host's last successful deploy activated (Unix seconds).")
	mDeployAge = gauge("pinkie_deploy_last_success_age_seconds", "Seconds since the host's last successful deploy activated.")
	mDeployOK  = gauge("pinkie_deploy_last_attempt_succeeded", "1 if the host's last finished deploy attempt activated, 0 if it failed, rolled back or was skipped.")
)

func unix(t interface{ UnixNano() int64 }) float64 { return float64(t.UnixNano()) / 1e9 }

func writeHost(e *emitter, s *Snapshot, h *projections.Host) {
	host := h.Host
	e.emit(mHostUp, b2f(h.Online), "host", host)
	e.emit(mHostLastSeen, unix(h.LastSeen), "host", host)
	if h.LastHeartbeat != nil {
		e.emit(mHostLastHB, unix(*h.LastHeartbeat), "host", host)
	}
	if hb := h.Heartbeat; hb != nil {
		e.emit(mLoad1, hb.Load1, "host", host)
		e.emit(mLoad5, hb.Load5, "host", host)
		e.emit(mLoad15, hb.Load15, "host", host)
		e.emit(mMemTotal, float64(hb.MemTotalBytes), "host", host)
		e.emit(mMemAvail, float64(hb.MemAvailableBytes), "host", host)
		e.emit(mUptime, hb.UptimeSeconds, "host", host)
	}
	if p := h.Profile; p != nil {
		nixos := ""
		if p.Nix != nil {
			nixos = p.Nix.Version
		}
		e.emit(mHostInfo, 1, "host", host, "os", p.OS.PrettyName, "kernel", p.Kernel, "arch", p.Arch, "nixos_version", nixos)
	}
}

var verdicts = []string{events.VerdictOK, events.VerdictWarning, events.VerdictFailing}

func writeDrive(e *emitter, d projections.Drive) {
	host := d.Host
	if d.Verdict != "" {
		for _, v := range verdicts {
			e.emit(mVerdict, b2f(d.Verdict == v), "host", host, "kind", d.Kind, "object", d.Object, "verdict", v)
		}
	}
	e.emit(mReportTime, unix(d.Time), "host", host, "kind", d.Kind, "object", d.Object)
	switch d.Kind {
	case "fs":
		var f events.Filesystem
		if json.Unmarshal(d.Data, &f) != nil {
			return
		}
		l := []string{"host", host, "device", f.Device, "fstype", f.FSType, "mountpoint", f.MountPoint}
		e.emit(mFSSize, float64(f.SizeBytes), l...)
		e.emit(mFSAvail, float64(f.AvailableBytes), l...)
		e.emit(mFSFree, float64(f.SizeBytes-min(f.UsedBytes, f.SizeBytes)), l...)
		e.emit(mFSFiles, float64(f.Inodes), l...)
		e.emit(mFSFilesFree, float64(f.InodesFree), l...)
		e.emit(mFSReadOnly, b2f(f.ReadOnly), l...)
	case "smart":
		var x events.SMART
		if json.Unmarshal(d.Data, &x) != nil {
			return
		}
		writeSMART(e, host, &x)
	case "zfs":
		var x events.ZFSPool
		if json.Unmarshal(d.Data, &x) != nil {
			return
		}
		writeZFS(e, host, &x)
	case "mdraid":
		var x events.MDRaid
		if json.Unmarshal(d.Data, &x) != nil {
			return
		}
		writeMD(e, host, &x)
	case "btrfs":
		var x events.Btrfs
		if json.Unmarshal(d.Data, &x) != nil {
			return
		}
		writeBtrfs(e, host, &x)
	case "postgres":
		var x events.Postgres
		if json.Unmarshal(d.Data, &x) != nil {
			return
		}
		e.emit(mPGSize, float64(x.SizeBytes), "host", host, "database", x.Database)
		e.emit(mPGXIDAge, float64(x.XIDAge), "host", host, "database", x.Database)
	case "path":
		var x events.PathUsage
		if json.Unmarshal(d.Data, &x) != nil {
			return
		}
		e.emit(mPathSize, float64(x.SizeBytes), "host", host, "path", x.Path)
		e.emit(mPathDisk, float64(x.DiskBytes), "host", host, "path", x.Path)
		e.emit(mPathFiles, float64(x.Files), "host", host, "path", x.Path)
	}
}

func writeSMART(e *emitter, host string, x *events.SMART) {
	l := []string{"host", host, "device", x.Device}
	if x.SmartPassed != nil {
		e.emit(mSMARTPassed, b2f(*x.SmartPassed), l...)
	}
	if x.TemperatureC != nil {
		e.emit(mSMARTTemp, float64(*x.TemperatureC), l...)
	}
	if x.PowerOnHours != nil {
		e.emit(mSMARTPowerOn, float64(*x.PowerOnHours)*3600, l...)
	}
	if x.PowerCycles != nil {
		e.emit(mSMARTCycles, float64(*x.PowerCycles), l...)
	}
	if x.CapacityBytes > 0 {
		e.emit(mSMARTCapacity, float64(x.CapacityBytes), l...)
	}
	if x.SmartctlExitStatus != nil {
		e.emit(mSMARTExit, float64(*x.SmartctlExitStatus), l...)
	}
	if x.ATAErrorLogCount != nil {
		e.emit(mSMARTErrLog, float64(*x.ATAErrorLogCount), l...)
	}
	if st := x.LastSelfTest; st != nil && (st.Result == "passed" || st.Result == "failed") {
		e.emit(mSMARTSelfTest, b2f(st.Result == "passed"), l...)
	}
	for _, a := range x.ATAAttributes {
		al := append(append([]string(nil), l...), "id", strconv.Itoa(a.ID), "name", a.Name)
		e.emit(mSMARTAttrRaw, float64(a.Raw), al...)
		e.emit(mSMARTAttrVal, float64(a.Value), al...)
		e.emit(mSMARTAttrThr, float64(a.Threshold), al...)
	}
	if n := x.NVMe; n != nil {
		e.emit(mNVMeWarn, float64(n.CriticalWarning), l...)
		e.emit(mNVMeSpare, float64(n.AvailableSpare)/100, l...)
		e.emit(mNVMeUsed, float64(n.PercentageUsed)/100, l...)
		e.emit(mNVMeMedia, float64(n.MediaErrors), l...)
		e.emit(mNVMeUnsafe, float64(n.UnsafeShutdowns), l...)
	}
}

// zpoolStates are the states node_exporter's zfs collector reports.
var zpoolStates = []string{"degraded", "faulted", "offline", "online", "removed", "suspended", "unavail"}

func writeZFS(e *emitter, host string, x *events.ZFSPool) {
	for _, st := range zpoolStates {
		e.emit(mZpoolState, b2f(strings.EqualFold(x.State, st)), "host", host, "state", st, "zpool", x.Pool)
	}
	l := []string{"host", host, "zpool", x.Pool}
	e.emit(mZpoolSize, float64(x.SizeBytes), l...)
	e.emit(mZpoolAlloc, float64(x.AllocatedBytes), l...)
	e.emit(mZpoolFree, float64(x.FreeBytes), l...)
	if x.FragmentationPercent != nil {
		e.emit(mZpoolFrag, float64(*x.FragmentationPercent)/100, l...)
	}
	var r, w, c uint64
	for _, v := range x.Vdevs {
		if v.Depth == 0 {
			continue // the pool root and group lines repeat their children's sums
		}
		r, w, c = r+v.ReadErrors, w+v.WriteErrors, c+v.ChecksumErrors
	}
	e.emit(mZpoolErrors, float64(r), append(l, "type", "read")...)
	e.emit(mZpoolErrors, float64(w), append(l, "type", "write")...)
	e.emit(mZpoolErrors, float64(c), append(l, "type", "checksum")...)
	if x.Scan.Finished != nil {
		e.emit(mZpoolScrubTS, unix(*x.Scan.Finished), append(l, "function", x.Scan.Function)...)
	}
}

// mdStates are node_exporter's md states.
var mdStates = []string{"active", "inactive", "recovering", "resync", "check"}

// mdState maps pinkie's mdstat state to node_exporter's.
func mdState(s string) string {
	switch s {
	case "resyncing", "reshaping":
		return "resync"
	case "checking":
		return "check"
	}
	return s
}

func writeMD(e *emitter, host string, x *events.MDRaid) {
	cur := mdState(x.State)
	for _, st := range mdStates {
		e.emit(mMDState, b2f(cur == st), "device", x.Device, "host", host, "state", st)
	}
	e.emit(mMDDisks, float64(x.ActiveDisks), "device", x.Device, "host", host, "state", "active")
	e.emit(mMDDisks, float64(x.FailedDisks), "device", x.Device, "host", host, "state", "failed")
	e.emit(mMDDisks, float64(x.SpareDisks), "device", x.Device, "host", host, "state", "spare")
	e.emit(mMDRequired, float64(x.RequiredDisks), "device", x.Device, "host", host)
	if x.SyncPercent != nil {
		e.emit(mMDSync, *x.SyncPercent/100, "device", x.Device, "host", host)
	}
}

func writeBtrfs(e *emitter, host string, x *events.Btrfs) {
	for _, d := range x.Devices {
		dev := d.Path
		if dev == "" {
			dev = strconv.Itoa(d.DevID)
		}
		for _, c := range []struct {
			typ string
			n   uint64
		}{{"write", d.Errors.WriteIOErrs}, {"read", d.Errors.ReadIOErrs}, {"flush", d.Errors.FlushIOErrs},
			{"corruption", d.Errors.CorruptionErrs}, {"generation", d.Errors.GenerationErrs}} {
			e.emit(mBtrfsErrors, float64(c.n), "device", dev, "host", host, "type", c.typ, "uuid", x.FSID)
		}
		e.emit(mBtrfsMissing, b2f(d.Missing), "device", dev, "host", host, "uuid", x.FSID)
	}
	for _, a := range []struct {
		typ string
		sp  events.BtrfsSpace
	}{{"data", x.Allocation.Data}, {"metadata", x.Allocation.Metadata}, {"system", x.Allocation.System}} {
		e.emit(mBtrfsSize, float64(a.sp.TotalBytes), "block_group_type", a.typ, "host", host, "uuid", x.FSID)
		e.emit(mBtrfsUsed, float64(a.sp.UsedBytes), "block_group_type", a.typ, "host", host, "uuid", x.FSID)
	}
}

func writeAlerts(e *emitter, known []*projections.Host, alerts []projections.ActiveAlert) {
	// Per host, known or alerted about: the unsilenced alerts by
	// severity, 0 included, so a host without alerts reads 0, not absent.
	counts := map[string]map[string]int{}
	for _, h := range known {
		counts[h.Host] = map[string]int{}
	}
	for _, a := range alerts {
		if a.OneShot {
			continue // a single event (a login): it never resolves
		}
		e.emit(mAlertFiring, 1, "host", a.Host, "rule", a.Rule, "object", a.Object, "severity", a.Severity, "silenced", strconv.FormatBool(a.Silenced))
		if counts[a.Host] == nil {
			counts[a.Host] = map[string]int{}
		}
		if !a.Silenced {
			counts[a.Host][a.Severity]++
		}
	}
	hosts := make([]string, 0, len(counts))
	for h := range counts {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		for _, sev := range []string{events.SeverityCritical, events.SeverityWarning, events.SeverityInfo} {
			e.emit(mAlertsCount, float64(counts[h][sev]), "host", h, "severity", sev)
		}
	}
}

func writeDeploys(e *emitter, s *Snapshot) {
	hosts := make([]string, 0, len(s.LastDeploys))
	for h := range s.LastDeploys {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		r := s.LastDeploys[h]
		if r.LastSuccess != nil {
			e.emit(mDeployTS, unix(r.LastSuccess.Time), "host", h)
			e.emit(mDeployAge, s.Now.Sub(r.LastSuccess.Time).Seconds(), "host", h)
		}
		if a := r.LastAttempt; a != nil && a.Outcome != lastdeploy.InProgress {
			e.emit(mDeployOK, b2f(a.Outcome == lastdeploy.Succeeded), "host", h)
		}
	}
}

func writeGuest(e *emitter, g Guest) {
	l := []string{"guest", g.Name, "host", g.Host, "type", g.Type}
	e.emit(mGuestUp, b2f(g.Healthy), l...)
	e.emit(mGuestRestarts, float64(g.Restarts), l...)
	e.emit(mGuestMemory, float64(g.MemoryBytes), l...)
	e.emit(mGuestCPU, g.CPUUsageSeconds, l...)
	if g.StateDir != "" {
		e.emit(mGuestDisk, float64(g.DiskBytes), l...)
	}
	if g.MemoryMaxBytes > 0 {
		e.emit(mGuestMemMax, float64(g.MemoryMaxBytes), l...)
	}
	if g.UptimeSeconds > 0 {
		e.emit(mGuestUptime, g.UptimeSeconds, l...)
	}
	if len(g.Interfaces) > 0 {
		e.emit(mGuestRX, float64(g.NetRXBytes), l...)
		e.emit(mGuestTX, float64(g.NetTXBytes), l...)
	}
	if g.DiskFSBytes > 0 {
		e.emit(mGuestDiskFree, float64(g.DiskFreeBytes), l...)
	}
	e.emit(mGuestReport, unix(g.Time), l...)
}
