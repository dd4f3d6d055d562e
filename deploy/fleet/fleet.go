// Package fleet reads a fleet from a flake's plain nixosConfigurations
// (each host's config.pinkie.deployment, in one nix eval), selects hosts
// with selectors (names, globs, @tags, intersections, exclusions, all) and
// decides where each is built and with which goal. Selection and placement
// are pure.
package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
)

// Host is one nixosConfiguration with its deployment attributes, defaulted.
type Host struct {
	Name string `json:"name"`
	// Tags group hosts for selectors (@web).
	Tags []string `json:"tags"`
	// BuildOn is "local", "target" or a builder host ("" = fleet default).
	BuildOn string `json:"build_on,omitempty"`
	// TargetHost is how to reach the host (informational for pinkie: the
	// agent connects out to the hub).
	TargetHost string `json:"target_host,omitempty"`
	// RequireExplicit leaves the host out of "all" and globs.
	RequireExplicit bool   `json:"require_explicit,omitempty"`
	Goal            string `json:"goal,omitempty"`
	// HealthChecks are commands the agent runs after activating.
	HealthChecks []string `json:"health_checks,omitempty"`
	// RollbackTimeout is how long, in seconds, the agent has after the
	// switch to reach the hub again before it rolls back (0: the agent's
	// default).
	RollbackTimeout int `json:"rollback_timeout,omitempty"`
}

// Fleet is the hosts of a flake, sorted by name.
type Fleet struct {
	Flake string `json:"flake"`
	Hosts []Host `json:"hosts"`
}

