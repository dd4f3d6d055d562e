package tests

// pinkie fleet sync and pinkie fleet export, run as a user runs them: real
// nix evaluating a flake whose nixosConfigurations stand in for hosts
// (nixos/tests/fake-fleet.nix), a real hub with auth.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
	"github.com/pinkiefleet/pinkie/streams"
)

// fleetFlake writes a flake whose nixosConfigurations is the given Nix
// expression file's content and returns its path: reference.
func fleetFlake(t *testing.T, fleetNix string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"flake.nix": "{ outputs = _: { nixosConfigurations = import ./fleet.nix; }; }\n",
		"fleet.nix": fleetNix,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fleetFakeFleet(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nixRepo, "nixos/tests/fake-fleet.nix"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fleetRun runs pinkie with the nix environment and returns stdout, stderr
// and the exit code.
func fleetRun(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(pinkieBin, args...)
	cmd.Env = env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func TestFleetSync(t *testing.T) {
	env := nixEnv(t)
	f := newFleet(t, "web1", "web2")
	f.startHub()
	dir := fleetFlake(t, fleetFakeFleet(t))
	// A git flake, so the event carries its revision.
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "fleet"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	rev, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}

	out, stderr, code := fleetRun(t, env, "fleet", "sync", "--flake", dir, "--server", f.natsURL(), "--nkey", f.operator(), "--json")
	if code != 0 {
		t.Fatalf("fleet sync exit %d:\n%s", code, stderr)
	}
	var res struct {
		ID, Stream, Subject, Flake, Revision string
		Seq                                  uint64
		Hosts, Services, Domains             int
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("fleet sync --json: %v\n%s", err, out)
	}
	if res.Stream != streams.FleetStream || res.Subject != "pinkie.fleet.declared" || res.Hosts != 4 || res.Domains != 5 {
		t.Errorf("fleet sync result = %+v; want stream FLEET, subject pinkie.fleet.declared, 4 hosts, 5 domains", res)
	}
	if res.Revision != strings.TrimSpace(string(rev)) || res.Flake != "git+file://"+dir {
		t.Errorf("flake %q revision %q, want git+file://%s at %s", res.Flake, res.Revision, dir, rev)
	}

	// The event is in FLEET, valid against its schema, and its data is what
	// fleet export prints.
	c := f.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.JS.Stream(ctx, streams.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, events.FleetDeclaredSubject)
	if err != nil {
		t.Fatal(err)
	}
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	e, k, err := set.Validate(m.Data)
	if err != nil {
		t.Fatalf("the stored event is not valid: %v", err)
	}
	if k.Name != "fleet.declared" || e.ID() != res.ID || m.Header.Get(events.HeaderMsgID) != res.ID {
		t.Errorf("stored kind %s id %s (header %s), want fleet.declared %s", k.Name, e.ID(), m.Header.Get(events.HeaderMsgID), res.ID)
	}
	exported, stderr, code := fleetRun(t, env, "fleet", "export", "--format", "json", "--flake", dir)
	if code != 0 {
		t.Fatalf("fleet export exit %d:\n%s", code, stderr)
	}
	var want, got any
	if err := json.Unmarshal([]byte(exported), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(e.Data(), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("published data and fleet export differ (-export +published):\n%s", diff)
	}
	var decl events.FleetDeclared
	if err := json.Unmarshal(e.Data(), &decl); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range decl.Hosts {
		names = append(names, h.Name)
	}
	if diff := cmp.Diff([]string{"builder", "plain", "web1", "web2"}, names); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	if w := decl.Hosts[2]; w.Deployment.BuildOn != "builder" || len(w.Deployment.HealthChecks) != 1 || w.Deployment.Goal != "switch" {
		t.Errorf("web1 deployment = %+v", w.Deployment)
	}
	// Guests, with their own services and domains, state directories and
	// proxy upstreams come through the real nix eval and the event.
	w := decl.Hosts[2]
	if len(w.Guests) != 2 || w.Guests[1].Name != "shop" || w.Guests[1].Type != "container" || strings.Join(w.Guests[1].Addresses, ",") != "10.233.1.2" ||
		!slices.Contains(w.Guests[1].Services, "shop-worker.service") || w.Guests[1].Domains[0].Name != "inner.example.org" ||
		w.Guests[0].Name != "mail" || strings.Join(w.Guests[0].Services, ",") != "postfix.service" {
		t.Errorf("web1 guests = %+v", w.Guests)
	}
	if got := w.StateDirs["php-fpm-shop.service"]; strings.Join(got, ",") != "/var/lib/shop,/var/lib/shop-cache" {
		t.Errorf("web1 state dirs = %v", w.StateDirs)
	}
	if w.Domains[len(w.Domains)-1].Name != "shop.example.org" || !slices.Contains(w.Domains[len(w.Domains)-1].Upstreams, "http://10.233.1.2:8080") {
		t.Errorf("web1 domains = %+v", w.Domains)
	}

	// A reader may read the declared fleet (a dashboard host needs no nix)
	// but not publish one.
	reader := streams.ReaderSeedFile(f.auth)
	dashy, stderr, code := fleetRun(t, env, "fleet", "export", "--from-hub", "--format", "dashy", "--server", f.natsURL(), "--nkey", reader)
	if code != 0 || !strings.Contains(dashy, `url: "https://shop.example.org"`) {
		t.Errorf("fleet export --from-hub with the reader key: exit %d\n%s%s", code, dashy, stderr)
	}
	_, stderr, code = fleetRun(t, env, "fleet", "sync", "--flake", dir, "--server", f.natsURL(), "--nkey", reader)
	if code == 0 || !strings.Contains(stderr, "not permitted") {
		t.Errorf("fleet sync with the reader key: exit %d, stderr %q; want a refusal", code, stderr)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("FLEET holds %d messages, want 1 (the reader's publish must not land)", info.State.Msgs)
	}
}

func TestFleetSyncRefuses(t *testing.T) {
	env := nixEnv(t)
	f := newFleet(t, "a")
	f.startHub()
	tests := []struct {
		name, fleet, want string
	}{
		{"builder not in the fleet", `{ a.config.pinkie.deployment.buildOn = "ghost"; }`,
			`pinkie.deployment.buildOn = "ghost", but there is no host "ghost" in nixosConfigurations`},
		{"does not evaluate", `{ a.config.pinkie.deployment.tags = [ (throw "no tags today") ]; }`, "no tags today"},
		{"not a fleet", `42`, "evaluate the fleet of flake"},
		{"bad tag", `{ a.config.pinkie.deployment.tags = [ "@web" ]; }`, "/tags/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fleetFlake(t, tt.fleet)
			_, stderr, code := fleetRun(t, env, "fleet", "sync", "--flake", "path:"+dir, "--server", f.natsURL(), "--nkey", f.operator())
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, stderr, tt.want)
			}
		})
	}
	if n := countSubjects(t, f.client().JS, streams.FleetStream, "pinkie.fleet.>"); n != 0 {
		t.Errorf("FLEET holds %d messages after refused syncs, want 0", n)
	}
	if _, stderr, code := fleetRun(t, env, "fleet", "export", "--format", "yaml"); code != 2 || !strings.Contains(stderr, "want json or dashy") {
		t.Errorf("--format yaml: exit %d, %q", code, stderr)
	}
	if _, stderr, code := fleetRun(t, env, "fleet", "frobnicate"); code != 2 || !strings.Contains(stderr, "want sync or export") {
		t.Errorf("fleet frobnicate: exit %d, %q", code, stderr)
	}
}

