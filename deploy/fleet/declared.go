package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/nixos"
)

// UserError is a flake whose fleet cannot be read or is declared wrongly
// (it does not evaluate, it has problems no single host can see, a bad
// health check): the user's to fix, not pinkie's.
type UserError struct{ Err error }

func (e *UserError) Error() string { return e.Err.Error() }
func (e *UserError) Unwrap() error { return e.Err }

// declaredExport is what nixos/lib.nix's fleet function returns.
type declaredExport struct {
	Version  int                           `json:"version"`
	Hosts    map[string]declaredExportHost `json:"hosts"`
	Problems []string                      `json:"problems"`
}

type declaredExportHost struct {
	Deployment struct {
		Tags            []string        `json:"tags"`
		BuildOn         *string         `json:"buildOn"`
		TargetHost      *string         `json:"targetHost"`
		RequireExplicit bool            `json:"requireExplicit"`
		Goal            string          `json:"goal"`
		HealthChecks    json.RawMessage `json:"healthChecks"`
	} `json:"deployment"`
	System    *string                 `json:"system"`
	Roles     []string                `json:"roles"`
	Services  []string                `json:"services"`
	Domains   []events.DeclaredDomain `json:"domains"`
	StateDirs map[string][]string     `json:"state_dirs"`
	Guests    []events.DeclaredGuest  `json:"guests"`
}

// Declared reads the fleet as the flake declares it (every host with its
// deployment options, roles, services, domains, state directories and
// guests: pinkie's fleet export, nixos/lib.nix) with one nix eval, plus
// nix flake metadata for its resolved URL and revision.
func Declared(ctx context.Context, n nix.Nix, flake string) (events.FleetDeclared, error) {
	var raw json.RawMessage
	if err := n.EvalJSON(ctx, flake+"#nixosConfigurations", nixos.FleetApply(), &raw); err != nil {
		return events.FleetDeclared{}, declaredEvalError(flake, err)
	}
	var x declaredExport
	if err := json.Unmarshal(raw, &x); err != nil {
		return events.FleetDeclared{}, fmt.Errorf("fleet export of %s: %w", flake, err)
	}
	if x.Version != 1 {
		return events.FleetDeclared{}, fmt.Errorf("fleet export of %s: version %d, this pinkie reads version 1", flake, x.Version)
	}
	if len(x.Problems) > 0 {
		return events.FleetDeclared{}, &UserError{fmt.Errorf("the fleet of flake %s has problems; nothing was done:\n  %s", flake, strings.Join(x.Problems, "\n  "))}
	}
	decl := events.FleetDeclared{Flake: flake, Hosts: []events.DeclaredHost{}}
	if md, err := n.FlakeMetadata(ctx, flake); err == nil {
		if md.ResolvedURL != "" {
			decl.Flake = md.ResolvedURL
		}
		decl.Revision = md.Revision
		if decl.Revision == "" {
			decl.Revision = md.Locked.Rev
		}
	}
	names := make([]string, 0, len(x.Hosts))
	for n := range x.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h := x.Hosts[n]
		d := events.DeclaredHost{Name: n, Roles: h.Roles, Services: h.Services, Domains: h.Domains, StateDirs: h.StateDirs, Guests: h.Guests}
		for i := range d.Guests {
			g := &d.Guests[i]
			nonNil(&g.Services)
			if g.Domains == nil {
				g.Domains = []events.DeclaredDomain{}
			}
		}
		if h.System != nil {
			d.System = *h.System
		}
		dep := &d.Deployment
		dep.Tags, dep.RequireExplicit, dep.Goal = h.Deployment.Tags, h.Deployment.RequireExplicit, h.Deployment.Goal
		if h.Deployment.BuildOn != nil {
			dep.BuildOn = *h.Deployment.BuildOn
		}
		if h.Deployment.TargetHost != nil {
			dep.TargetHost = *h.Deployment.TargetHost
		}
		checks, err := healthChecks(h.Deployment.HealthChecks)
		if err != nil {
			return events.FleetDeclared{}, &UserError{fmt.Errorf("flake %s: nixosConfigurations.%s.config.pinkie.deployment.healthChecks: %w", flake, n, err)}
		}
		dep.HealthChecks = checks
		nonNil(&dep.Tags, &d.Roles, &d.Services)
		if d.Domains == nil {
			d.Domains = []events.DeclaredDomain{}
		}
		decl.Hosts = append(decl.Hosts, d)
	}
	return decl, nil
}

// declaredEvalError says why the fleet export did not evaluate, with the
// end of nix's output, where nix explains itself.
func declaredEvalError(flake string, err error) error {
	var ne *nix.Error
	if errors.As(err, &ne) {
		err = fmt.Errorf("%s: exit status %d\n%s", ne.Command, ne.ExitCode, strings.Join(ne.Tail, "\n"))
	}
	return &UserError{fmt.Errorf("evaluate the fleet of flake %s: %w", flake, err)}
}

// healthChecks accepts a list of what healthCheck accepts.
func healthChecks(raw json.RawMessage) ([]string, error) {
	out := []string{}
	if len(raw) == 0 || string(raw) == "null" {
		return out, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("want a list: %w", err)
	}
	for _, it := range items {
		c, err := healthCheck(it)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func nonNil(lists ...*[]string) {
	for _, l := range lists {
		if *l == nil {
			*l = []string{}
		}
	}
}
