package events

import "time"

// Network is a host's network configuration: interfaces with their
// addresses, default routes, DNS resolvers and VPN state. Public is set only
// when the operator configured a public-IP URL or a GeoIP database.
type Network struct {
	Interfaces    []NetInterface `json:"interfaces"`
	DefaultRoutes []Route        `json:"default_routes"`
	DNS           DNS            `json:"dns"`
	WireGuard     []WireGuard    `json:"wireguard,omitempty"`
	Public        *PublicAddress `json:"public,omitempty"`
}

// NetInterface is one network interface, from /sys/class/net and `ip addr`.
type NetInterface struct {
	Name  string `json:"name"`
	MAC   string `json:"mac,omitempty"`
	MTU   int    `json:"mtu"`
	State string `json:"state"`
	// Kind is the link type ("ether", "loopback", "none" for tun/wireguard).
	Kind string `json:"kind,omitempty"`
	// VPN is "wireguard", "tailscale" or "tun" for VPN interfaces.
	VPN string `json:"vpn,omitempty"`
	// Addresses are IPv4 and IPv6 addresses in CIDR notation.
	Addresses []string `json:"addresses"`
}

// Route is a default route.
type Route struct {
	Family    string `json:"family"`
	Gateway   string `json:"gateway,omitempty"`
	Interface string `json:"interface,omitempty"`
	Metric    int    `json:"metric,omitempty"`
}

// DNS is the resolver configuration from resolv.conf.
type DNS struct {
	Nameservers []string `json:"nameservers"`
	Search      []string `json:"search,omitempty"`
}

// WireGuard is one WireGuard interface as `wg show all dump` reports it.
type WireGuard struct {
	Interface  string `json:"interface"`
	PublicKey  string `json:"public_key,omitempty"`
	ListenPort int    `json:"listen_port,omitempty"`
	Peers      int    `json:"peers"`
	// LatestHandshake is the most recent handshake of any peer; absent when
	// no peer ever completed one.
	LatestHandshake     *time.Time `json:"latest_handshake,omitempty"`
	HandshakeAgeSeconds *int64     `json:"handshake_age_seconds,omitempty"`
}

// PublicAddress is the host's public IP address and, with a GeoIP
// database, where it is.
type PublicAddress struct {
	IP      string `json:"ip,omitempty"`
	Country string `json:"country,omitempty"`
	City    string `json:"city,omitempty"`
	ASN     uint   `json:"asn,omitempty"`
	ASOrg   string `json:"as_org,omitempty"`
	// Error says why the public address or its location is missing.
	Error string `json:"error,omitempty"`
}

// Systemd is the state of a host's systemd units: the failed ones and the
// ones the operator asked to watch.
type Systemd struct {
	// Source is "dbus" or "systemctl", whichever answered.
	Source string `json:"source"`
	// SystemState is the manager's state ("running", "degraded").
	SystemState string      `json:"system_state,omitempty"`
	Failed      []UnitState `json:"failed"`
	Watched     []UnitState `json:"watched,omitempty"`
	// Guests are the NixOS containers whose units the agent watches
	// through machined (systemctl -M), one entry per container asked.
	Guests []GuestUnits `json:"guests,omitempty"`
}

// GuestUnits is what a container's own systemd says about its units.
type GuestUnits struct {
	// Machine is the container's machine name (containers.<name>).
	Machine string `json:"machine"`
	// State is its manager's state ("running", "degraded", …), or
	// "unreachable" when systemctl -M could not reach it (it is not
	// running; guest.down says so): its units are then not reported.
	State   string      `json:"state"`
	Failed  []UnitState `json:"failed"`
	Watched []UnitState `json:"watched,omitempty"`
}

// GuestUnitsUnreachable is GuestUnits.State for a container systemctl -M
// could not reach.
const GuestUnitsUnreachable = "unreachable"

// UnitState is one systemd unit.
type UnitState struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	LoadState   string `json:"load_state"`
	ActiveState string `json:"active_state"`
	SubState    string `json:"sub_state,omitempty"`
	Restarts    int    `json:"restarts,omitempty"`
}

// Login is one successful login: an SSH authentication accepted by sshd,
// or a new session registered by systemd-logind.
type Login struct {
	User string `json:"user"`
	// Service is "sshd", "sshd-session" or "logind".
	Service string `json:"service"`
	// Method is the SSH authentication method ("publickey", "password").
	Method   string `json:"method,omitempty"`
	RemoteIP string `json:"remote_ip,omitempty"`
	Port     int    `json:"port,omitempty"`
	// Key is the key type and fingerprint sshd logs for publickey logins.
	Key     string `json:"key,omitempty"`
	Session string `json:"session,omitempty"`
	// SessionType and SessionClass are logind's ("tty", "x11", "wayland";
	// "user", "greeter"), when it logs them.
	SessionType  string `json:"session_type,omitempty"`
	SessionClass string `json:"session_class,omitempty"`
	TTY          string `json:"tty,omitempty"`
	PID          int    `json:"pid,omitempty"`
	// LoggedAt is the time of the log line.
	LoggedAt time.Time `json:"logged_at"`
	// LogHost is the host name written in the log line, if any.
	LogHost string `json:"log_host,omitempty"`
	// From is where the line was read: "journal" or a file path.
	From string `json:"from"`
}

// Fail2ban is one fail2ban action (ban, unban, restore_ban) with the number
// of addresses banned per jail after it.
type Fail2ban struct {
	// Action is "ban", "unban" or "restore_ban".
	Action   string    `json:"action"`
	Jail     string    `json:"jail"`
	IP       string    `json:"ip"`
	LoggedAt time.Time `json:"logged_at"`
	// Banned is the number of addresses currently banned per jail.
	Banned map[string]int `json:"banned"`
	From   string         `json:"from"`
}

