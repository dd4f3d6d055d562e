package tests

import (
	"fmt"
	"strings"
	"testing"
)

// nixAgentOn is an agent setting that passes the module's assertions.
const nixAgentOn = `services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/goliath.nk"; };`

// TestNixModuleSystemRefuses: what only the real module system catches (a
// stand-in that reads option defaults accepts all of these): a value of the
// wrong type, an option that does not exist, a systemd dependency that is
// not a unit name, two modules giving one unit setting different values.
// Each is an evaluation error that names the option.
func TestNixModuleSystemRefuses(t *testing.T) {
	tests := []struct {
		name, module, set string
		want              []string
	}{
		{"a string where an int is required", "./nixos/agent.nix",
			`{ ` + nixAgentOn + ` services.pinkie.agent.shell = { enable = true; maxSessions = "2"; }; }`,
			[]string{"services.pinkie.agent.shell.maxSessions", "is not of type", "positive integer"}},
		{"a list where a string is required", "./nixos/hub.nix",
			`{ services.pinkie.hub = { enable = true; listen.http = [ "127.0.0.1:8080" ]; }; }`,
			[]string{"services.pinkie.hub.listen.http", "is not of type"}},
		{"an enum value it does not list", "./nixos/deployment.nix",
			`{ pinkie.deployment.goal = "reboot"; }`,
			[]string{"pinkie.deployment.goal", "is not of type", `one of "switch", "boot", "test", "dry-activate"`}},
		{"a misspelt option", "./nixos/agent.nix",
			`{ ` + nixAgentOn + ` services.pinkie.agent.hearbeat = "10s"; }`,
			[]string{"services.pinkie.agent.hearbeat", "does not exist"}},
		{"a dependency that is not a unit", "./nixos/agent.nix",
			`{ ` + nixAgentOn + ` systemd.services.pinkie-agent.after = [ "network-online" ]; }`,
			[]string{"systemd.services.pinkie-agent.after", "is not of type"}},
		{"a firewall port out of range", "./nixos/hub.nix",
			`{ services.pinkie.hub = { enable = true; openFirewall = true; }; networking.firewall.allowedTCPPorts = [ 70000 ]; }`,
			[]string{"networking.firewall.allowedTCPPorts", "is not of type", "16 bit unsigned integer"}},
		{"a host's unit setting against the module's", "./nixos/agent.nix",
			`{ ` + nixAgentOn + ` systemd.services.pinkie-agent.serviceConfig.Restart = "on-failure"; }`,
			[]string{"systemd.services.pinkie-agent.serviceConfig.Restart", "conflicting definition values"}},
		{"a producer option that is no JSON", "./nixos/agent.nix",
			`{ ` + nixAgentOn + ` services.pinkie.agent.producers.path.paths = x: x; }`,
			[]string{"services.pinkie.agent.producers.path.paths", "is not of type", "JSON value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stderr, err := nixModuleEvalApply(t, tt.module, tt.set, "", nil, true)
			if err == nil {
				t.Fatalf("the module system accepted %s", tt.set)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("the error does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestNixModuleSystemMergesAndPriorities: definitions from several modules
// combine as on a real NixOS host: a host's own producer units win over
// the module's mkDefault; mkForce wins over the module's unit settings;
// extraArgs, health checks and the unit's capability list given by two
// modules are concatenated; the host's pg_hba lines come after pinkie's
// mkBefore line.
func TestNixModuleSystemMergesAndPriorities(t *testing.T) {
	type got struct {
		Exec      string   `json:"exec"`
		Restart   string   `json:"restart"`
		Units     []string `json:"units"`
		Caps      []string `json:"caps"`
		Checks    []string `json:"checks"`
		Auth      string   `json:"auth"`
		Failed    []string `json:"failed"`
		UnitsHave []string `json:"unitsHave"`
	}
	const apply = `c: let a = c.systemd.services.pinkie-agent; in {
	  exec = a.serviceConfig.ExecStart; restart = a.serviceConfig.Restart; caps = a.serviceConfig.CapabilityBoundingSet;
	  units = c.services.pinkie.agent.producers.systemd.units; checks = c.pinkie.deployment.healthChecks;
	  auth = c.services.postgresql.authentication; failed = c.failed; }`
	// Two modules besides the test's: one a fleet shares, one of the host.
	const fleetModule = `{ services.pinkie.agent = { extraArgs = [ "--log-level" "debug" ]; extraHealthChecks = [ "systemctl is-active nginx" ]; }; }`
	tests := []struct {
		name, set string
		check     func(t *testing.T, g got)
	}{
		{"a host's units win over the module's mkDefault",
			`{ ` + nixAgentOn + ` services.postgresql.enable = true; services.pinkie.agent.producers.systemd.units = [ "shop.service" ]; }`,
			func(t *testing.T, g got) {
				if strings.Join(g.Units, ",") != "shop.service" {
					t.Errorf("units = %q, want only the host's shop.service (the module's list is a mkDefault)", g.Units)
				}
			}},
		{"without the host's, the module's default",
			`{ ` + nixAgentOn + ` services.postgresql.enable = true; }`,
			func(t *testing.T, g got) {
				if strings.Join(g.Units, ",") != "pinkie-agent.service,postgresql.service" {
					t.Errorf("units = %q, want the declared pinkie-agent.service,postgresql.service", g.Units)
				}
			}},
		{"mkForce wins over the module's unit setting",
			`{ lib, ... }: { ` + nixAgentOn + ` systemd.services.pinkie-agent.serviceConfig.Restart = lib.mkForce "on-failure"; }`,
			func(t *testing.T, g got) {
				if g.Restart != "on-failure" {
					t.Errorf("Restart = %q, want the host's mkForce on-failure", g.Restart)
				}
			}},
		{"lists from two modules are concatenated",
			`{ imports = [ (` + fleetModule + `) ]; ` + nixAgentOn + ` services.pinkie.agent.extraArgs = [ "--name" "goliath" ];
			   pinkie.deployment.healthChecks = [ "true" ];
			   systemd.services.pinkie-agent.serviceConfig.CapabilityBoundingSet = [ "CAP_NET_RAW" ]; }`,
			func(t *testing.T, g got) {
				if !nixHasWords(g.Exec, "--log-level debug") || !nixHasWords(g.Exec, "--name goliath") {
					t.Errorf("ExecStart = %s, want both modules' extraArgs", g.Exec)
				}
				if strings.Join(g.Checks, "|") != "systemctl is-active nginx|true" && strings.Join(g.Checks, "|") != "true|systemctl is-active nginx" {
					t.Errorf("healthChecks = %q, want the fleet module's and the host's", g.Checks)
				}
				caps := strings.Join(g.Caps, ",")
				if !strings.Contains(caps, "CAP_SYS_RAWIO") || !strings.Contains(caps, "CAP_NET_RAW") {
					t.Errorf("CapabilityBoundingSet = %s, want the module's and the host's (a repeatable unit setting)", caps)
				}
			}},
		{"pinkie's pg_hba line goes first (mkBefore)",
			`{ ` + nixAgentOn + ` services.postgresql = { enable = true; authentication = "local all all trust\n"; }; }`,
			func(t *testing.T, g got) {
				var lines []string
				for _, l := range strings.Split(g.Auth, "\n") {
					if strings.TrimSpace(l) != "" {
						lines = append(lines, l)
					}
				}
				if len(lines) != 2 || strings.TrimSpace(lines[0]) != "local all pinkie peer map=pinkie" || lines[1] != "local all all trust" {
					t.Errorf("authentication = %q, want pinkie's peer line, then the host's", g.Auth)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g got
			nixModuleEvalApply(t, "./nixos/agent.nix", tt.set, apply, &g, false)
			if len(g.Failed) > 0 {
				t.Fatalf("failed assertions: %q", g.Failed)
			}
			tt.check(t, g)
		})
	}
}

// TestNixAgentWatchesContainerUnits: the services a host's NixOS containers
// declare (their own configuration's well-known services and
// pinkie.fleet.services) become the systemd producer's machines, which it
// reads with systemctl -M; then the agent's sandbox lets it join a
// container (setns into mnt/pid/user, CAP_SYS_CHROOT, CAP_SYS_PTRACE).
// Without containers nothing changes; a host's own machines win.
func TestNixAgentWatchesContainerUnits(t *testing.T) {
	type got struct {
		Machines   map[string][]string `json:"machines"`
		Caps       []string            `json:"caps"`
		Namespaces any                 `json:"namespaces"`
		Failed     []string            `json:"failed"`
	}
	const apply = `c: let a = c.systemd.services.pinkie-agent.serviceConfig; in {
	  machines = c.agentConfig.producers.systemd.machines or null; caps = a.CapabilityBoundingSet; namespaces = a.RestrictNamespaces; failed = c.failed; }`
	const containers = `containers.web = { localAddress = "10.233.1.2/24"; config = { services.nginx.enable = true; pinkie.fleet.services = [ "shop" ]; }; };
	  containers.empty.config = { };`
	tests := []struct {
		name, set  string
		machines   string
		namespaces string
	}{
		{"containers with services", `{ ` + nixAgentOn + ` ` + containers + ` }`, "map[web:[nginx.service shop.service]]", "mnt pid user"},
		{"no containers", `{ ` + nixAgentOn + ` }`, "map[]", "true"},
		{"the host's own machines win", `{ ` + nixAgentOn + ` ` + containers + ` services.pinkie.agent.producers.systemd.machines = { web = [ "app.service" ]; }; }`,
			"map[web:[app.service]]", "mnt pid user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g got
			nixModuleEvalApply(t, "./nixos/agent.nix", tt.set, apply, &g, false)
			if len(g.Failed) > 0 {
				t.Fatalf("failed assertions: %q", g.Failed)
			}
			if fmt.Sprint(g.Machines) != tt.machines {
				t.Errorf("machines = %v, want %s", g.Machines, tt.machines)
			}
			if fmt.Sprint(g.Namespaces) != tt.namespaces {
				t.Errorf("RestrictNamespaces = %v, want %s", g.Namespaces, tt.namespaces)
			}
			caps := strings.Join(g.Caps, ",")
			if joins := strings.Contains(caps, "CAP_SYS_CHROOT") && strings.Contains(caps, "CAP_SYS_PTRACE"); joins != (tt.namespaces != "true") {
				t.Errorf("CapabilityBoundingSet = %s: joining containers %v, want %v", caps, joins, tt.namespaces != "true")
			}
		})
	}
}

// TestNixFleetExportOfEvaluatedHosts: the fleet export (lib.fleet, what
// `pinkie fleet sync` publishes) over hosts evaluated by the real module
// system with pinkie's whole module (nixos/default.nix), not hand-written
// configurations: declared services, the state directories their merged
// units give them, domains, a container's services, roles, tags, and the
// cross-host problem of an agent named unlike its configuration.
func TestNixFleetExportOfEvaluatedHosts(t *testing.T) {
	expr := fmt.Sprintf(`let
	  lib = import %q;
	  host = set: { config = (import ./nixos/tests/eval.nix { inherit lib set; module = ./nixos/default.nix; raw = true; }).config;
	    pkgs.stdenv.hostPlatform.system = "x86_64-linux"; };
	  agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/host.nk"; };
	in (import ./nixos/lib.nix).fleet {
	  web1 = host ({ lib, ... }: {
	    networking.hostName = "web1";
	    services.pinkie.agent = agent;
	    pinkie.deployment.tags = [ "web" ];
	    pinkie.fleet.services = [ "shop" ];
	    systemd.services.shop = { wantedBy = [ "multi-user.target" ]; serviceConfig.StateDirectory = "shop"; };
	    # A second module's word on the agent's unit: the export sees the merge.
	    systemd.services.pinkie-agent.serviceConfig.StateDirectory = lib.mkForce "pinkie-agent-web";
	    services.nginx = { enable = true; virtualHosts."shop.example.org" = { forceSSL = true; locations."/".proxyPass = "http://10.233.1.2:8080"; }; };
	    containers.web = { localAddress = "10.233.1.2/24"; config = { services.postgresql.enable = true; }; };
	  });
	  build1 = host { networking.hostName = "build1"; services.pinkie.agent = agent // { name = "builder"; builder.enable = true; }; };
	}`, nixpkgsLib(t))
	var got struct {
		Hosts map[string]struct {
			Deployment struct{ Tags []string }
			Roles      []string
			Services   []string
			StateDirs  map[string][]string `json:"state_dirs"`
			Domains    []struct{ Name, URL string }
			Guests     []struct {
				Name, Type string
				Services   []string
				Addresses  []string
			}
		}
		Problems []string
	}
	nixEval(t, expr, &got)
	web := got.Hosts["web1"]
	if s := fmt.Sprint(web.Services); s != "[nginx.service pinkie-agent.service shop.service]" {
		t.Errorf("web1 services = %s", s)
	}
	if s := fmt.Sprint(web.StateDirs); s != "map[pinkie-agent.service:[/var/lib/pinkie-agent-web] shop.service:[/var/lib/shop]]" {
		t.Errorf("web1 state_dirs = %s, want the merged units' (mkForce wins)", s)
	}
	if len(web.Domains) != 1 || web.Domains[0].URL != "https://shop.example.org" {
		t.Errorf("web1 domains = %+v", web.Domains)
	}
	if len(web.Guests) != 1 || web.Guests[0].Name != "web" || fmt.Sprint(web.Guests[0].Services) != "[postgresql.service]" || fmt.Sprint(web.Guests[0].Addresses) != "[10.233.1.2]" {
		t.Errorf("web1 guests = %+v", web.Guests)
	}
	if fmt.Sprint(web.Deployment.Tags) != "[web]" || fmt.Sprint(web.Roles) != "[agent]" || fmt.Sprint(got.Hosts["build1"].Roles) != "[agent builder]" {
		t.Errorf("tags %v, roles %v / %v", web.Deployment.Tags, web.Roles, got.Hosts["build1"].Roles)
	}
	if len(got.Problems) != 1 || !strings.Contains(got.Problems[0], `nixosConfigurations.build1: its agent calls itself "builder"`) {
		t.Errorf("problems = %q, want build1's agent name", got.Problems)
	}
}
