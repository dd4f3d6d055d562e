package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

// nixpkgsLib is nixpkgs' lib that MACHINE.md provides next to the
// repository (../shared/nixpkgs-lib/lib from the main checkout, one level
// further up from a worktree), or skips the test.
func nixpkgsLib(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(nixRepo)
	if err != nil {
		t.Fatal(err)
	}
	for dir := root; dir != "/"; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, "shared", "nixpkgs-lib", "lib")
		if _, err := os.Stat(filepath.Join(p, "default.nix")); err == nil {
			return p
		}
	}
	t.Skip("nixpkgs' lib is not at ../shared/nixpkgs-lib/lib (see MACHINE.md)")
	return ""
}

// nixHubModuleApply picks, from the hub module evaluated under the real
// module system (nixModuleEvalApply), the failed assertions, the firewall
// ports, ExecStart and LoadCredential.
const nixHubModuleApply = `c: {
  failed = c.failed;
  ports = c.networking.firewall.allowedTCPPorts;
  exec = c.systemd.services.pinkie-hub.serviceConfig.ExecStart or "";
  credentials = c.systemd.services.pinkie-hub.serviceConfig.LoadCredential or [ ];
}`

type nixHubEvaluated struct {
	Failed      []string `json:"failed"`
	Ports       []int    `json:"ports"`
	Exec        string   `json:"exec"`
	Credentials []string `json:"credentials"`
}