// Guest is a NixOS container or a MicroVM running on the host.
type Guest struct {
	Name string `json:"name"`
	// Type is "container" or "microvm".
	Type        string `json:"type"`
	Unit        string `json:"unit"`
	ActiveState string `json:"active_state"`
	SubState    string `json:"sub_state,omitempty"`
	// Healthy is true when the unit is active and running.
	Healthy         bool     `json:"healthy"`
	Restarts        int      `json:"restarts"`
	Addresses       []string `json:"addresses,omitempty"`
	MemoryBytes     uint64   `json:"memory_bytes,omitempty"`
	CPUUsageSeconds float64  `json:"cpu_usage_seconds,omitempty"`
	StateDir        string   `json:"state_dir,omitempty"`
	DiskBytes       uint64   `json:"disk_bytes,omitempty"`
	Hypervisor      string   `json:"hypervisor,omitempty"`
	SharedPaths     []string `json:"shared_paths,omitempty"`
	// MemoryMaxBytes is the cgroup's memory.max, when it is not "max".
	MemoryMaxBytes uint64 `json:"memory_max_bytes,omitempty"`
	// MemoryPercent is MemoryBytes of MemoryMaxBytes, when there is a limit.
	MemoryPercent float64 `json:"memory_percent,omitempty"`
	// UptimeSeconds is how long the unit has been active.
	UptimeSeconds float64 `json:"uptime_seconds,omitempty"`
	// Interfaces are the host side of the guest's links (a container's
	// ve-<name>, a MicroVM's taps); RX and TX are counted from the guest's
	// side: what it received is what the host's end sent.
	NetRXBytes uint64   `json:"net_rx_bytes,omitempty"`
	NetTXBytes uint64   `json:"net_tx_bytes,omitempty"`
	Interfaces []string `json:"interfaces,omitempty"`
	// DiskFSBytes and DiskFreeBytes are the size and the space available of
	// the filesystem holding the state directory (with a per-guest ZFS
	// dataset or btrfs quota: the guest's limit); DiskPercent is its use.
	DiskFSBytes   uint64  `json:"disk_fs_bytes,omitempty"`
	DiskFreeBytes uint64  `json:"disk_free_bytes,omitempty"`
	DiskPercent   float64 `json:"disk_percent,omitempty"`
	// SharedSizes are the bound host paths with their apparent size
	// (the Nix store is left out).
	SharedSizes []GuestPath `json:"shared_sizes,omitempty"`
	// StateDirBytes are, for a container, the apparent size of each
	// directory in its /var/lib (its services' state directories), by the
	// path inside the guest ("/var/lib/postgresql").
	StateDirBytes map[string]uint64 `json:"state_dir_bytes,omitempty"`
}

// GuestPath is a host path shared into a guest, with its size.
type GuestPath struct {
	Path  string `json:"path"`
	Bytes uint64 `json:"bytes"`
}

// HTTPCheck is one HTTP(S) request the agent made to a declared domain:
// the status it got, how long it took and, over TLS, when the server's
// certificate expires.
type HTTPCheck struct {
	URL string `json:"url"`
	// OK is true for a response below 400 (redirects are not followed).
	OK         bool    `json:"ok"`
	StatusCode int     `json:"status_code,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	// Error says why there was no response (refused, timeout, TLS).
	Error string `json:"error,omitempty"`
	// TLSNotAfter and TLSDaysLeft are the leaf certificate's expiry.
	TLSNotAfter *time.Time `json:"tls_not_after,omitempty"`
	TLSDaysLeft *float64   `json:"tls_days_left,omitempty"`
}

// ShellSession is a pinkie shell session on the host: one event when it
// starts (Phase "started") and one when it ends ("ended", with the exit
// code or the reason it was cut); a replay of a recording is one event
// ("replayed"). The agent publishes both through its
// OUTBOX, so a session the hub could not see end is still recorded.
type ShellSession struct {
	// Session is the session's id (the token in its subjects).
	Session string `json:"session"`
	// Phase is "started" or "ended", or "replayed" for a replay of the
	// recording of session ReplayOf (which then is the whole session).
	Phase    string `json:"phase"`
	ReplayOf string `json:"replay_of,omitempty"`
	// Operator is who opened it: the operator's public nkey as the hub
	// vouched for it, or "unauthenticated" on a hub without --auth.
	Operator string `json:"operator"`
	// ClientName is the name the operator's client gave its connection.
	ClientName string `json:"client_name,omitempty"`
	// RemoteIP is the operator's address as the hub saw it.
	RemoteIP string `json:"remote_ip,omitempty"`
	// Guest is the NixOS container or MicroVM the session was opened in
	// (pinkie shell --guest); empty: the host itself.
	Guest string `json:"guest,omitempty"`
	// User is the local user the session runs as (in the guest, for a
	// container; empty for a MicroVM's console).
	User string `json:"user"`
	// Command is the command run; empty for an interactive login shell.
	Command string `json:"command,omitempty"`
	TTY     bool   `json:"tty"`
	// StartedAt is when the session started; EndedAt when it ended.
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	// ExitCode is the command's exit code (128+N for a signal N), when it
	// exited.
	ExitCode *int `json:"exit_code,omitempty"`
	// Reason says why a session ended other than by its command's exit:
	// "closed by the operator", "idle timeout", "link lost", "agent stopped".
	Reason   string `json:"reason,omitempty"`
	BytesIn  int64  `json:"bytes_in,omitempty"`
	BytesOut int64  `json:"bytes_out,omitempty"`
}
