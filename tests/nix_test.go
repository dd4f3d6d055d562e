package tests

// The Nix side of pinkie, verified with real nix (Debian's nix-bin) on a
// machine without nixpkgs: every .nix file parses; everything that needs
// only builtins (nixos/lib.nix: the fleet export, option defaults, the
// module's checks, config files and command lines) is evaluated for real;
// the flake's own outputs evaluate with nixpkgs replaced by an empty stub;
// what the module renders is fed to the real pinkie hub and agent; and
// flake.nix's vendorHash is recomputed from go.mod/go.sum. The NixOS VM
// test (nixos/tests/fleet.nix) covers what needs nixpkgs.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/producers"
	"github.com/pinkiefleet/pinkie/streams"
)

// nixVendorLine is flake.nix's vendorHash line.
var nixVendorLine = regexp.MustCompile(`(?m)^(\s*vendorHash\s*=\s*)"[^"]*";`)

var nixUpdate = flag.Bool("update-nix", false, "rewrite the golden files of the Nix tests (nixos/tests/*.json, *.yml)")

// nixConfig is the environment MACHINE.md gives for nix here: flakes on,
// no sandbox, no substituters (offline).
const nixConfig = "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false"

// nixRepo is the repository root, seen from tests/.
const nixRepo = ".."

// nixEnv returns the environment for nix commands, or skips the test when
// nix is missing (scripts/test installs nix-bin).
func nixEnv(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix is not installed (apt-get install nix-bin; scripts/test does it)")
	}
	return append(os.Environ(), "NIX_CONFIG="+nixConfig)
}

// nixRun runs a nix command and returns stdout; it fails the test with
// nix's stderr unless wantErr.
func nixRun(t *testing.T, env []string, dir string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// nixEval evaluates a Nix expression (with the repository's files at
// ./nixos) to JSON and decodes it into v.
func nixEval(t *testing.T, expr string, v any) {
	t.Helper()
	env := nixEnv(t)
	out, stderr, err := nixRun(t, env, nixRepo, "nix", "eval", "--json", "--impure", "--expr", expr)
	if err != nil {
		t.Fatalf("nix eval %s: %v\n%s", expr, err, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("nix eval %s: %v\n%s", expr, err, out)
	}
}

const nixLib = "(import ./nixos/lib.nix)"

// nixGolden compares got (JSON-able) with the golden JSON file, or rewrites
// it with -update-nix.
func nixGolden(t *testing.T, file string, got any) {
	t.Helper()
	path := filepath.Join(nixRepo, file)
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if *nixUpdate {
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (create it with: go test ./tests/ -run %s -update-nix)", err, t.Name())
	}
	var want, have any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if err := json.Unmarshal(b, &have); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Errorf("%s differs (-want +got); if the change is intended, run go test ./tests/ -run %s -update-nix:\n%s", file, t.Name(), diff)
	}
}

func TestNixFilesParse(t *testing.T) {
	env := nixEnv(t)
	var files []string
	err := filepath.WalkDir(nixRepo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "vendor" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".nix") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"flake.nix", "nixos/lib.nix", "nixos/hub.nix", "nixos/agent.nix", "nixos/deployment.nix", "nixos/darwin.nix", "nixos/tests/fleet.nix"} {
		found := false
		for _, f := range files {
			found = found || f == filepath.Join(nixRepo, want)
		}
		if !found {
			t.Errorf("%s is missing", want)
		}
	}
	for _, f := range files {
		t.Run(strings.TrimPrefix(f, nixRepo+"/"), func(t *testing.T) {
			if _, stderr, err := nixRun(t, env, "", "nix-instantiate", "--parse", f); err != nil {
				t.Errorf("nix-instantiate --parse %s: %v\n%s", f, err, stderr)
			}
		})
	}
}