func nixEvalHubModule(t *testing.T, set string) nixHubEvaluated {
	t.Helper()
	var got nixHubEvaluated
	nixModuleEvalApply(t, "./nixos/hub.nix", "{ imports = [ ("+set+`) ]; networking.hostName = "hub1"; }`, nixHubModuleApply, &got, false)
	return got
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestNixHubClusterModule evaluates services.pinkie.hub.cluster under
// nixpkgs' real module system: the flags it renders (each one `pinkie hub
// --help` lists), the route password and TLS files as credentials, the
// route port in the firewall, and the assertions on a wrong peer list.
func TestNixHubClusterModule(t *testing.T) {
	const keys = `authDir = "/var/lib/pinkie-keys"; listen.leaf = "0.0.0.0:7422";`
	tests := []struct {
		name, set   string
		failed      []string
		exec, creds []string
		ports       []int
	}{
		{"the two others as peers", `{ services.pinkie.hub = { enable = true; ` + keys + ` cluster = { enable = true; peers = [ "hub2.lan:6222" "hub3.lan:6222" ]; openFirewall = true; }; }; }`,
			nil, []string{"'--server-name' 'hub1'", "'--cluster' '0.0.0.0:6222'", "'--routes' 'nats-route://hub2.lan:6222,nats-route://hub3.lan:6222'"},
			[]string{"cluster.secret:/var/lib/pinkie-keys/cluster.secret"}, []int{6222}},
		{"every node as peers, TLS on routes", `{ services.pinkie.hub = { enable = true; ` + keys + ` tlsCert = "/var/lib/acme/hub1/cert.pem"; tlsKey = "/run/agenix/hub1.key";
		   cluster = { enable = true; name = "hub1"; listen = "10.0.0.1:7000"; peers = [ "hub1.lan:7000" "hub2.lan:7000" "hub3.lan:7000" ]; replicas = 3; caFile = "/etc/pinkie/ca.pem"; wait = "5m"; }; }; }`,
			nil, []string{"'--tls-cert' '%d/tls-cert.pem' '--tls-key' '%d/tls-key.pem'", "'--cluster' '10.0.0.1:7000'", "'--replicas' '3'", "'--cluster-ca' '%d/cluster-ca.pem'", "'--cluster-wait' '5m'",
				"'--routes' 'nats-route://hub1.lan:7000,nats-route://hub2.lan:7000,nats-route://hub3.lan:7000'"},
			[]string{"tls-cert.pem:/var/lib/acme/hub1/cert.pem", "tls-key.pem:/run/agenix/hub1.key", "cluster-ca.pem:/etc/pinkie/ca.pem"}, nil},
		{"declared keys with a secret file", `{ services.pinkie.hub = { enable = true; auth = { operators = [ "UOP" ]; }; cluster = { enable = true; peers = [ "[fd00::2]:6222" "[fd00::3]:6222" ]; secretFile = "/run/agenix/cluster.secret"; }; }; }`,
			nil, []string{"'--routes' 'nats-route://[fd00::2]:6222,nats-route://[fd00::3]:6222'"}, []string{"cluster.secret:/run/agenix/cluster.secret"}, nil},
		{"one peer", `{ services.pinkie.hub = { enable = true; ` + keys + ` cluster = { enable = true; peers = [ "hub2.lan:6222" ]; }; }; }`,
			[]string{"a cluster needs at least 3 nodes: give the 2 others in peers (host:port of their cluster.listen; 1 given)"}, nil, nil, nil},
		{"itself and one other", `{ services.pinkie.hub = { enable = true; ` + keys + ` cluster = { enable = true; peers = [ "hub1:6222" "hub2:6222" ]; }; }; }`,
			[]string{"a cluster needs at least 3 nodes: give the 2 others in peers (host:port of their cluster.listen; 1 given)"}, nil, nil, nil},
		{"bad peers", `{ services.pinkie.hub = { enable = true; ` + keys + ` cluster = { enable = true; name = ""; peers = [ "hub2.lan" "nats-route://hub3.lan:6222" "hub4.lan:6222" "hub4.lan:6222" ]; }; }; }`,
			[]string{`cluster.name = \"\" is not a server name`, `cluster.peers: \"hub2.lan\" is not HOST:PORT`,
				`cluster.peers: \"nats-route://hub3.lan:6222\" is not HOST:PORT: give each other node's cluster.listen address as host:port, e.g. \"hub2.lan:6222\" (without the scheme`,
				`cluster.peers lists \"hub4.lan:6222\" more than once`}, nil, nil, nil},
		{"too many replicas, no auth, CA without TLS", `{ services.pinkie.hub = { enable = true; cluster = { enable = true; listen = "127.0.0.1:6222"; peers = [ "127.0.0.1:6223" "127.0.0.1:6224" ]; replicas = 5; caFile = "/etc/ca.pem"; }; }; }`,
			[]string{"cluster.replicas = 5: want 1 to 3", "cluster.enable needs services.pinkie.hub.auth or services.pinkie.hub.authDir", "cluster.caFile is set but services.pinkie.hub.tlsCert is not"}, nil, nil, nil},
		{"declared keys without a secret file, secrets in the store", `{ services.pinkie.hub = { enable = true; auth = { operators = [ "UOP" ]; }; tlsCert = "/etc/c.pem"; cluster = { enable = true; peers = [ "a:1" "b:1" ]; }; }; }`,
			[]string{"cluster.secretFile is not set", "tlsCert and services.pinkie.hub.tlsKey go together"}, nil, nil, nil},
		{"secret file in the store", `{ services.pinkie.hub = { enable = true; ` + keys + ` tlsCert = "/etc/c.pem"; tlsKey = "/nix/store/abc-key.pem"; cluster = { enable = true; peers = [ "a:1" "b:1" ]; secretFile = "/nix/store/abc-cluster.secret"; }; }; }`,
			[]string{"tlsKey = \\\"/nix/store/abc-key.pem\\\" is in the Nix store", "cluster.secretFile = \\\"/nix/store/abc-cluster.secret\\\" is in the Nix store"}, nil, nil, nil},
		{"fleet metrics token", `{ services.pinkie.hub = { enable = true; ` + keys + ` fleetMetricsTokenFile = "/run/agenix/fleet-metrics"; }; }`,
			nil, []string{"'--fleet-metrics-token-file' '%d/fleet-metrics-token'"}, []string{"fleet-metrics-token:/run/agenix/fleet-metrics"}, nil},
		{"fleet metrics token in the store", `{ services.pinkie.hub = { enable = true; ` + keys + ` fleetMetricsTokenFile = "/nix/store/abc-token"; }; }`,
			[]string{"fleetMetricsTokenFile = \\\"/nix/store/abc-token\\\" is in the Nix store"}, nil, nil, nil},
		{"no cluster: no cluster flags or port", `{ services.pinkie.hub = { enable = true; ` + keys + ` cluster.peers = [ "hub2.lan:6222" ]; cluster.openFirewall = true; }; }`,
			nil, nil, nil, nil},
	}
	known := nixHelpFlags(t, "hub")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nixEvalHubModule(t, tt.set)
			failed, _ := json.Marshal(got.Failed)
			for _, w := range tt.failed {
				if !strings.Contains(string(failed), w) {
					t.Errorf("failed assertions:\n  %s\nwant one containing %s", strings.Join(got.Failed, "\n  "), w)
				}
			}
			if len(tt.failed) == 0 && len(got.Failed) > 0 {
				t.Errorf("failed assertions:\n  %s\nwant none", strings.Join(got.Failed, "\n  "))
			}
			if len(tt.failed) > 0 {
				return
			}
			// nixpkgs' escapeShellArgs quotes only what needs it; no
			// argument here has a space.
			execLine := strings.ReplaceAll(got.Exec, "'", "")
			for _, a := range strings.Fields(execLine) {
				if strings.HasPrefix(a, "--") && !known[strings.TrimPrefix(a, "--")] {
					t.Errorf("the module passes %s, which pinkie hub --help does not list", a)
				}
			}
			for _, w := range tt.exec {
				if !strings.Contains(execLine, strings.ReplaceAll(w, "'", "")) {
					t.Errorf("ExecStart = %s, want it to contain %s", got.Exec, w)
				}
			}
			if tt.exec == nil && (strings.Contains(got.Exec, "--cluster") || strings.Contains(got.Exec, "--routes")) {
				t.Errorf("ExecStart = %s, want no cluster flags", got.Exec)
			}
			for _, w := range tt.creds {
				if !strings.Contains(strings.Join(got.Credentials, " "), w) {
					t.Errorf("LoadCredential = %q, want %s", got.Credentials, w)
				}
			}
			if fmt.Sprint(got.Ports) != fmt.Sprint(tt.ports) && !(len(got.Ports) == 0 && len(tt.ports) == 0) {
				t.Errorf("firewall opens %v, want %v", got.Ports, tt.ports)
			}
		})
	}
}

