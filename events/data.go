package events

import "time"

// Heartbeat says an agent is alive. Counter counts heartbeats of one agent
// process, starting at 1; Instance identifies that process, so a gap in the
// counters of one instance means a lost event.
type Heartbeat struct {
	Counter           uint64  `json:"counter"`
	Instance          string  `json:"instance"`
	UptimeSeconds     float64 `json:"uptime_seconds"`
	Load1             float64 `json:"load1"`
	Load5             float64 `json:"load5"`
	Load15            float64 `json:"load15"`
	MemTotalBytes     uint64  `json:"mem_total_bytes"`
	MemAvailableBytes uint64  `json:"mem_available_bytes"`
	AgentVersion      string  `json:"agent_version"`
}

// Profile describes what a host is.
type Profile struct {
	Hostname      string    `json:"hostname"`
	OS            OSInfo    `json:"os"`
	Kernel        string    `json:"kernel"`
	Arch          string    `json:"arch"`
	CPU           CPUInfo   `json:"cpu"`
	Memory        Memory    `json:"memory"`
	BootTime      time.Time `json:"boot_time"`
	UptimeSeconds float64   `json:"uptime_seconds,omitempty"`
	GPUs          []GPU     `json:"gpus,omitempty"`
	// Locale holds LANG, LANGUAGE and LC_* from locale.conf.
	Locale map[string]string `json:"locale,omitempty"`
	// Timezone is the IANA zone name ("Europe/Berlin").
	Timezone string           `json:"timezone,omitempty"`
	Displays []Display        `json:"displays,omitempty"`
	Programs *Programs        `json:"programs,omitempty"`
	Sessions []GraphicSession `json:"sessions,omitempty"`
	RunDirs  []RunDir         `json:"run_dirs,omitempty"`
	Nix      *NixSystem       `json:"nix,omitempty"`
}

// GPU is a graphics card from /sys/class/drm with its PCI ids.
type GPU struct {
	Card     string `json:"card"`
	VendorID string `json:"vendor_id,omitempty"`
	DeviceID string `json:"device_id,omitempty"`
	Vendor   string `json:"vendor,omitempty"`
	// Model is the device name from the host's pci.ids, when it has one.
	Model  string `json:"model,omitempty"`
	Driver string `json:"driver,omitempty"`
}

// Display is a connected display connector and its modes, preferred first.
type Display struct {
	Connector string   `json:"connector"`
	Modes     []string `json:"modes,omitempty"`
}

// Programs says what is installed: the package count of the system profile
// (Nix closure or dpkg), desktop applications and the default terminal.
type Programs struct {
	// PackageManager is "nix" or "dpkg".
	PackageManager      string `json:"package_manager,omitempty"`
	Packages            int    `json:"packages"`
	DesktopApplications int    `json:"desktop_applications"`
	DefaultTerminal     string `json:"default_terminal,omitempty"`
}

// GraphicSession is a running X11 or Wayland display of a user.
type GraphicSession struct {
	User    string `json:"user,omitempty"`
	UID     int    `json:"uid"`
	Type    string `json:"type"`
	Display string `json:"display"`
}

// RunDir is a user's runtime directory (/run/user/<uid>), present while the
// user has a session.
type RunDir struct {
	Path string `json:"path"`
	UID  int    `json:"uid"`
	User string `json:"user,omitempty"`
}

// NixSystem is the current NixOS or nix-darwin system.
type NixSystem struct {
	// Flavor is "nixos" or "nix-darwin".
	Flavor string `json:"flavor"`
	// SystemPath is the store path of the current system closure.
	SystemPath string `json:"system_path"`
	// Generation is the system profile generation, when known.
	Generation int `json:"generation,omitempty"`
	// BuiltAt is when the current system generation was created.
	BuiltAt *time.Time `json:"built_at,omitempty"`
	// Version is nixosVersion (or darwinLabel).
	Version               string     `json:"version,omitempty"`
	NixpkgsRevision       string     `json:"nixpkgs_revision,omitempty"`
	NixpkgsDate           *time.Time `json:"nixpkgs_date,omitempty"`
	NixpkgsAgeDays        *int       `json:"nixpkgs_age_days,omitempty"`
	ConfigurationRevision string     `json:"configuration_revision,omitempty"`
}

// OSInfo is the operating system, from os-release.
type OSInfo struct {
	ID         string `json:"id"`
	VersionID  string `json:"version_id,omitempty"`
	PrettyName string `json:"pretty_name,omitempty"`
}

// CPUInfo is the processor model and its counts.
type CPUInfo struct {
	Model   string `json:"model"`
	Cores   int    `json:"cores"`
	Threads int    `json:"threads"`
}

// Memory is RAM and swap in bytes.
type Memory struct {
	TotalBytes     uint64 `json:"total_bytes"`
	AvailableBytes uint64 `json:"available_bytes"`
	SwapTotalBytes uint64 `json:"swap_total_bytes"`
	SwapFreeBytes  uint64 `json:"swap_free_bytes"`
}

// DeadLetter is an event the hub refused on ingest. Payload holds the start
// of what was received, as text, so an operator can see what went wrong.
type DeadLetter struct {
	Host          string `json:"host"`
	Reason        string `json:"reason"`
	Subject       string `json:"subject"`
	StreamSource  string `json:"stream_source,omitempty"`
	Size          int    `json:"size"`
	Payload       string `json:"payload"`
	PayloadCutOff bool   `json:"payload_cut_off,omitempty"`
}

// IngestBudget is the hub's word on a host's ingest budget: Throttled when
// the host sent more than its budget allows and the hub paused its source
// (its events wait in its own OUTBOX), not Throttled once it is within
// budget again. The limits are the ones in force.
type IngestBudget struct {
	Host      string `json:"host"`
	Throttled bool   `json:"throttled"`
	// Reason says which limit ran dry, in words (throttled only).
	Reason string `json:"reason,omitempty"`
	// Since is when the host was first throttled in this episode.
	Since time.Time `json:"since"`
	// Pauses counts the pauses of this episode; each one waits at least
	// twice as long as the one before.
	Pauses int `json:"pauses"`
	// ResumeAfter is the earliest time the source is added back
	// (throttled only).
	ResumeAfter     *time.Time `json:"resume_after,omitempty"`
	EventsPerSecond float64    `json:"events_per_second"`
	BytesPerSecond  float64    `json:"bytes_per_second"`
	BurstEvents     int64      `json:"burst_events"`
	BurstBytes      int64      `json:"burst_bytes"`
}