// TestNixParseCatchesErrors shows the parse check can fail.
func TestNixParseCatchesErrors(t *testing.T) {
	env := nixEnv(t)
	bad := filepath.Join(t.TempDir(), "bad.nix")
	if err := os.WriteFile(bad, []byte("{ a = 1; b = ; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := nixRun(t, env, "", "nix-instantiate", "--parse", bad); err == nil {
		t.Fatal("nix-instantiate --parse accepted a broken file")
	}
}

func TestNixFleetExport(t *testing.T) {
	var got map[string]any
	nixEval(t, nixLib+".fleet (import ./nixos/tests/fake-fleet.nix)", &got)
	nixGolden(t, "nixos/tests/fake-fleet.json", got)
}

func TestNixFleetProblems(t *testing.T) {
	host := func(attrs string) string {
		return `{ pkgs.stdenv.hostPlatform.system = "x86_64-linux"; config = ` + attrs + `; }`
	}
	agent := func(name string, builder bool) string {
		return fmt.Sprintf(`services.pinkie.agent = { enable = true; name = %q; builder.enable = %t; };`, name, builder)
	}
	tests := []struct {
		name  string
		fleet string
		want  []string // substrings, one problem each, in order
	}{
		{"clean", `{ a = ` + host(`{ pinkie.deployment.buildOn = "b"; }`) + `; b = ` + host(`{ `+agent("b", true)+` }`) + `; }`, nil},
		{"builder not in fleet", `{ a = ` + host(`{ pinkie.deployment.buildOn = "ghost"; }`) + `; }`,
			[]string{`nixosConfigurations.a: pinkie.deployment.buildOn = "ghost", but there is no host "ghost"`}},
		{"builder without the role", `{ a = ` + host(`{ pinkie.deployment.buildOn = "b"; }`) + `; b = ` + host(`{ `+agent("b", false)+` }`) + `; }`,
			[]string{`but b's agent does not have the builder role: set services.pinkie.agent.builder.enable = true on b`}},
		{"agent named differently", `{ web1 = ` + host(`{ `+agent("web-1", false)+` }`) + `; }`,
			[]string{`nixosConfigurations.web1: its agent calls itself "web-1"`}},
		{"host name with a dot", `{ "web.eu" = ` + host(`{ }`) + `; }`,
			[]string{`nixosConfigurations.web.eu: "web.eu" is not a valid pinkie host name`}},
		{"local and target need no host", `{ a = ` + host(`{ pinkie.deployment.buildOn = "local"; }`) + `; b = ` + host(`{ pinkie.deployment.buildOn = "target"; }`) + `; }`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			nixEval(t, "("+nixLib+".fleet "+tt.fleet+").problems", &got)
			if len(got) != len(tt.want) {
				t.Fatalf("problems = %q, want %d like %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// TestNixDeploymentDefaults pins the defaults every host gets, and checks
// that the option declarations in nixos/deployment.nix take theirs from
// lib.nix, with the names the deploy code reads.
func TestNixDeploymentDefaults(t *testing.T) {
	var defaults map[string]any
	nixEval(t, nixLib+".deploymentDefaults", &defaults)
	want := map[string]any{"tags": []any{}, "buildOn": nil, "targetHost": nil, "requireExplicit": false, "goal": "switch", "healthChecks": []any{}, "rollbackTimeout": nil}
	if diff := cmp.Diff(want, defaults); diff != "" {
		t.Errorf("deploymentDefaults (-want +got):\n%s", diff)
	}
	// deployment.nix under the real module system: its options' defaults,
	// the goal option's enum, its assertions on those defaults.
	stub := fmt.Sprintf(`let
	  e = import ./nixos/tests/eval.nix { lib = import %q; module = ./nixos/deployment.nix; raw = true; };
	in { defaults = e.config.pinkie.deployment;
	     goals = e.options.pinkie.deployment.goal.type.functor.payload.values;
	     assertions = builtins.filter (a: !a.assertion) e.config.assertions; }`, nixpkgsLib(t))
	var got struct {
		Defaults   map[string]any `json:"defaults"`
		Goals      []string       `json:"goals"`
		Assertions []any          `json:"assertions"`
	}
	nixEval(t, stub, &got)
	if diff := cmp.Diff(want, got.Defaults); diff != "" {
		t.Errorf("pinkie.deployment option defaults (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(events.DeployGoals, got.Goals); diff != "" {
		t.Errorf("pinkie.deployment.goal's enum and the deploy code's goals (events.DeployGoals) disagree (-go +nix):\n%s", diff)
	}
	if len(got.Assertions) != 0 {
		t.Errorf("the defaults fail the module's own assertions: %v", got.Assertions)
	}
}

func TestNixProducerNamesMatchGo(t *testing.T) {
	var got []string
	nixEval(t, nixLib+".producerNames", &got)
	var want []string
	for _, s := range producers.All() {
		want = append(want, s.Name)
	}
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nixos/lib.nix producerNames and producers/all.go disagree (-go +nix); update producerNames in nixos/lib.nix:\n%s", diff)
	}
}

func TestNixModuleChecks(t *testing.T) {
	hub := func(over string) string {
		return `{ listen = { nats = "127.0.0.1:4222"; leaf = "127.0.0.1:7422"; http = "127.0.0.1:8080"; }; auth = null; authDir = null;
		  dataDir = "/var/lib/pinkie-hub"; settings = { }; } // ` + over
	}
	agent := func(over string) string {
		return `{ name = "goliath"; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/pinkie.nk";
		  dataDir = "/var/lib/pinkie-agent"; producers = { }; } // ` + over
	}
	dep := func(over string) string { return nixLib + ".deploymentDefaults // " + over }
	tests := []struct {
		name, expr string
		want       []string
	}{
		{"hub on loopback", nixLib + ".hubProblems (" + hub("{ }") + ")", nil},
		{"hub beyond loopback without auth", nixLib + ".hubProblems (" + hub(`{ listen = { nats = "127.0.0.1:4222"; leaf = ":7422"; http = "0.0.0.0:8080"; }; }`) + ")",
			[]string{`services.pinkie.hub.listen.leaf = ":7422" listens beyond loopback, which needs authentication`, `services.pinkie.hub.listen.http = "0.0.0.0:8080" listens beyond loopback`}},
		{"hub beyond loopback with auth", nixLib + ".hubProblems (" + hub(`{ listen = { nats = "[::1]:4222"; leaf = ":7422"; http = "localhost:8080"; }; authDir = "/var/lib/pinkie-keys"; }`) + ")", nil},
		{"hub both auths", nixLib + ".hubProblems (" + hub(`{ auth = { operators = []; readers = []; hosts = {}; }; authDir = "/x"; }`) + ")",
			[]string{"services.pinkie.hub.auth and services.pinkie.hub.authDir are both set"}},
		{"hub bad address", nixLib + ".hubProblems (" + hub(`{ listen = { nats = "4222"; leaf = "127.0.0.1:7422"; http = "127.0.0.1:8080"; }; }`) + ")",
			[]string{`services.pinkie.hub.listen.nats = "4222" is not HOST:PORT`}},
		{"hub data outside /var/lib", nixLib + ".hubProblems (" + hub(`{ dataDir = "/srv/hub"; }`) + ")",
			[]string{`services.pinkie.hub.dataDir = "/srv/hub" is not below /var/lib/`}},
		{"hub literal secrets", nixLib + ".hubProblems (" + hub(`{ settings = { notify.channels.phone = { type = "ntfy"; token = "tk_123"; }; notify.channels.mail = { password_file = "/run/credentials/pinkie-hub.service/smtp"; }; notify.channels.matrix = { access_token = "syt_x"; }; alerts.rules = [ { name = "x"; api_key = "k"; } ]; }; }`) + ")",
			[]string{"settings.alerts.rules[0].api_key holds a literal secret", "settings.notify.channels.matrix.access_token holds a literal secret", "settings.notify.channels.phone.token holds a literal secret"}},
		{"agent fine", nixLib + ".agentProblems (" + agent("{ }") + ")", nil},
		{"agent without hub", nixLib + ".agentProblems (" + agent("{ hubs = [ ]; }") + ")",
			[]string{"services.pinkie.agent.enable is true but services.pinkie.agent.hubs is empty"}},
		{"agent bad hub URL", nixLib + ".agentProblems (" + agent(`{ hubs = [ "hub.lan:7422" "http://hub.lan" ]; }`) + ")",
			[]string{`"hub.lan:7422" is not a hub leaf URL`, `"http://hub.lan" is not a hub leaf URL`}},
		{"agent remote hub without key", nixLib + ".agentProblems (" + agent("{ nkeyFile = null; }") + ")",
			[]string{"services.pinkie.agent.nkeyFile is not set, but the hub \"nats-leaf://hub.lan:7422\" is not on this host"}},
		{"agent local hub without key", nixLib + ".agentProblems (" + agent(`{ nkeyFile = null; hubs = [ "nats-leaf://127.0.0.1:7422" ]; }`) + ")", nil},
		{"agent key in the store", nixLib + ".agentProblems (" + agent(`{ nkeyFile = "/nix/store/abc-goliath.nk"; }`) + ")",
			[]string{"is in the Nix store, which every user can read"}},
		{"agent dotted name", nixLib + ".agentProblems (" + agent(`{ name = "goliath.lan"; }`) + ")",
			[]string{`services.pinkie.agent.name = "goliath.lan" is not a valid pinkie host name`}},
		{"agent unknown producer", nixLib + ".agentProblems (" + agent(`{ producers = { smartctl = { }; smart = { }; }; }`) + ")",
			[]string{`services.pinkie.agent.producers.smartctl: there is no producer "smartctl"`}},
		{"agent literal secret", nixLib + ".agentProblems (" + agent(`{ producers.postgres = { password = "hunter2"; password_file = "/run/agenix/pg"; }; }`) + ")",
			[]string{"services.pinkie.agent.producers.postgres.password holds a literal secret"}},
		{"hub signing key in the store, bad cache budget", nixLib + ".hubProblems (" + hub(`{ nixSigningKeyFile = "/nix/store/abc-nix-signing.sec"; cacheBudget = "20 gigs"; }`) + ")",
			[]string{`services.pinkie.hub.nixSigningKeyFile = "/nix/store/abc-nix-signing.sec" is in the Nix store`, `services.pinkie.hub.cacheBudget = "20 gigs" is not a size`}},
		{"hub relative signing key", nixLib + ".hubProblems (" + hub(`{ nixSigningKeyFile = "nix-signing.sec"; }`) + ")",
			[]string{`services.pinkie.hub.nixSigningKeyFile = "nix-signing.sec" is not an absolute path`}},
		{"hub cache budget", nixLib + ".hubProblems (" + hub(`{ cacheBudget = "20GiB"; nixSigningKeyFile = "/run/agenix/nix.sec"; }`) + ")", nil},
		{"hub metrics token in the store", nixLib + ".hubProblems (" + hub(`{ metricsTokenFile = "/nix/store/abc-token"; }`) + ")",
			[]string{`services.pinkie.hub.metricsTokenFile = "/nix/store/abc-token" is in the Nix store`}},
		{"hub metrics token relative", nixLib + ".hubProblems (" + hub(`{ metricsTokenFile = "token"; }`) + ")",
			[]string{`services.pinkie.hub.metricsTokenFile = "token" is not an absolute path`}},
		{"hub fleet metrics token in the store, relative metrics token", nixLib + ".hubProblems (" + hub(`{ fleetMetricsTokenFile = "/nix/store/abc-token"; metricsTokenFile = "token"; }`) + ")",
			[]string{`services.pinkie.hub.metricsTokenFile = "token" is not an absolute path`, `services.pinkie.hub.fleetMetricsTokenFile = "/nix/store/abc-token" is in the Nix store`}},
		{"hub password hash is no secret literal", nixLib + ".hubProblems (" + hub(`{ settings.dashboard.password_hash = "$argon2id$v=19$m=65536"; }`) + ")", nil},
		{"deployment defaults", nixLib + ".deploymentProblems (" + dep("{ }") + ")", nil},
		{"deployment bad values", nixLib + ".deploymentProblems (" + dep(`{ tags = [ "web" "@eu" "a,b" "eu.west" ]; buildOn = "build er"; targetHost = " "; goal = "reboot"; healthChecks = [ "true" "" ]; rollbackTimeout = 0; }`) + ")",
			[]string{`"@eu" is not a valid tag`, `"a,b" is not a valid tag`, `pinkie.deployment.buildOn = "build er": want "local", "target" or the name of a host`,
				"pinkie.deployment.targetHost is an empty string", `pinkie.deployment.goal = "reboot"`, "pinkie.deployment.healthChecks holds an empty command",
				"pinkie.deployment.rollbackTimeout = 0: want seconds from 1 to 86400"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			nixEval(t, tt.expr, &got)
			if len(got) != len(tt.want) {
				t.Fatalf("problems:\n  %s\nwant %d like %q", strings.Join(got, "\n  "), len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// TestNixAgentConfigRenders checks that the producer options the module
// renders are what the agent's config parser accepts and means.
func TestNixAgentConfigRenders(t *testing.T) {
	var raw json.RawMessage
	nixEval(t, nixLib+`.agentConfig {
	  smart = { enable = false; interval = null; };
	  profile = { enable = null; interval = "6h"; };
	  path = { enable = true; interval = null; paths = [ "/var/lib/postgresql" ]; _module = { args = { }; }; };
	}`, &raw)
	var got any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"producers": map[string]any{
		"smart":   map[string]any{"enabled": false},
		"profile": map[string]any{"interval": "6h"},
		"path":    map[string]any{"enabled": true, "paths": []any{"/var/lib/postgresql"}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("agent config (-want +got):\n%s", diff)
	}
	cfg, err := producers.LoadConfig(raw)
	if err != nil {
		t.Fatalf("the agent refuses the rendered config: %v", err)
	}
	if p := cfg.Producers["smart"]; p.Enabled == nil || *p.Enabled {
		t.Errorf("smart: Enabled = %v, want false", p.Enabled)
	}
	if p := cfg.Producers["profile"]; p.Enabled != nil || p.Interval != 6*time.Hour {
		t.Errorf("profile: Enabled = %v, Interval = %v, want nil, 6h", p.Enabled, p.Interval)
	}
	if p := cfg.Producers["path"]; string(p.Options) != `{"paths":["/var/lib/postgresql"]}` {
		t.Errorf("path options = %s", p.Options)
	}
}

// TestNixModuleCommandLines runs the real hub and agent with the command
// lines and config files nixos/lib.nix renders for the modules (with the
// systemd credentials directory, %d, replaced by the files it would hold),
// and checks the agent's heartbeats reach the hub: a renamed flag or a
// config key the binary does not know fails here, not on a user's host.
func TestNixModuleCommandLines(t *testing.T) {
	nixEnv(t)
	f := newFleet(t, "goliath")
	dir := t.TempDir()
	credDir := filepath.Join(dir, "credentials")
	if err := os.MkdirAll(credDir, 0o700); err != nil {
		t.Fatal(err)
	}
	link := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link(filepath.Join(f.auth, "auth.json"), filepath.Join(credDir, "auth.json"))
	link(streams.HostSeedFile(f.auth, "goliath"), filepath.Join(credDir, "nkey"))
	link(streams.NixSecretKeyFile(f.auth), filepath.Join(credDir, "nix-signing.sec"))

	// The hub, as services.pinkie.hub renders it.
	var hubCfg json.RawMessage
	nixEval(t, nixLib+`.hubConfig { alerts = { repeat_interval = "12h"; }; _module = { }; }`, &hubCfg)
	hubCfgFile := filepath.Join(dir, "pinkie-hub.json")
	if err := os.WriteFile(hubCfgFile, hubCfg, 0o644); err != nil {
		t.Fatal(err)
	}
	var hubArgs []string
	nixEval(t, fmt.Sprintf(`%s.hubArgs { dataDir = %q; listen = { nats = "127.0.0.1:%d"; leaf = "127.0.0.1:%d"; http = "127.0.0.1:%d"; };
	  authDir = "%%d"; configFile = %q; maxStore = 1073741824; maxEventBytes = 65536; syncAlways = false;
	  cacheBudget = "100MiB"; nixSigningKeyFile = "%%d/nix-signing.sec"; leafCompression = "off";
	  hostBudget = { enable = true; eventsPerSecond = 100; bytesPerSecond = 262144; burstEvents = 50000; burstBytes = 67108864; cooldown = "10s"; };
	  logLevel = "debug"; logFormat = "json"; extraArgs = [ ]; }`, nixLib, f.hubData, f.natsPort, f.leafPort, f.httpPor, hubCfgFile), &hubArgs)
	hub := startProc(t, "hub", nixSubstitute(hubArgs, "%d", credDir, "hub")...)
	hub.waitFor("hub started", 30*time.Second)
	if !strings.Contains(hub.out.String(), "budget_bytes=104857600") && !strings.Contains(hub.out.String(), `"budget_bytes":104857600`) {
		t.Errorf("the hub did not take cacheBudget = \"100MiB\":\n%s", grepLines(hub.out.String(), "nix cache"))
	}
	if !strings.Contains(hub.out.String(), "leaf_compression=off") && !strings.Contains(hub.out.String(), `"leaf_compression":"off"`) {
		t.Errorf("the hub did not take leafCompression = \"off\":\n%s", grepLines(hub.out.String(), "hub started"))
	}
	if strings.Contains(hub.out.String(), "no fleet Nix signing key") || strings.Contains(hub.out.String(), "Nix secret key is unusable") {
		t.Errorf("the hub did not take nixSigningKeyFile:\n%s", grepLines(hub.out.String(), "Nix"))
	}

	// The agent, as services.pinkie.agent renders it with deploys on.
	var agentCfg json.RawMessage
	nixEval(t, nixLib+`.agentConfig { heartbeat = { enable = true; interval = null; }; smart = { enable = false; interval = null; }; }`, &agentCfg)
	agentCfgFile := filepath.Join(dir, "pinkie-agent.json")
	if err := os.WriteFile(agentCfgFile, agentCfg, 0o644); err != nil {
		t.Fatal(err)
	}
	help, _ := exec.Command(pinkieBin, "agent", "--help").CombinedOutput()
	builder := strings.Contains(string(help), "-builder")
	var agentArgs []string
	nixEval(t, fmt.Sprintf(`%s.agentArgs { name = "goliath"; hubs = [ %q ]; dataDir = %q; nkeyFile = "%%d/nkey"; configFile = %q;
	  heartbeat = "200ms"; outboxMaxBytes = 104857600; syncAlways = false; logLevel = "debug"; logFormat = "json";
	  activation = "systemd"; builder = %t; pushTo = null; substituter = null; checkSigs = false; deployFlake = null;
	  cacheListen = "127.0.0.1:0"; nixTrustedKey = %q; rollbackTimeout = 30; hubCompression = "s2_fast"; extraArgs = [ ]; }`,
		nixLib, f.leafURL(), t.TempDir(), agentCfgFile, builder, nixFleetKey(t, f.auth)), &agentArgs)
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		known[m[1]] = true
	}
	for _, a := range agentArgs {
		if strings.HasPrefix(a, "--") && !known[strings.TrimPrefix(a, "--")] {
			t.Errorf("the module passes %s, which pinkie agent --help does not list", a)
		}
	}
	agent := startProc(t, "agent", nixSubstitute(agentArgs, "%d", credDir, "agent")...)
	agent.waitFor("agent started", 30*time.Second)
	if !strings.Contains(agent.out.String(), `"hub_compression":"s2_fast"`) {
		t.Errorf("the agent did not take hubCompression = \"s2_fast\":\n%s", grepLines(agent.out.String(), "agent started"))
	}
	c := f.client()
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", 2, 60*time.Second)
	if n := hub.count(`"level":"ERROR"`); n > 0 {
		t.Errorf("the hub logged %d errors:\n%s", n, hub.out.String())
	}
}

// nixFleetKey is the fleet's nix public key that keys init wrote in dir.
func nixFleetKey(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(streams.NixPublicKeyFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// nixSubstitute turns a rendered command line into one for exec: role
// first, systemd's %d replaced.
func nixSubstitute(args []string, spec, value, role string) []string {
	out := []string{role}
	for _, a := range args {
		out = append(out, strings.ReplaceAll(a, spec, value))
	}
	return out
}

// nixFlakeCopy copies flake.nix and nixos/ into a temporary directory, with
// an empty stub flake to stand in for nixpkgs, and returns the flake
// reference and the --override-input arguments.
func nixFlakeCopy(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "pinkie")
	stub := filepath.Join(dir, "nixpkgs-stub")
	for _, d := range []string{src, stub} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(stub, "flake.nix"), []byte("{ outputs = _: { }; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", filepath.Join(nixRepo, "flake.nix"), filepath.Join(nixRepo, "nixos"), src).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return "path:" + src, []string{"--override-input", "nixpkgs", "path:" + stub, "--no-write-lock-file"}
}

// TestNixFlakeOutputs evaluates the flake itself (nixpkgs replaced by an
// empty stub: the outputs that need no nixpkgs must not touch it), and
// checks its lib.fleet is nixos/lib.nix's.
func TestNixFlakeOutputs(t *testing.T) {
	env := nixEnv(t)
	ref, override := nixFlakeCopy(t)
	eval := func(attr, apply string, v any) {
		t.Helper()
		args := append([]string{"nix", "eval", "--json", "--impure", ref + "#" + attr, "--apply", apply}, override...)
		out, stderr, err := nixRun(t, env, "", args...)
		if err != nil {
			t.Fatalf("nix eval %s#%s: %v\n%s", ref, attr, err, stderr)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	eval("nixosModules", "builtins.attrNames", &names)
	if diff := cmp.Diff([]string{"agent", "default", "deployment", "hub"}, names); diff != "" {
		t.Errorf("nixosModules (-want +got):\n%s", diff)
	}
	eval("darwinModules", "builtins.attrNames", &names)
	if diff := cmp.Diff([]string{"default"}, names); diff != "" {
		t.Errorf("darwinModules (-want +got):\n%s", diff)
	}
	eval("lib", "builtins.attrNames", &names)
	for _, want := range []string{"deploymentDefaults", "fleet"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("lib lacks %s: %v", want, names)
		}
	}
	fake, err := filepath.Abs(filepath.Join(nixRepo, "nixos/tests/fake-fleet.nix"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	eval("lib", fmt.Sprintf("l: l.fleet (import %s)", fake), &got)
	nixGolden(t, "nixos/tests/fake-fleet.json", got)
}

// TestNixDeployReadsTheModuleDefaults: the deploy code (pinkie deploy)
// reads a fleet whose hosts carry pinkie.deployment exactly as the module
// declares it, defaults included (buildOn = null means the fleet default).
func TestNixDeployReadsTheModuleDefaults(t *testing.T) {
	env := nixEnv(t)
	dir := t.TempDir()
	flake := `{ outputs = _: { nixosConfigurations =
	  let pinkie = import ./lib.nix; host = d: { config.pinkie.deployment = pinkie.deploymentDefaults // d; }; in {
	    web1 = host { tags = [ "web" ]; };
	    web2 = host { tags = [ "web" ]; buildOn = "target"; goal = "boot"; healthChecks = [ "true" ]; rollbackTimeout = 30; };
	    db = host { requireExplicit = true; };
	  }; }; }`
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", filepath.Join(nixRepo, "nixos/lib.nix"), dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	cmd := exec.Command(pinkieBin, "deploy", "--dry-run", "--json", "--flake", "path:"+dir, "all")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pinkie deploy --dry-run: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{`"web1"`, `"web2"`, `"target"`, `"boot"`} {
		if !strings.Contains(s, want) {
			t.Errorf("the dry run does not mention %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, `"db"`) {
		t.Errorf("all selected db, whose requireExplicit is true:\n%s", s)
	}
}

// TestNixVendorHash fails when flake.nix's vendorHash is not what go.mod
// and go.sum vendor to. Fix: scripts/vendorhash --write.
func TestNixVendorHash(t *testing.T) {
	env := nixEnv(t)
	out, stderr, err := nixRun(t, env, nixRepo, "scripts/vendorhash", "--check")
	if err != nil {
		t.Fatalf("%s%s\nflake.nix's vendorHash is stale: run scripts/vendorhash --write", out, stderr)
	}
	if _, err := os.Stat(filepath.Join(nixRepo, "vendor")); err == nil {
		t.Errorf("scripts/vendorhash left a vendor/ directory in the repository")
	}
}

// TestNixVendorHashScript shows the check can fail and --write repairs it,
// on a copy of flake.nix.
func TestNixVendorHashScript(t *testing.T) {
	env := nixEnv(t)
	b, err := os.ReadFile(filepath.Join(nixRepo, "flake.nix"))
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(t.TempDir(), "flake.nix")
	wrong := "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	text := nixVendorLine.ReplaceAllString(string(b), "${1}\""+wrong+"\";")
	if !strings.Contains(text, wrong) {
		t.Fatal("flake.nix holds no vendorHash line")
	}
	if err := os.WriteFile(stale, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	env = append(env, "PINKIE_FLAKE_NIX="+stale)
	_, stderr, err := nixRun(t, env, nixRepo, "scripts/vendorhash", "--check")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(stderr, "run scripts/vendorhash --write") {
		t.Fatalf("--check on a stale hash: err %v, stderr %q; want exit 1 saying what to run", err, stderr)
	}
	if out, stderr, err := nixRun(t, env, nixRepo, "scripts/vendorhash", "--write"); err != nil {
		t.Fatalf("--write: %v\n%s%s", err, out, stderr)
	}
	if out, stderr, err := nixRun(t, env, nixRepo, "scripts/vendorhash", "--check"); err != nil {
		t.Fatalf("--check after --write: %v\n%s%s", err, out, stderr)
	}
	fixed, _ := os.ReadFile(stale)
	if strings.Contains(string(fixed), wrong) {
		t.Error("--write left the stale hash")
	}
}

// nixModuleEvalApply evaluates module (a path from the repository root,
// e.g. ./nixos/agent.nix) under nixpkgs' real module system with
// nixos/tests/eval.nix: the NixOS (nix-darwin for darwin.nix) options it
// sets declared with their real types, the test host, and set (a module:
// an attribute set, or a function of { lib, ... }). apply (a Nix function,
// or "" for the whole result) picks what to decode into v. It returns nix's
// stderr and error instead of failing when wantErr.
func nixModuleEvalApply(t *testing.T, module, set, apply string, v any, wantErr bool) (string, error) {
	t.Helper()
	env := nixEnv(t)
	platform := "nixos"
	if strings.HasSuffix(module, "darwin.nix") {
		platform = "darwin"
	}
	expr := fmt.Sprintf("import ./nixos/tests/eval.nix { lib = import %q; module = %s; set = %s; platform = %q; }", nixpkgsLib(t), module, set, platform)
	if apply != "" {
		expr = fmt.Sprintf("(%s) (%s)", apply, expr)
	}
	out, stderr, err := nixRun(t, env, nixRepo, "nix", "eval", "--json", "--impure", "--expr", expr)
	if wantErr {
		return stderr, err
	}
	if err != nil {
		t.Fatalf("evaluate %s with %s under the module system: %v\n%s", module, set, err, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("evaluate %s: %v\n%s", module, err, out)
	}
	return stderr, nil
}

// nixModuleEval evaluates module with set under the real module system
// (see nixModuleEvalApply) and returns the whole configuration, with the
// failed assertions' messages under "failed".
func nixModuleEval(t *testing.T, module, set string) map[string]any {
	t.Helper()
	var got map[string]any
	nixModuleEvalApply(t, module, set, "", &got, false)
	return got
}

// nixDig walks a decoded JSON value along keys.
func nixDig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// nixSplitExec splits a systemd ExecStart= written with lib.escapeShellArgs
// into its words: nixpkgs' escapeShellArg quotes a word with single quotes
// (a quote inside as '\\”) only when it holds more than [[:alnum:],._+:@%/-].
func nixSplitExec(s string) []string {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\'':
			quoted = false
		case quoted:
			w.WriteByte(c)
		case c == '\'':
			quoted, inWord = true, true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == ' ':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// nixHasWords reports whether want's words (shell-quoted as in ExecStart)
// appear in a row among got's.
func nixHasWords(got, want string) bool {
	g, w := nixSplitExec(got), nixSplitExec(want)
	for i := 0; i+len(w) <= len(g); i++ {
		if slices.Equal(g[i:i+len(w)], w) {
			return true
		}
	}
	return false
}

// nixHelpFlags lists the flags `pinkie ROLE --help` documents.
func nixHelpFlags(t *testing.T, role string) map[string]bool {
	t.Helper()
	help, _ := exec.Command(pinkieBin, role, "--help").CombinedOutput()
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		known[m[1]] = true
	}
	if len(known) == 0 {
		t.Fatalf("pinkie %s --help lists no flags:\n%s", role, help)
	}
	return known
}

// TestNixModulesEvaluate evaluates the NixOS and nix-darwin modules under
// nixpkgs' real module system (nixos/tests/eval.nix) and checks the
// units they declare: hardening, credentials, firewall, the agent's
// survival settings, the command lines (every flag one the binary has) and
// the assertions.
func TestNixModulesEvaluate(t *testing.T) {
	type check func(t *testing.T, got map[string]any)
	str := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	has := func(path []string, want string) check {
		return func(t *testing.T, got map[string]any) {
			t.Helper()
			if path[len(path)-1] == "ExecStart" {
				if e, _ := nixDig(got, path...).(string); !nixHasWords(e, want) {
					t.Errorf("%s = %s, want the words %q in it", strings.Join(path, "."), e, nixSplitExec(want))
				}
				return
			}
			if s := str(nixDig(got, path...)); !strings.Contains(s, want) {
				t.Errorf("%s = %s, want it to contain %s", strings.Join(path, "."), s, want)
			}
		}
	}
	lacks := func(path []string, unwanted string) check {
		return func(t *testing.T, got map[string]any) {
			t.Helper()
			if s := str(nixDig(got, path...)); strings.Contains(s, unwanted) || path[len(path)-1] == "ExecStart" && nixHasWords(s, unwanted) {
				t.Errorf("%s = %s, want no %s", strings.Join(path, "."), s, unwanted)
			}
		}
	}
	failed := func(want ...string) check {
		return func(t *testing.T, got map[string]any) {
			t.Helper()
			s := str(got["failed"])
			for _, w := range want {
				if !strings.Contains(s, w) {
					t.Errorf("failed assertions %s, want one containing %q", s, w)
				}
			}
			if len(want) == 0 && s != "[]" {
				t.Errorf("failed assertions %s, want none", s)
			}
		}
	}
	execFlags := func(role string, path ...string) check {
		return func(t *testing.T, got map[string]any) {
			t.Helper()
			var args []string
			if role == "darwin" {
				for _, a := range nixDig(got, path...).([]any) {
					args = append(args, a.(string))
				}
				role = "agent"
			} else {
				args = nixSplitExec(nixDig(got, path...).(string))
			}
			// The agent runs as pinkie-agent (pinkie agent alone), the hub
			// as pinkie hub.
			flags := args
			switch {
			case role == "agent" && len(args) > 0 && strings.HasSuffix(args[0], "/bin/pinkie-agent"):
				flags = args[1:]
			case role != "agent" && len(args) > 1 && strings.HasSuffix(args[0], "/bin/pinkie") && args[1] == role:
				flags = args[2:]
			default:
				t.Fatalf("command line %q does not run pinkie %s", args, role)
			}
			known := nixHelpFlags(t, role)
			for _, a := range flags {
				if strings.HasPrefix(a, "--") && !known[strings.TrimPrefix(a, "--")] {
					t.Errorf("the module passes %s, which pinkie %s --help does not list", a, role)
				}
			}
		}
	}
	hubSvc := []string{"systemd", "services", "pinkie-hub", "serviceConfig"}
	agentUnit := []string{"systemd", "services", "pinkie-agent"}
	agentSvc := append(append([]string{}, agentUnit...), "serviceConfig")
	at := func(base []string, k ...string) []string { return append(append([]string{}, base...), k...) }
	tests := []struct {
		name, module, set string
		checks            []check
	}{
		{"hub with declared keys", "./nixos/hub.nix",
			`{ services.pinkie.hub = { enable = true; listen.leaf = ":7422"; openFirewall = true; auth = { operators = [ "UOP" ]; readers = [ ]; hosts.web1 = "UWEB"; };
			   settings.notify.channels.phone = { type = "ntfy"; url = "https://ntfy.sh"; topic = "t"; token_file = "/run/credentials/pinkie-hub.service/ntfy"; };
			   credentials.ntfy = "/run/agenix/ntfy"; }; }`,
			[]check{failed(), execFlags("hub", at(hubSvc, "ExecStart")...),
				has(at(hubSvc, "ExecStart"), `'--auth' '%d'`), has(at(hubSvc, "ExecStart"), `--config /nix/store/00000000000000000000000000000000-pinkie-hub.json`),
				has(at(hubSvc, "LoadCredential"), `"auth.json:/nix/store/`), has(at(hubSvc, "LoadCredential"), `"ntfy:/run/agenix/ntfy"`),
				has(at(hubSvc, "DynamicUser"), "true"), has(at(hubSvc, "ProtectSystem"), "strict"), has(at(hubSvc, "CapabilityBoundingSet"), `[""]`),
				has(at(hubSvc, "Restart"), `"on-failure"`), has(at(hubSvc, "RestartSec"), `"2s"`),
				has([]string{"systemd", "services", "pinkie-hub", "unitConfig", "StartLimitIntervalSec"}, "0"),
				lacks(at(hubSvc, "ExecStart"), "--metrics-token-file"), lacks(at(hubSvc, "ExecStart"), "--fleet-metrics-token-file"),
				has([]string{"networking", "firewall", "allowedTCPPorts"}, "[7422]"),
				lacks([]string{"systemd", "paths"}, "pinkie-hub-auth")}},
		{"hub with a key directory", "./nixos/hub.nix",
			`{ services.pinkie.hub = { enable = true; authDir = "/var/lib/pinkie-keys"; listen.nats = "0.0.0.0:4222"; metricsTokenFile = "/run/agenix/metrics"; fleetMetricsTokenFile = "/run/agenix/fleet-metrics"; }; }`,
			[]check{failed(), has(at(hubSvc, "LoadCredential"), `"auth.json:/var/lib/pinkie-keys/auth.json"`),
				has(at(hubSvc, "LoadCredential"), `"metrics-token:/run/agenix/metrics"`), execFlags("hub", at(hubSvc, "ExecStart")...),
				has(at(hubSvc, "ExecStart"), `'--metrics-token-file' '%d/metrics-token'`),
				has(at(hubSvc, "LoadCredential"), `"fleet-metrics-token:/run/agenix/fleet-metrics"`),
				has(at(hubSvc, "ExecStart"), `'--fleet-metrics-token-file' '%d/fleet-metrics-token'`),
				has([]string{"systemd", "paths", "pinkie-hub-auth", "pathConfig", "PathChanged"}, `"/var/lib/pinkie-keys/auth.json"`),
				has([]string{"systemd", "services", "pinkie-hub-auth-changed", "script"}, "systemctl try-restart pinkie-hub.service"),
				lacks([]string{"networking"}, "4222")}},
		{"hub with a cache budget and the fleet's signing key", "./nixos/hub.nix",
			`{ services.pinkie.hub = { enable = true; authDir = "/var/lib/pinkie-keys"; cacheBudget = "20GiB"; nixSigningKeyFile = "/run/agenix/pinkie-nix.sec"; }; }`,
			[]check{failed(), execFlags("hub", at(hubSvc, "ExecStart")...),
				has(at(hubSvc, "ExecStart"), `'--cache-budget' '20GiB'`), has(at(hubSvc, "ExecStart"), `'--nix-signing-key' '%d/nix-signing.sec'`),
				has(at(hubSvc, "LoadCredential"), `"nix-signing.sec:/run/agenix/pinkie-nix.sec"`)}},
		{"hub node of a cluster", "./nixos/hub.nix",
			`{ services.pinkie.hub = { enable = true; authDir = "/var/lib/pinkie-keys"; cluster = { enable = true; peers = [ "hub2.lan:6222" "hub3.lan:6222" ]; openFirewall = true; }; }; }`,
			[]check{failed(), execFlags("hub", at(hubSvc, "ExecStart")...),
				has(at(hubSvc, "ExecStart"), `'--server-name' 'goliath' '--cluster' '0.0.0.0:6222' '--routes' 'nats-route://hub2.lan:6222,nats-route://hub3.lan:6222'`),
				has(at(hubSvc, "LoadCredential"), `"cluster.secret:/var/lib/pinkie-keys/cluster.secret"`),
				has([]string{"networking", "firewall", "allowedTCPPorts"}, "[6222]")}},
		{"hub cluster of two", "./nixos/hub.nix",
			`{ services.pinkie.hub = { enable = true; authDir = "/var/lib/pinkie-keys"; cluster = { enable = true; peers = [ "hub2.lan:6222" ]; }; }; }`,
			[]check{failed("a cluster needs at least 3 nodes: give the 2 others in peers")}},
		{"hub on a low port", "./nixos/hub.nix",
			`{ services.pinkie.hub = { enable = true; listen.http = "127.0.0.1:80"; }; }`,
			[]check{failed(), has(at(hubSvc, "AmbientCapabilities"), `["CAP_NET_BIND_SERVICE"]`), has(at(hubSvc, "CapabilityBoundingSet"), `["CAP_NET_BIND_SERVICE"]`)}},
		{"hub beyond loopback without keys", "./nixos/hub.nix",
			`{ services.pinkie.hub = { enable = true; listen.leaf = "0.0.0.0:7422"; settings.notify.channels.m.password = "hunter2"; }; }`,
			[]check{failed("services.pinkie.hub.listen.leaf = \\\"0.0.0.0:7422\\\" listens beyond loopback", "settings.notify.channels.m.password holds a literal secret")}},
		{"hub disabled declares nothing", "./nixos/hub.nix", `{ }`,
			[]check{failed(), func(t *testing.T, got map[string]any) {
				for _, k := range []string{"services", "paths"} {
					if units, _ := nixDig(got, "systemd", k).(map[string]any); len(units) != 0 {
						t.Errorf("a disabled hub declares systemd.%s %s", k, str(units))
					}
				}
				if ports := str(nixDig(got, "networking", "firewall", "allowedTCPPorts")); ports != "[]" {
					t.Errorf("a disabled hub opens ports %s", ports)
				}
			}}},
		{"agent that deploys", "./nixos/agent.nix",
			`{ services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/pinkie.nk"; builder.enable = true;
			   deploy.pushTo = "file:///var/cache/pinkie"; deploy.rollbackTimeout = 120; cacheListen = "127.0.0.1:5123"; nixTrustedKey = "pinkie-fleet-1:KEY";
			   producers.path = { enable = true; interval = "1h"; paths = [ "/srv" ]; }; }; }`,
			[]check{failed(), execFlags("agent", at(agentSvc, "ExecStart")...),
				has(at(agentUnit, "restartIfChanged"), "false"), has(at(agentUnit, "unitConfig", "X-StopOnRemoval"), "false"),
				has(at(agentSvc, "KillMode"), `"process"`), has(at(agentSvc, "Restart"), `"always"`),
				has(at(agentSvc, "ExecStart"), `'--nkey' '%d/nkey'`), has(at(agentSvc, "ExecStart"), `'--activation' 'systemd'`),
				has(at(agentSvc, "ExecStart"), `'--builder'`), has(at(agentSvc, "ExecStart"), `'--deploy-push' 'file:///var/cache/pinkie'`),
				has(at(agentSvc, "ExecStart"), `'--rollback-timeout' '120s'`), has(at(agentSvc, "ExecStart"), `'--cache-listen' '127.0.0.1:5123'`),
				has(at(agentSvc, "ExecStart"), `'--nix-trusted-key' 'pinkie-fleet-1:KEY'`),
				has(at(agentSvc, "LoadCredential"), `["nkey:/run/agenix/pinkie.nk"]`),
				has(at(agentSvc, "CapabilityBoundingSet"), `["CAP_SYS_RAWIO","CAP_SYS_ADMIN","CAP_DAC_READ_SEARCH"]`),
				has(at(agentSvc, "ReadWritePaths"), `["/nix/var/nix/profiles","/var/cache/pinkie"]`),
				has(at(agentSvc, "ProtectSystem"), "strict"), lacks(agentSvc, "DynamicUser"),
				has(at(agentUnit, "environment", "NIX_REMOTE"), "daemon"), has(at(agentUnit, "path"), "/run/current-system/sw"),
				has([]string{"systemd", "tmpfiles", "rules"}, "d /var/cache/pinkie 0755 root root -")}},
		{"agent for monitoring only", "./nixos/agent.nix",
			`{ services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/pinkie.nk"; deploy.enable = false;
			   producers.smart = { enable = false; interval = null; }; }; networking.wireguard.enable = true; }`,
			[]check{failed(), execFlags("agent", at(agentSvc, "ExecStart")...),
				has(at(agentSvc, "DynamicUser"), "true"), has(at(agentUnit, "restartIfChanged"), "true"),
				has(at(agentSvc, "AmbientCapabilities"), `["CAP_DAC_READ_SEARCH","CAP_NET_ADMIN"]`),
				lacks(at(agentSvc, "ExecStart"), "--activation"), lacks(at(agentSvc, "ReadWritePaths"), "profiles"),
				lacks(at(agentSvc, "ExecStart"), "--rollback-timeout"), lacks(at(agentSvc, "ExecStart"), "--nix-trusted-key"), lacks(at(agentSvc, "ExecStart"), "--cache-listen"),
				has(at(agentSvc, "MemoryMax"), `"128M"`), lacks(at(agentSvc, "ExecStart"), "--hub-compression")}},
		{"agent far from the hub, with its own memory limit", "./nixos/agent.nix",
			`{ services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/pinkie.nk"; hubCompression = "s2_auto"; memoryMax = "96M"; }; }`,
			[]check{failed(), execFlags("agent", at(agentSvc, "ExecStart")...),
				has(at(agentSvc, "ExecStart"), `'--hub-compression' 's2_auto'`), has(at(agentSvc, "MemoryMax"), `"96M"`)}},
		{"agent on the hub's host", "./nixos/default.nix",
			`{ services.pinkie.hub = { enable = true; listen.leaf = ":7500"; authDir = "/var/lib/pinkie-keys"; }; services.pinkie.agent.enable = true; }`,
			[]check{has(at(agentSvc, "ExecStart"), `'--hub' 'nats-leaf://127.0.0.1:7500'`),
				failed("services.pinkie.agent.nkeyFile is not set, but this host's hub requires authentication")}},
		{"agent with shell sessions", "./nixos/agent.nix",
			`{ services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/pinkie.nk"; shell.enable = true; shell.maxSessions = 2; }; }`,
			[]check{failed(), execFlags("agent", at(agentSvc, "ExecStart")...),
				has(at(agentSvc, "ExecStart"), `'--shell' '--shell-user' 'pinkie-shell' '--shell-max-sessions' '2' '--shell-idle-timeout' '15m'`),
				has(at(agentSvc, "CapabilityBoundingSet"), `"CAP_SETUID","CAP_SETGID","CAP_CHOWN","CAP_KILL"`),
				has([]string{"users", "users", "pinkie-shell", "isNormalUser"}, "true"), lacks(at(agentSvc, "ExecStart"), "--shell-record"),
				lacks(at(agentSvc, "CapabilityBoundingSet"), "CAP_SYS_CHROOT"), has(at(agentSvc, "RestrictNamespaces"), "true"),
				lacks(agentSvc, "MemoryMax")}},
		{"agent with guest shell sessions", "./nixos/agent.nix",
			`{ services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/pinkie.nk"; shell = { enable = true; guests = true; microvmConsole = "/run/vm/{name}.sock"; }; }; }`,
			[]check{failed(), execFlags("agent", at(agentSvc, "ExecStart")...), has(at(agentSvc, "ExecStart"), `'--shell-microvm-console' '/run/vm/{name}.sock'`),
				has(at(agentSvc, "CapabilityBoundingSet"), "CAP_SYS_CHROOT"), has(at(agentSvc, "RestrictNamespaces"), "false")}},
		{"agent with shell sessions as root", "./nixos/agent.nix",
			`{ services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/pinkie.nk"; shell = { enable = true; user = "root"; record = true; }; }; }`,
			[]check{failed(), execFlags("agent", at(agentSvc, "ExecStart")...), has(at(agentSvc, "ExecStart"), `'--shell-user' 'root'`),
				has(at(agentSvc, "ExecStart"), `'--shell-record'`), lacks([]string{"users"}, "pinkie-shell")}},
		{"agent without shell sessions", "./nixos/agent.nix",
			`{ services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/pinkie.nk"; }; }`,
			[]check{failed(), lacks(at(agentSvc, "ExecStart"), "--shell"), lacks(at(agentSvc, "CapabilityBoundingSet"), "CAP_SETUID"), lacks([]string{"users"}, "pinkie-shell")}},
		{"agent with shell sessions but no deploys", "./nixos/agent.nix",
			`{ services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/pinkie.nk"; deploy.enable = false; shell.enable = true; }; }`,
			[]check{failed("services.pinkie.agent.shell.enable needs deploy.enable")}},
		{"agent without a hub", "./nixos/agent.nix", `{ services.pinkie.agent.enable = true; }`,
			[]check{failed("services.pinkie.agent.hubs is empty")}},
		{"deployment options", "./nixos/deployment.nix",
			`{ pinkie.deployment = { tags = [ "web" ]; buildOn = "build er"; }; }`,
			[]check{failed(`pinkie.deployment.buildOn = \"build er\"`)}},
		{"deployment rollback timeout", "./nixos/deployment.nix",
			`{ pinkie.deployment = { rollbackTimeout = 100000; }; }`,
			[]check{failed(`pinkie.deployment.rollbackTimeout = 100000: want seconds from 1 to 86400`)}},
		{"nix-darwin agent", "./nixos/darwin.nix",
			`{ services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/var/lib/pinkie-agent/agent.nk"; producers.smart = { enable = false; interval = null; }; }; }`,
			[]check{failed(), execFlags("darwin", "launchd", "daemons", "pinkie-agent", "serviceConfig", "ProgramArguments"),
				has([]string{"launchd", "daemons", "pinkie-agent", "serviceConfig", "AbandonProcessGroup"}, "true"),
				has([]string{"launchd", "daemons", "pinkie-agent", "serviceConfig", "KeepAlive"}, "true")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nixModuleEval(t, tt.module, tt.set)
			for _, c := range tt.checks {
				c(t, got)
			}
		})
	}
}

// TestNixFlakePackageAndChecks evaluates the flake's packages, apps and the
// VM test with nixpkgs replaced by nixos/tests/nixpkgs-stub (whose
// buildGoModule and runNixOSTest return their arguments), and checks what
// they pass on: the version stamp, vendorHash, the source filter, the VM
// test's nodes, keys and script.
func TestNixFlakePackageAndChecks(t *testing.T) {
	env := nixEnv(t)
	ref, _ := nixFlakeCopy(t)
	stub, err := filepath.Abs(filepath.Join(nixRepo, "nixos/tests/nixpkgs-stub"))
	if err != nil {
		t.Fatal(err)
	}
	eval := func(attr, apply string, v any) {
		t.Helper()
		args := []string{"nix", "eval", "--json", ref + "#" + attr, "--override-input", "nixpkgs", "path:" + stub, "--no-write-lock-file"}
		if apply != "" {
			args = append(args, "--apply", apply)
		}
		out, stderr, err := nixRun(t, env, "", args...)
		if err != nil {
			t.Fatalf("nix eval %s: %v\n%s", attr, err, stderr)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatal(err)
		}
	}
	flake, err := os.ReadFile(filepath.Join(nixRepo, "flake.nix"))
	if err != nil {
		t.Fatal(err)
	}
	m := nixVendorLine.FindStringSubmatch(string(flake))
	if m == nil {
		t.Fatal("flake.nix holds no vendorHash line")
	}
	wantHash := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(m[0], m[1]), `"`), `";`)

	paths := []string{"go.mod", "go.sum", "cmd/pinkie/main.go", "schemas/heartbeat.v1.json", "nixos/lib.nix", "nixos/lib.go", "tests/nix_test.go",
		"docs/nixos.md", "README.md", "flake.nix", "flake.lock", "nixos/tests", "vendor", "pinkie", "result"}
	var pkg struct {
		Pname, Version, VendorHash string
		Ldflags, SubPackages       []string
		DoCheck                    bool
		Env                        map[string]string
		Kept                       []bool
	}
	quoted := make([]string, len(paths))
	for i, p := range paths {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	for _, system := range []string{"x86_64-linux", "aarch64-darwin"} {
		eval("packages."+system+".default", `p: { pname = p.pname; version = p.version; vendorHash = p.vendorHash; ldflags = p.ldflags;
		  subPackages = p.subPackages; doCheck = p.doCheck; env = p.env;
		  kept = map (x: p.src.filter (toString p.src.src + "/" + x) "regular") [ `+strings.Join(quoted, " ")+` ]; }`, &pkg)
		if pkg.Pname != "pinkie" || !strings.HasPrefix(pkg.Version, "0.1.0-") || pkg.VendorHash != wantHash {
			t.Errorf("%s: package %s %s vendorHash %s, want pinkie 0.1.0-… %s", system, pkg.Pname, pkg.Version, pkg.VendorHash, wantHash)
		}
		if diff := cmp.Diff([]string{"cmd/pinkie", "cmd/pinkie-agent"}, pkg.SubPackages); diff != "" {
			t.Errorf("%s: subPackages (-want +got):\n%s", system, diff)
		}
		if !strings.Contains(strings.Join(pkg.Ldflags, " "), "-X main.version="+pkg.Version) || pkg.Env["CGO_ENABLED"] != "0" {
			t.Errorf("%s: ldflags %q, env %v: want the version stamped, cgo off", system, pkg.Ldflags, pkg.Env)
		}
		for i, p := range paths {
			want := i < 7 // the first seven go into the build
			if pkg.Kept[i] != want {
				t.Errorf("%s: the source filter keeps %s: %v, want %v", system, p, pkg.Kept[i], want)
			}
		}
	}
	var program string
	eval("apps.x86_64-linux.default.program", "", &program)
	if !strings.HasSuffix(program, "/bin/pinkie") {
		t.Errorf("apps default program = %q", program)
	}

	var vm struct {
		Name   string
		Nodes  []string
		Script string
		Auth   map[string]any
		Seed   string
	}
	eval("checks.x86_64-linux.vm", `t: { name = t.name; nodes = builtins.attrNames t.nodes; script = t.testScript;
	  auth = (t.nodes.hub { }).services.pinkie.hub.auth;
	  seed = builtins.readFile (t.nodes.alpha { }).environment.etc."pinkie/alpha.nk".source; }`, &vm)
	if diff := cmp.Diff([]string{"alpha", "beta", "hub"}, vm.Nodes); diff != "" {
		t.Errorf("VM test nodes (-want +got):\n%s", diff)
	}
	hosts, _ := vm.Auth["hosts"].(map[string]any)
	if len(hosts) != 2 || hosts["alpha"] == nil || !strings.HasPrefix(vm.Seed, "SU") {
		t.Errorf("VM test keys: auth %v, alpha seed %.2q…", vm.Auth, vm.Seed)
	}
	for _, want := range []string{"pinkie pub deploy.requested host=alpha store_path={next_system} goal=test --server nats://127.0.0.1:4222 --nkey /etc/pinkie/operator.nk",
		"pinkie.deploy.alpha.activated", `pinkie_events_ingested_total\\{{host=\"{name}\",kind=\"heartbeat\"\\}}`} {
		if !strings.Contains(vm.Script, want) {
			t.Errorf("the VM test script lacks %s:\n%s", want, vm.Script)
		}
	}
	var darwinChecks []string
	eval("checks.aarch64-darwin", "builtins.attrNames", &darwinChecks)
	if diff := cmp.Diff([]string{"package"}, darwinChecks); diff != "" {
		t.Errorf("darwin checks (-want +got):\n%s", diff)
	}
}

// TestNixAgentSandboxCanSetProfile checks the premise of the agent unit's
// hardening on this machine's kernel and nix: with /nix read-only except
// the profiles directory (ProtectSystem=strict + ReadWritePaths), a
// capability bounding set of only CAP_SYS_RAWIO, CAP_SYS_ADMIN and
// CAP_DAC_READ_SEARCH, and the store reached through nix-daemon
// (NIX_REMOTE=daemon), root can still set a system profile as the activator
// does; and without NIX_REMOTE=daemon it cannot, which is why the unit sets
// it. (systemd is not PID 1 here: unshare and setpriv stand in for it.)
func TestNixAgentSandboxCanSetProfile(t *testing.T) {
	env := nixEnv(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount namespaces, /nix/var/nix/profiles)")
	}
	for _, tool := range []string{"unshare", "setpriv", "nix-daemon", "nix-build", "nix-env"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	// A nix-daemon to talk to: the running one, or one of our own.
	if _, _, err := nixRun(t, env, "", "nix", "store", "ping", "--store", "daemon"); err != nil {
		d := exec.Command("nix-daemon")
		d.Env = env
		if err := d.Start(); err != nil {
			t.Fatalf("start nix-daemon: %v", err)
		}
		t.Cleanup(func() { _ = d.Process.Kill(); _ = d.Wait() })
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat("/nix/var/nix/daemon-socket/socket"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("nix-daemon did not open its socket")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	drv := filepath.Join(t.TempDir(), "system.nix")
	if err := os.WriteFile(drv, []byte(`derivation { name = "pinkie-sandbox-system"; system = builtins.currentSystem; builder = "/bin/sh";
	  args = [ "-c" "/bin/mkdir -p $out/bin && echo ok > $out/bin/switch-to-configuration" ]; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := nixRun(t, env, "", "nix-build", "--no-out-link", drv)
	if err != nil {
		t.Fatalf("nix-build: %v\n%s", err, stderr)
	}
	system := strings.TrimSpace(out)
	profiles, err := os.MkdirTemp("/nix/var/nix/profiles", "pinkie-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(profiles) })
	sandboxed := func(nixRemote string) (string, error) {
		script := fmt.Sprintf(`set -e
mount --bind /nix /nix && mount -o remount,bind,ro /nix
mount --bind %[1]s %[1]s && mount -o remount,bind,rw %[1]s
if touch /nix/store/.pinkie-sandbox-probe 2>/dev/null; then echo "/nix/store is writable: no sandbox"; exit 3; fi
exec setpriv --bounding-set=-all,+sys_rawio,+sys_admin,+dac_read_search --inh-caps=-all \
  env NIX_REMOTE=%[2]s HOME=/nonexistent XDG_CACHE_HOME=%[3]s nix-env -p %[1]s/system --set %[4]s`,
			profiles, nixRemote, t.TempDir(), system)
		cmd := exec.Command("unshare", "-m", "sh", "-c", script)
		cmd.Env = env
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := sandboxed("daemon"); err != nil {
		t.Fatalf("in the agent's sandbox, nix-env --set through the daemon failed: %v\n%s", err, out)
	}
	if target, err := os.Readlink(filepath.Join(profiles, "system-1-link")); err != nil || target != system {
		t.Fatalf("profile generation 1 -> %q (%v), want %s", target, err, system)
	}
	if out, err := sandboxed("local"); err == nil {
		t.Errorf("nix-env with a local store on a read-only /nix succeeded; the test's sandbox is not one:\n%s", out)
	}
}