// TestNixClusterCommandLines starts three real hub processes with the
// command lines nixos/lib.nix renders for three nodes of
// services.pinkie.hub.cluster (hub1 given every node as peers, hub2 and
// hub3 the two others) on 127.0.0.1, with the systemd credentials
// directory holding what the module passes (auth.json, cluster.secret),
// and checks they form one cluster with three replicas.
func TestNixClusterCommandLines(t *testing.T) {
	nixEnv(t)
	f := newFleet(t, "goliath")
	c := newHubCluster(f, 3)
	credDir := filepath.Join(t.TempDir(), "credentials")
	if err := os.MkdirAll(credDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"auth.json", streams.ClusterSecretFileName} {
		b, err := os.ReadFile(filepath.Join(f.auth, name))
		if err != nil {
			t.Fatalf("keys init wrote no %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(credDir, name), b, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	addr := func(n *hubNode) string { return fmt.Sprintf("127.0.0.1:%d", n.cluPort) }
	for i, n := range c.nodes {
		var peers []string
		for _, o := range c.nodes {
			if o != n || i == 0 {
				peers = append(peers, fmt.Sprintf("%q", addr(o)))
			}
		}
		cluster := fmt.Sprintf(`{ enable = true; name = %q; listen = %q; peers = [ %s ]; replicas = null; openFirewall = false; secretFile = null; caFile = null; wait = "90s"; }`,
			n.name, addr(n), strings.Join(peers, " "))
		var problems []string
		nixEval(t, fmt.Sprintf(`%s.hubClusterProblems { auth = null; authDir = "/var/lib/pinkie-keys"; cluster = %s; }`, nixLib, cluster), &problems)
		if len(problems) > 0 {
			t.Fatalf("%s: the module would refuse its cluster options: %q", n.name, problems)
		}
		var args []string
		nixEval(t, fmt.Sprintf(`%s.hubArgs { dataDir = %q; listen = { nats = "127.0.0.1:%d"; leaf = "127.0.0.1:%d"; http = "127.0.0.1:%d"; };
		  authDir = "%%d"; configFile = null; maxStore = 1073741824; maxEventBytes = 65536; syncAlways = false;
		  logLevel = "info"; logFormat = "text"; extraArgs = [ ]; cluster = %s; }`, nixLib, n.data, n.natsPort, n.leafPort, n.httpPort, cluster), &args)
		n.p = startProc(t, n.name, nixSubstitute(args, "%d", credDir, "hub")...)
	}
	for _, n := range c.nodes {
		n.p.waitFor("hub started", 120*time.Second)
		if !strings.Contains(grepLines(n.p.out.String(), "hub started"), "replicas=3") {
			t.Errorf("%s: %s, want replicas=3", n.name, grepLines(n.p.out.String(), "hub started"))
		}
	}
	if r, cur := natsStreamReplicas(t, c.natsURLs(), f.operator(), streams.HostsStream); r != 3 || cur != 3 {
		t.Errorf("nats stream info HOSTS: %d replicas, %d current; want 3 and 3", r, cur)
	}
	leaders := 0
	for _, n := range c.nodes {
		leaders += n.p.count("this node leads the hub")
	}
	if leaders == 0 {
		t.Errorf("no node took the hub's lead")
	}
}