// Host returns the named host.
func (f Fleet) Host(name string) (Host, bool) {
	for _, h := range f.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// Names lists the hosts' names.
func (f Fleet) Names() []string {
	names := make([]string, len(f.Hosts))
	for i, h := range f.Hosts {
		names[i] = h.Name
	}
	return names
}

// evalApply keeps only the attributes pinkie reads, so a NixOS module with
// more options (or functions) under pinkie.deployment still evaluates to
// JSON.
const evalApply = `cs: builtins.mapAttrs (n: c: builtins.intersectAttrs { tags = 0; buildOn = 0; targetHost = 0; requireExplicit = 0; goal = 0; healthChecks = 0; rollbackTimeout = 0; } ((c.config or {}).pinkie.deployment or {})) cs`

// rawHost is config.pinkie.deployment as nix eval prints it.
type rawHost struct {
	Tags            []string          `json:"tags"`
	BuildOn         *string           `json:"buildOn"`
	TargetHost      *string           `json:"targetHost"`
	RequireExplicit *bool             `json:"requireExplicit"`
	Goal            *string           `json:"goal"`
	HealthChecks    []json.RawMessage `json:"healthChecks"`
	RollbackTimeout *int              `json:"rollbackTimeout"`
}

// Read evaluates flake's nixosConfigurations once and returns the fleet.
func Read(ctx context.Context, n nix.Nix, flake string) (Fleet, error) {
	var raw map[string]json.RawMessage
	if err := n.EvalJSON(ctx, flake+"#nixosConfigurations", evalApply, &raw); err != nil {
		return Fleet{}, fmt.Errorf("read the fleet from flake %s: %w", flake, err)
	}
	return Parse(flake, raw)
}

// Parse turns the evaluated attributes into a fleet, checking each value.
func Parse(flake string, raw map[string]json.RawMessage) (Fleet, error) {
	f := Fleet{Flake: flake}
	for name, b := range raw {
		if err := events.ValidHost(name); err != nil {
			return Fleet{}, fmt.Errorf("flake %s: nixosConfigurations.%s: %w", flake, name, err)
		}
		var r rawHost
		if err := json.Unmarshal(b, &r); err != nil {
			return Fleet{}, fmt.Errorf("flake %s: nixosConfigurations.%s.config.pinkie.deployment: %w", flake, name, err)
		}
		h := Host{Name: name, Tags: r.Tags}
		if h.Tags == nil {
			h.Tags = []string{}
		}
		where := func(attr string) string {
			return fmt.Sprintf("flake %s: nixosConfigurations.%s.config.pinkie.deployment.%s", flake, name, attr)
		}
		for _, t := range h.Tags {
			if t == "" || strings.ContainsAny(t, "@&!,* ") {
				return Fleet{}, fmt.Errorf("%s: tag %q: use letters, digits, '-', '_' or '.'", where("tags"), t)
			}
		}
		if r.BuildOn != nil {
			h.BuildOn = *r.BuildOn
			if err := checkBuildOn(h.BuildOn); err != nil {
				return Fleet{}, fmt.Errorf("%s: %w", where("buildOn"), err)
			}
		}
		if r.TargetHost != nil {
			h.TargetHost = *r.TargetHost
		}
		if r.RequireExplicit != nil {
			h.RequireExplicit = *r.RequireExplicit
		}
		if r.Goal != nil {
			h.Goal = *r.Goal
			if err := CheckGoal(h.Goal); err != nil {
				return Fleet{}, fmt.Errorf("%s: %w", where("goal"), err)
			}
		}
		for _, c := range r.HealthChecks {
			cmd, err := healthCheck(c)
			if err != nil {
				return Fleet{}, fmt.Errorf("%s: %w", where("healthChecks"), err)
			}
			h.HealthChecks = append(h.HealthChecks, cmd)
		}
		if r.RollbackTimeout != nil {
			if *r.RollbackTimeout < 1 || *r.RollbackTimeout > 86400 {
				return Fleet{}, fmt.Errorf("%s: %d seconds: want 1 to 86400 (or null for the agent's default)", where("rollbackTimeout"), *r.RollbackTimeout)
			}
			h.RollbackTimeout = *r.RollbackTimeout
		}
		f.Hosts = append(f.Hosts, h)
	}
	sort.Slice(f.Hosts, func(i, j int) bool { return f.Hosts[i].Name < f.Hosts[j].Name })
	for _, h := range f.Hosts {
		if h.BuildOn != "" && h.BuildOn != "local" && h.BuildOn != "target" {
			if _, ok := f.Host(h.BuildOn); !ok {
				return Fleet{}, fmt.Errorf("flake %s: nixosConfigurations.%s.config.pinkie.deployment.buildOn: builder host %q is not in the fleet (hosts: %s)", flake, h.Name, h.BuildOn, strings.Join(f.Names(), ", "))
			}
		}
	}
	return f, nil
}

// healthCheck accepts a command string, or an attribute set with a
// command attribute.
func healthCheck(b json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(b, &s); err == nil && s != "" {
		return s, nil
	}
	var o struct {
		Command string `json:"command"`
	}
	if err := json.Unmarshal(b, &o); err == nil && o.Command != "" {
		return o.Command, nil
	}
	return "", fmt.Errorf("%s: want a command string (or { command = \"…\"; })", b)
}

// CheckGoal says whether goal is one switch-to-configuration takes.
func CheckGoal(goal string) error {
	if slices.Contains(events.DeployGoals, goal) {
		return nil
	}
	return fmt.Errorf("unknown goal %q: want one of %s", goal, strings.Join(events.DeployGoals, ", "))
}

func checkBuildOn(b string) error {
	if b == "local" || b == "target" {
		return nil
	}
	if err := events.ValidHost(b); err != nil {
		return fmt.Errorf("build location %q: want local, target or a builder host name", b)
	}
	return nil
}

// Plan is one host's deploy as it will be requested.
type Plan struct {
	Host string `json:"host"`
	// BuildOn is "local", "target" or the builder host.
	BuildOn      string   `json:"build_on"`
	Goal         string   `json:"goal"`
	HealthChecks []string `json:"health_checks,omitempty"`
	// RollbackTimeout is the host's, in seconds (0: the agent's default).
	RollbackTimeout int `json:"rollback_timeout,omitempty"`
}

// Place decides each selected host's build location and goal.
// Precedence: the flags (buildOn, goal; "" = not given) > the host's own
// attributes > the fleet defaults (local, switch). A builder host must be
// in the fleet; a host named as its own builder builds on target.
func Place(f Fleet, hosts []string, buildOn, goal string) ([]Plan, error) {
	if buildOn != "" {
		if err := checkBuildOn(buildOn); err != nil {
			return nil, fmt.Errorf("--build-on: %w", err)
		}
		if buildOn != "local" && buildOn != "target" {
			if _, ok := f.Host(buildOn); !ok {
				return nil, fmt.Errorf("--build-on: builder host %q is not in the fleet (hosts: %s)", buildOn, strings.Join(f.Names(), ", "))
			}
		}
	}
	if goal != "" {
		if err := CheckGoal(goal); err != nil {
			return nil, fmt.Errorf("--goal: %w", err)
		}
	}
	var plans []Plan
	for _, name := range hosts {
		h, ok := f.Host(name)
		if !ok {
			return nil, fmt.Errorf("host %q is not in the fleet of %s (hosts: %s)", name, f.Flake, strings.Join(f.Names(), ", "))
		}
		p := Plan{Host: name, BuildOn: "local", Goal: "switch", HealthChecks: h.HealthChecks, RollbackTimeout: h.RollbackTimeout}
		if h.BuildOn != "" {
			p.BuildOn = h.BuildOn
		}
		if buildOn != "" {
			p.BuildOn = buildOn
		}
		if p.BuildOn == name {
			p.BuildOn = "target"
		}
		if h.Goal != "" {
			p.Goal = h.Goal
		}
		if goal != "" {
			p.Goal = goal
		}
		plans = append(plans, p)
	}
	return plans, nil
}
