package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
	"github.com/pinkiefleet/pinkie/streams"
)

type deployJSON struct {
	Flake    string `json:"flake"`
	Revision string `json:"revision"`
	Hosts    []struct {
		Host      string   `json:"host"`
		BuildOn   string   `json:"build_on"`
		Goal      string   `json:"goal"`
		RequestID string   `json:"request_id"`
		StorePath string   `json:"store_path"`
		Phases    []string `json:"phases"`
		Outcome   string   `json:"outcome"`
		Reason    string   `json:"reason"`
	} `json:"hosts"`
}

func parseDeployJSON(t *testing.T, out string) deployJSON {
	t.Helper()
	var r deployJSON
	// The JSON is the last line; stderr (warnings) may precede it.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("deploy --json printed %q: %v", out, err)
	}
	return r
}

// deployFleet is the end-to-end setup: a hub, three agents (goliath and
// koishi tagged web; tower a builder) and the test flake.
type deployFleet struct {
	*fleet
	flake    *deployFlake
	data     map[string]string
	profiles map[string]string
	agents   map[string]*proc
	cache    string
}

func newDeployFleet(t *testing.T) *deployFleet {
	t.Helper()
	deployNeedNix(t)
	f := &deployFleet{fleet: newFleet(t, "goliath", "koishi", "tower"), data: map[string]string{}, profiles: map[string]string{}, agents: map[string]*proc{}}
	f.flake = newDeployFlake(t, map[string]deployTestHost{
		"goliath": {tags: []string{"web", "eu"}},
		"koishi":  {tags: []string{"web"}, healthChecks: []string{"true"}},
		"tower":   {tags: []string{"build"}, requireExplicit: true},
	})
	f.cache = t.TempDir()
	f.startHub()
	for _, h := range []string{"goliath", "koishi", "tower"} {
		f.data[h] = t.TempDir()
		f.profiles[h] = filepath.Join(t.TempDir(), "profiles", "system")
		f.startDeployAgent(h)
	}
	return f
}

func (f *deployFleet) startDeployAgent(host string) {
	f.t.Helper()
	extra := []string{"--producers", "heartbeat", "--heartbeat", "1h", "--system-profile", f.profiles[host], "--activation", "direct"}
	if host == "tower" {
		extra = append(extra, "--builder", "--deploy-push", "file://"+f.cache)
	}
	f.agents[host] = f.startAgent(host, f.data[host], "", extra...)
	f.agents[host].waitFor("hub connected", 30*time.Second)
}

func (f *deployFleet) deploy(args ...string) (string, int) {
	f.t.Helper()
	return runPinkie(f.t, append([]string{"deploy", "--server", f.natsURL(), "--nkey", f.operator(), "--flake", f.flake.dir}, args...)...)
}

func (f *deployFleet) profile(host string) string {
	p, err := filepath.EvalSymlinks(f.profiles[host])
	if err != nil {
		return ""
	}
	return p
}