// TestFleetExportDashy compares the dashy configuration with its golden
// file, checks it is YAML that dashy's schema would accept in shape, and
// that -o writes the same.
func TestFleetExportDashy(t *testing.T) {
	env := nixEnv(t)
	dir := fleetFlake(t, fleetFakeFleet(t))
	out, stderr, code := fleetRun(t, env, "fleet", "export", "--format", "dashy", "--flake", "path:"+dir, "--title", "Fleet")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	// The flake's path differs per run: normalise it for the golden file.
	out = strings.ReplaceAll(out, "path:"+dir, "path:FLAKE")
	golden := filepath.Join(nixRepo, "nixos/tests/fake-fleet.dashy.yml")
	if *nixUpdate {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (create it with go test ./tests/ -run %s -update-nix)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), out); diff != "" {
		t.Errorf("dashy output differs from %s (-want +got):\n%s", golden, diff)
	}

	file := filepath.Join(t.TempDir(), "conf.yml")
	if _, stderr, code := fleetRun(t, env, "fleet", "export", "--format", "dashy", "--flake", "path:"+dir, "--title", "Fleet", "-o", file); code != 0 {
		t.Fatalf("-o: exit %d\n%s", code, stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ReplaceAll(string(b), "path:"+dir, "path:FLAKE") != out {
		t.Error("-o FILE wrote something else than stdout")
	}

	// Parse it as YAML (with Python's yaml, where installed) and check the
	// shape dashy reads: pageInfo.title, sections[].name, items[].title/url.
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed: YAML parse check skipped (golden file compared)")
	}
	check := `
import sys, json, yaml
d = yaml.safe_load(open(sys.argv[1]))
out = {"title": d["pageInfo"]["title"], "sections": {s["name"]: [[i["title"], i["url"]] for i in s["items"]] for s in d["sections"]}}
print(json.dumps(out))
`
	pyOut, err := exec.Command("python3", "-c", check, file).CombinedOutput()
	if strings.Contains(string(pyOut), "No module named 'yaml'") {
		t.Skip("python3-yaml not installed: YAML parse check skipped (golden file compared)")
	}
	if err != nil {
		t.Fatalf("the dashy file is not YAML of dashy's shape: %v\n%s", err, pyOut)
	}
	var parsed any
	if err := json.Unmarshal(pyOut, &parsed); err != nil {
		t.Fatal(err)
	}
	wantShape := map[string]any{"title": "Fleet", "sections": map[string]any{
		"web1": []any{[]any{"intranet.lan", "http://intranet.lan"}, []any{"old.example.org", "https://old.example.org"}, []any{"shop.example.org", "https://shop.example.org"}},
		"web2": []any{[]any{"blog.example.net", "https://blog.example.net"}, []any{"status.example.net", "http://status.example.net"}},
	}}
	if diff := cmp.Diff(wantShape, parsed); diff != "" {
		t.Errorf("parsed dashy configuration (-want +got):\n%s", diff)
	}
}

// TestFleetExportFromFile reads a fleet written by --format json, and
// refuses one that does not match the schema.
func TestFleetExportFromFile(t *testing.T) {
	env := nixEnv(t)
	dir := fleetFlake(t, fleetFakeFleet(t))
	js, stderr, code := fleetRun(t, env, "fleet", "export", "--flake", "path:"+dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	file := filepath.Join(t.TempDir(), "fleet.json")
	if err := os.WriteFile(file, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	again, stderr, code := fleetRun(t, env, "fleet", "export", "--from", file)
	if code != 0 || again != js {
		t.Errorf("--from its own output: exit %d, differs: %v\n%s", code, again != js, stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"flake": "x", "hosts": [{"name": "a.b"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := fleetRun(t, env, "fleet", "export", "--from", bad); code != 2 || !strings.Contains(stderr, "/hosts/0") {
		t.Errorf("--from an invalid file: exit %d, %q", code, stderr)
	}
}
