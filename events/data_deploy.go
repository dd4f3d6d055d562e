package events

import "time"

// Deploy goals, as switch-to-configuration takes them.
var DeployGoals = []string{"switch", "boot", "test", "dry-activate"}

// DeployRequested asks for a host to be deployed. The request id is the
// event's id. Either StorePath is set (built already, by the requester:
// build_on "local") or the system is built from Flake on BuildOn: "target"
// (the host's own agent, also the default) or another host running the
// builder role.
type DeployRequested struct {
	Host string `json:"host"`
	// Flake is the flake reference, locked where possible
	// (git+https://…?rev=…), so every builder builds the same revision.
	Flake       string `json:"flake,omitempty"`
	Revision    string `json:"revision,omitempty"`
	BuildOn     string `json:"build_on,omitempty"`
	Goal        string `json:"goal,omitempty"`
	StorePath   string `json:"store_path,omitempty"`
	RequestedBy string `json:"requested_by,omitempty"`
	// ExpiresAt is when an agent that has not started the request yet
	// skips it instead (default at the agent: 24 h after the request).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// HealthChecks are shell commands the target runs after activating;
	// any failing one rolls the host back.
	HealthChecks []string `json:"health_checks,omitempty"`
	// RollbackTimeoutSeconds is how long the target's agent has, after
	// switching, to reach the hub again before it rolls back (0: the
	// agent's --rollback-timeout).
	RollbackTimeoutSeconds int `json:"rollback_timeout_seconds,omitempty"`
	// BuildSeconds is how long the requester's local build took.
	BuildSeconds float64 `json:"build_seconds,omitempty"`
}

// DeployPhase is one step of a deploy, reported by the builder or the
// target's agent (and the planner's orders, which carry the same fields).
// It carries the request it belongs to, so every phase can be read alone.
type DeployPhase struct {
	// RequestID is the id of the deploy.requested event.
	RequestID string `json:"request_id"`
	// Host is the target host being deployed.
	Host string `json:"host"`
	// Builder is the host that built (or is asked to build) the system.
	Builder      string     `json:"builder,omitempty"`
	RequestedBy  string     `json:"requested_by,omitempty"`
	Flake        string     `json:"flake,omitempty"`
	Revision     string     `json:"revision,omitempty"`
	BuildOn      string     `json:"build_on,omitempty"`
	Goal         string     `json:"goal,omitempty"`
	StorePath    string     `json:"store_path,omitempty"`
	PreviousPath string     `json:"previous_path,omitempty"`
	RequestedAt  *time.Time `json:"requested_at,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	HealthChecks []string   `json:"health_checks,omitempty"`
	// RollbackTimeoutSeconds: see DeployRequested.
	RollbackTimeoutSeconds int `json:"rollback_timeout_seconds,omitempty"`
	// Cache is where the builder pushed the closure (nix copy --to).
	Cache string `json:"cache,omitempty"`
	// DurationSeconds is how long this phase's step took (built: the
	// build; activated, failed, rolledback: the activation).
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
	// Reason says why a request failed or was skipped.
	Reason string `json:"reason,omitempty"`
	// Log holds the last lines of the failing command's output.
	Log []string `json:"log,omitempty"`
	// FetchedPaths and FetchedBytes are what the target's agent took from
	// the hub's Nix cache for this activation: whole NAR files, and the
	// (compressed) bytes sent to nix.
	FetchedPaths int   `json:"fetched_paths,omitempty"`
	FetchedBytes int64 `json:"fetched_bytes,omitempty"`
}
