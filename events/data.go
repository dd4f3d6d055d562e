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
	Hostname string    `json:"hostname"`
	OS       OSInfo    `json:"os"`
	Kernel   string    `json:"kernel"`
	Arch     string    `json:"arch"`
	CPU      CPUInfo   `json:"cpu"`
	Memory   Memory    `json:"memory"`
	BootTime time.Time `json:"boot_time"`
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

// DeployRequested asks for a host to be deployed.
type DeployRequested struct {
	Host        string `json:"host"`
	Flake       string `json:"flake,omitempty"`
	Revision    string `json:"revision,omitempty"`
	BuildOn     string `json:"build_on,omitempty"`
	Goal        string `json:"goal,omitempty"`
	StorePath   string `json:"store_path,omitempty"`
	RequestedBy string `json:"requested_by,omitempty"`
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