// TestDeployEndToEnd deploys @web with each placement, reads the
// last-deploy record, fails an activation and sees it rolled back.
func TestDeployEndToEnd(t *testing.T) {
	f := newDeployFleet(t)
	c := f.client()
	sentBy := func(requestID string) map[string]string {
		// phase → host that sent it, for one request
		got := map[string]string{}
		for _, se := range readStream(t, c.JS, streams.DeployStream, "pinkie.deploy.>") {
			if _, ok := events.DeployPhaseOf(se.kind.Name); !ok {
				continue
			}
			d, err := events.DecodeData(se.event, se.kind)
			if err != nil {
				t.Fatal(err)
			}
			if d.(*events.DeployPhase).RequestID == requestID {
				host, _, _ := events.HostFromSubject(se.subject)
				got[strings.TrimPrefix(se.kind.Name, "deploy.")] = host
			}
		}
		return got
	}
	placements := []struct {
		buildOn string
		// builtBy is the host expected to report built ("" for local:
		// the requester built it and no agent builds).
		builtBy func(target string) string
	}{
		{"local", func(string) string { return "" }},
		{"target", func(target string) string { return target }},
		{"tower", func(string) string { return "tower" }},
	}
	for i, p := range placements {
		t.Run("build on "+p.buildOn, func(t *testing.T) {
			if i > 0 {
				f.flake.commit()
			}
			out, code := f.deploy("@web", "--build-on", p.buildOn, "--wait", "--json", "--timeout", "90s")
			if code != 0 {
				t.Fatalf("deploy @web --build-on %s: exit %d\n%s", p.buildOn, code, out)
			}
			res := parseDeployJSON(t, out)
			if len(res.Hosts) != 2 || res.Revision == "" {
				t.Fatalf("deploy @web: want goliath and koishi at a revision, got %+v", res)
			}
			for _, h := range res.Hosts {
				if h.Outcome != "activated" || h.BuildOn != p.buildOn {
					t.Errorf("%s: outcome %s build_on %s (%s), want activated on %s", h.Host, h.Outcome, h.BuildOn, h.Reason, p.buildOn)
				}
				rev := "r" + string(rune('0'+f.flake.rev))
				if !strings.HasSuffix(h.StorePath, "-nixos-system-"+h.Host+"-"+rev) {
					t.Errorf("%s: store path %s is not revision %s", h.Host, h.StorePath, rev)
				}
				if got := f.profile(h.Host); got != h.StorePath {
					t.Errorf("%s: system profile points at %q, want %s", h.Host, got, h.StorePath)
				}
				if !contains(f.flake.stcLog(), h.Host+" switch "+rev) {
					t.Errorf("%s: switch-to-configuration switch %s did not run; log:\n%s", h.Host, rev, strings.Join(f.flake.stcLog(), "\n"))
				}
				phases := sentBy(h.RequestID)
				want := p.builtBy(h.Host)
				if phases["built"] != want || phases["build.started"] != want {
					t.Errorf("%s: built by %q (started by %q), want %q; phases %v", h.Host, phases["built"], phases["build.started"], want, phases)
				}
				if phases["activated"] != h.Host || phases["activation.started"] != h.Host {
					t.Errorf("%s: activation phases from %v", h.Host, phases)
				}
			}
			if p.buildOn == "tower" {
				narinfos, _ := filepath.Glob(filepath.Join(f.cache, "*.narinfo"))
				if len(narinfos) < 2 {
					t.Errorf("builder pushed %d narinfos to its cache, want both closures", len(narinfos))
				}
			}
		})
	}

	t.Run("last-deploy shows the times", func(t *testing.T) {
		reader := streams.ReaderSeedFile(f.auth)
		var out string
		var code int
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			out, code = runPinkie(t, "last-deploy", "--server", f.natsURL(), "--nkey", reader, "--json")
			if code == 0 && strings.Contains(out, `"goliath"`) && strings.Contains(out, `"koishi"`) && strings.Count(out, `"status":"ok"`) == 2 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code != 0 {
			t.Fatalf("last-deploy: exit %d, want 0\n%s", code, out)
		}
		var res struct {
			Hosts []struct {
				Host       string             `json:"host"`
				Status     string             `json:"status"`
				AgeSeconds *float64           `json:"age_seconds"`
				Record     *lastdeploy.Record `json:"record"`
			} `json:"hosts"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("last-deploy --json: %v\n%s", err, out)
		}
		for _, h := range res.Hosts {
			if h.Record == nil || h.Record.LastSuccess == nil || h.AgeSeconds == nil || *h.AgeSeconds > 120 {
				t.Fatalf("%s: no recent success in %s", h.Host, out)
			}
			if h.Record.LastSuccess.StorePath != f.profile(h.Host) || h.Record.LastSuccess.BuildOn != "tower" || h.Record.LastSuccess.RequestedBy == "" {
				t.Errorf("%s: last success %+v, want the tower build now in the profile", h.Host, h.Record.LastSuccess)
			}
		}
		// Human output with the ages; a declared host never deployed is
		// beyond both limits (exit 3); a tight --warn-after gives exit 1.
		out, code = runPinkie(t, "last-deploy", "--server", f.natsURL(), "--nkey", reader)
		if code != 0 || !strings.Contains(out, "goliath") || !strings.Contains(out, "ok") {
			t.Errorf("last-deploy: exit %d\n%s", code, out)
		}
		out, code = runPinkie(t, "last-deploy", "--server", f.natsURL(), "--nkey", reader, "--hosts", "tower")
		if code != 3 || !strings.Contains(out, "tower has never been deployed") {
			t.Errorf("last-deploy --hosts tower: exit %d, want 3 naming tower\n%s", code, out)
		}
		out, code = runPinkie(t, "last-deploy", "--server", f.natsURL(), "--nkey", reader, "--warn-after", "0s", "--fail-after", "1h")
		if code != 1 || !strings.Contains(out, "goliath last deployed") || !strings.Contains(out, "beyond --warn-after 0s") {
			t.Errorf("last-deploy --warn-after 0s: exit %d, want 1 with a warning\n%s", code, out)
		}
		out, code = runPinkie(t, "last-deploy", "--server", f.natsURL(), "--nkey", reader, "--warn-after", "soon")
		if code != 2 || !strings.Contains(out, `--warn-after: "soon"`) {
			t.Errorf("last-deploy --warn-after soon: exit %d, want 2\n%s", code, out)
		}
		out, code = runPinkie(t, "last-deploy", "--server", "nats://127.0.0.1:1", "--nkey", reader)
		if code != 2 {
			t.Errorf("last-deploy without a hub: exit %d, want 2\n%s", code, out)
		}
		// The shipped CI job (plain shell form) passes now, and fails (3)
		// once a declared host was never deployed.
		for _, tc := range []struct {
			extra []string
			want  int
		}{{nil, 0}, {[]string{"PINKIE_FLAKE=" + f.flake.dir}, 3}} {
			cmd := exec.Command("sh", "../scripts/ci-last-deploy.sh")
			cmd.Env = append(os.Environ(), append([]string{"PINKIE=" + pinkieBin, "PINKIE_SERVER=" + f.natsURL(), "PINKIE_NKEY=" + reader}, tc.extra...)...)
			b, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tc.want {
				t.Errorf("scripts/ci-last-deploy.sh %v: exit %d (%v), want %d\n%s", tc.extra, code, err, tc.want, b)
			}
		}
		// The nats CLI shows the same record.
		if nats := natsCLIPath(); nats != "" {
			cmd := exec.Command(nats, "--server", f.natsURL(), "--nkey", reader, "kv", "get", lastdeploy.Bucket, "goliath", "--raw")
			b, err := cmd.CombinedOutput()
			var r lastdeploy.Record
			if err != nil || json.Unmarshal(b, &r) != nil || r.LastSuccess == nil || r.LastSuccess.StorePath != f.profile("goliath") {
				t.Errorf("nats kv get %s goliath: %v\n%s", lastdeploy.Bucket, err, b)
			}
		}
	})

	t.Run("failing activation rolls back", func(t *testing.T) {
		before := f.profile("koishi")
		f.flake.commit()
		f.flake.failOnDemand("koishi", f.flake.rev)
		out, code := f.deploy("koishi", "--wait")
		if code != 1 {
			t.Fatalf("deploy of a failing koishi: exit %d, want 1\n%s", code, out)
		}
		for _, want := range []string{"rolledback", "failing on demand", "restored the previous generation"} {
			if !strings.Contains(out, want) {
				t.Errorf("deploy --wait output lacks %q:\n%s", want, out)
			}
		}
		if got := f.profile("koishi"); got != before {
			t.Errorf("koishi's profile points at %s after the rollback, want the previous %s", got, before)
		}
		log := f.flake.stcLog()
		rev := "r" + string(rune('0'+f.flake.rev))
		if len(log) < 2 || log[len(log)-2] != "koishi switch "+rev+" FAIL" || log[len(log)-1] != "koishi switch r"+string(rune('0'+f.flake.rev-1)) {
			t.Errorf("switch-to-configuration log does not show the failure then the restore:\n%s", strings.Join(log, "\n"))
		}
		// The record keeps the last success and reports the failed attempt.
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, _ = runPinkie(t, "last-deploy", "--server", f.natsURL(), "--nkey", f.operator(), "--json")
			if strings.Contains(out, `"phase":"rolledback"`) || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(out, `"outcome":"failed"`) || !strings.Contains(out, `"phase":"rolledback"`) || !strings.Contains(out, before) {
			t.Errorf("last-deploy does not show koishi's rolled-back attempt and its last success:\n%s", out)
		}
	})

	t.Run("offline agent gets its latest request", func(t *testing.T) {
		f.agents["goliath"].stop(syscall.SIGTERM)
		old := f.profile("goliath")
		// Two requests while goliath is away: the first by hand (pub),
		// the second by deploy. Only the second may be activated.
		out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", f.operator(), "deploy.requested", "host=goliath", "store_path="+old, "goal=test", "--json")
		if code != 0 {
			t.Fatalf("pub: %d\n%s", code, out)
		}
		var first struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(out), &first)
		out, code = f.deploy("goliath", "--json")
		if code != 0 {
			t.Fatalf("deploy goliath while offline: exit %d\n%s", code, out)
		}
		second := parseDeployJSON(t, out).Hosts[0]
		f.startDeployAgent("goliath")
		waitCount(t, c.JS, streams.DeployStream, "pinkie.deploy.goliath.activated", 4, 60*time.Second)
		phases := map[string]map[string]string{} // request → phase → reason
		for _, se := range readStream(t, c.JS, streams.DeployStream, "pinkie.deploy.goliath.>") {
			if _, ok := events.DeployPhaseOf(se.kind.Name); !ok {
				continue
			}
			d, _ := events.DecodeData(se.event, se.kind)
			p := d.(*events.DeployPhase)
			if phases[p.RequestID] == nil {
				phases[p.RequestID] = map[string]string{}
			}
			phases[p.RequestID][strings.TrimPrefix(se.kind.Name, "deploy.")] = p.Reason
		}
		if r, ok := phases[first.ID]["skipped"]; !ok || !strings.Contains(r, "superseded by request "+second.RequestID) {
			t.Errorf("the superseded request %s: phases %v, want skipped as superseded by %s", first.ID, phases[first.ID], second.RequestID)
		}
		if _, ok := phases[first.ID]["activation.started"]; ok {
			t.Errorf("the superseded request was activated")
		}
		if _, ok := phases[second.RequestID]["activated"]; !ok {
			t.Errorf("the latest request %s was not activated: %v", second.RequestID, phases[second.RequestID])
		}
		if got := f.profile("goliath"); got != second.StorePath {
			t.Errorf("goliath's profile %s, want %s", got, second.StorePath)
		}
		for _, l := range f.flake.stcLog() {
			if strings.HasPrefix(l, "goliath test") {
				t.Errorf("the superseded goal=test request ran: %q", l)
			}
		}
	})

	t.Run("non-operator key is refused", func(t *testing.T) {
		before := countSubjects(t, c.JS, streams.DeployStream, "pinkie.deploy.*.requested")
		reader := streams.ReaderSeedFile(f.auth)
		if out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", reader, "--timeout", "3s", "deploy.requested", "host=goliath"); code == 0 {
			t.Errorf("reader published a deploy request:\n%s", out)
		}
		if out, code := runPinkie(t, "deploy", "--server", f.natsURL(), "--nkey", reader, "--flake", f.flake.dir, "goliath", "--build-on", "target"); code == 0 || !strings.Contains(out, "not permitted") {
			t.Errorf("reader's deploy: exit %d\n%s", code, out)
		}
		if after := countSubjects(t, c.JS, streams.DeployStream, "pinkie.deploy.*.requested"); after != before {
			t.Errorf("DEPLOY holds %d requests after the reader's attempts, had %d", after, before)
		}
	})

	t.Run("bad input publishes nothing", func(t *testing.T) {
		before := countSubjects(t, c.JS, streams.DeployStream, "pinkie.deploy.>")
		broken := t.TempDir()
		if err := os.WriteFile(filepath.Join(broken, "flake.nix"), []byte("{ outputs = { self }: { nixosConfigurations = { x = throw \"no such module\"; }; }; }\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name string
			args []string
			want []string
		}{
			{"flake that does not evaluate", []string{"--flake", "path:" + broken, "all"}, []string{"path:" + broken, "no such module"}},
			{"host not in the fleet", []string{"--flake", f.flake.dir, "gloriath"}, []string{`host "gloriath" is not in the fleet`, "goliath, koishi, tower"}},
			{"unknown tag", []string{"--flake", f.flake.dir, "@db"}, []string{`no host has tag "db"`}},
			{"unknown goal", []string{"--flake", f.flake.dir, "goliath", "--goal", "reboot"}, []string{`unknown goal "reboot"`}},
			{"unknown builder", []string{"--flake", f.flake.dir, "goliath", "--build-on", "nowhere"}, []string{`builder host "nowhere" is not in the fleet`}},
			{"no selector", []string{"--flake", f.flake.dir}, []string{"missing SELECTOR"}},
		}
		for _, tc := range cases {
			out, code := runPinkie(t, append([]string{"deploy", "--server", f.natsURL(), "--nkey", f.operator()}, tc.args...)...)
			if code != 2 {
				t.Errorf("%s: exit %d, want 2\n%s", tc.name, code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("%s: output does not name %q:\n%s", tc.name, w, out)
				}
			}
		}
		if out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", f.operator(), "deploy.requested", "host=goliath", "goal=reboot"); code != 2 || !strings.Contains(out, "goal") {
			t.Errorf("pub with an unknown goal: exit %d\n%s", code, out)
		}
		if after := countSubjects(t, c.JS, streams.DeployStream, "pinkie.deploy.>"); after != before {
			t.Errorf("DEPLOY grew from %d to %d messages on bad input", before, after)
		}
		// The dry run prints the plan and publishes nothing either.
		out, code := f.deploy("all", "--dry-run")
		if code != 0 || !strings.Contains(out, "goliath") || strings.Contains(out, "tower") || !strings.Contains(out, "BUILD ON") {
			t.Errorf("deploy all --dry-run: exit %d\n%s", code, out)
		}
		if after := countSubjects(t, c.JS, streams.DeployStream, "pinkie.deploy.>"); after != before {
			t.Errorf("the dry run published %d messages", after-before)
		}
	})
}

// natsCLIPath finds the nats CLI, or "".
func natsCLIPath() string {
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nats")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}
