package events

// FleetDeclared is the fleet as a flake declares it, read from its plain
// nixosConfigurations by pinkie's fleet export (nixos/lib.nix): which hosts
// and services should exist, so the inventory can tell what is missing.
type FleetDeclared struct {
	// Flake is the flake reference that was evaluated.
	Flake string `json:"flake"`
	// Revision is the flake's git revision, when it is clean.
	Revision string `json:"revision,omitempty"`
	// Hosts are sorted by name.
	Hosts []DeclaredHost `json:"hosts"`
}

// DeclaredHost is one nixosConfigurations entry.
type DeclaredHost struct {
	Name string `json:"name"`
	// System is the Nix platform, e.g. x86_64-linux.
	System     string             `json:"system,omitempty"`
	Deployment DeclaredDeployment `json:"deployment"`
	// Roles are the pinkie roles the host runs: hub, agent, builder.
	Roles []string `json:"roles"`
	// Services are systemd units the host should run: well-known services
	// it enables and those it lists in pinkie.fleet.services.
	Services []string `json:"services"`
	// Domains are the web server virtual hosts it serves.
	Domains []DeclaredDomain `json:"domains"`
	// StateDirs are, per declared service, the directories it owns (its
	// systemd StateDirectory, under /var/lib).
	StateDirs map[string][]string `json:"state_dirs,omitempty"`
	// Guests are its NixOS containers and microvm.nix MicroVMs.
	Guests []DeclaredGuest `json:"guests,omitempty"`
}

// DeclaredGuest is a NixOS container (containers.<name>) or a MicroVM
// (microvm.vms.<name>) of a host, with what its own configuration declares.
type DeclaredGuest struct {
	Name string `json:"name"`
	// Type is "container" or "microvm".
	Type      string              `json:"type"`
	Addresses []string            `json:"addresses,omitempty"`
	Services  []string            `json:"services"`
	Domains   []DeclaredDomain    `json:"domains"`
	StateDirs map[string][]string `json:"state_dirs,omitempty"`
}

// DeclaredDeployment is a host's pinkie.deployment options.
type DeclaredDeployment struct {
	Tags []string `json:"tags"`
	// BuildOn is "local", "target" or a builder host; empty: the fleet
	// default.
	BuildOn string `json:"build_on,omitempty"`
	// TargetHost is how to reach the host; empty: its name.
	TargetHost      string   `json:"target_host,omitempty"`
	RequireExplicit bool     `json:"require_explicit"`
	Goal            string   `json:"goal"`
	HealthChecks    []string `json:"health_checks"`
}

// DeclaredDomain is a virtual host of nginx or caddy.
type DeclaredDomain struct {
	Name    string   `json:"name"`
	URL     string   `json:"url"`
	Server  string   `json:"server"`
	Aliases []string `json:"aliases,omitempty"`
	// Upstreams are where the virtual host proxies to (nginx proxyPass,
	// caddy reverse_proxy): "http://10.233.1.2:8080".
	Upstreams []string `json:"upstreams,omitempty"`
}
