package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/nixcache"
	"github.com/pinkiefleet/pinkie/streams"
)

// pkgFlake is a test flake whose hosts all run one system: a toplevel
// (with a switch-to-configuration that appends "<goal> r<rev>" to
// <dir>/stc.log) depending on packages of size bytes of random data each.
// Bumping a package's version rebuilds that package and the toplevel
// only.
type pkgFlake struct {
	t        *testing.T
	dir      string
	hosts    map[string]string // host → buildOn
	size     int
	versions []int
	rev      int
}

func newPkgFlake(t *testing.T, hosts map[string]string, pkgs, size int) *pkgFlake {
	t.Helper()
	p := &pkgFlake{t: t, dir: t.TempDir(), hosts: hosts, size: size, versions: make([]int, pkgs)}
	for i := range p.versions {
		p.versions[i] = 1
	}
	cmd := exec.Command("git", "init", "-q", ".")
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	p.commit()
	return p
}

// bump raises package i's version and commits.
func (p *pkgFlake) bump(i int) {
	p.t.Helper()
	p.versions[i]++
	p.commit()
}

func (p *pkgFlake) commit() {
	p.t.Helper()
	p.rev++
	var pkgs []string
	for i, v := range p.versions {
		pkgs = append(pkgs, fmt.Sprintf("(pkg %d %d)", i, v))
	}
	var hosts []string
	for h, on := range p.hosts {
		hosts = append(hosts, fmt.Sprintf("%s = host { buildOn = %q; };", h, on))
	}
	sort.Strings(hosts)
	flake := fmt.Sprintf(`{
  outputs = { self }: let
    pkg = i: v: derivation {
      name = "pinkie-pkg${toString i}-v${toString v}";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" "/usr/bin/head -c %d /dev/urandom > $out" ];
    };
    toplevel = derivation {
      name = "nixos-system-pinkie-test-r%d";
      system = "x86_64-linux";
      builder = "/bin/sh";
      pkgs = [ %s ];
      args = [ "-c" ''
        /bin/mkdir -p $out/bin
        echo "$pkgs" > $out/packages
        /bin/cat > $out/bin/switch-to-configuration <<'EOF'
        #!/bin/sh
        echo "$1 r%d" >> %s/stc.log
        EOF
        /bin/chmod +x $out/bin/switch-to-configuration
      '' ];
    };
    host = dep: { config.pinkie.deployment = dep; config.system.build.toplevel = toplevel; };
  in {
    nixosConfigurations = { %s };
  };
}
`, p.size, p.rev, strings.Join(pkgs, " "), p.rev, p.dir, strings.Join(hosts, " "))
	if err := os.WriteFile(filepath.Join(p.dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		p.t.Fatal(err)
	}
	for _, args := range [][]string{{"add", "flake.nix"}, {"commit", "-q", "-m", fmt.Sprintf("r%d", p.rev)}} {
		cmd := exec.Command("git", append([]string{"-c", "user.email=test@pinkie", "-c", "user.name=test", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = p.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			p.t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

// transferJSON is deploy --json with what went through the hub's cache.
type transferJSON struct {
	Flake        string       `json:"flake"`
	SourceUpload *cacheUpload `json:"source_upload"`
	Hosts        []struct {
		Host         string       `json:"host"`
		RequestID    string       `json:"request_id"`
		StorePath    string       `json:"store_path"`
		Outcome      string       `json:"outcome"`
		Reason       string       `json:"reason"`
		Upload       *cacheUpload `json:"upload"`
		FetchedPaths int          `json:"fetched_paths"`
		FetchedBytes int64        `json:"fetched_bytes"`
	} `json:"hosts"`
}

type cacheUpload struct {
	Paths         int      `json:"paths"`
	UploadedPaths []string `json:"uploaded_paths"`
	UploadedBytes int64    `json:"uploaded_bytes"`
	CachedPaths   int      `json:"cached_paths"`
	CachedBytes   int64    `json:"cached_bytes"`
}

func parseTransferJSON(t *testing.T, out string) transferJSON {
	t.Helper()
	// The JSON is the last line that is an object: warnings may precede
	// it, the exit's error follow it.
	var r transferJSON
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "{") {
			if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
				t.Fatalf("deploy --json printed %q: %v", out, err)
			}
			return r
		}
	}
	t.Fatalf("deploy --json printed no JSON: %q", out)
	return r
}

// closure lists path's closure in the machine's store (the operator's).
func closure(t *testing.T, path string) map[string]bool {
	t.Helper()
	out, err := exec.Command("nix-store", "-qR", path).Output()
	if err != nil {
		t.Fatalf("nix-store -qR %s: %v", path, err)
	}
	set := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		set[p] = true
	}
	return set
}

// hubNarinfo reads a path's narinfo from the hub's cache over its HTTP.
func hubNarinfo(t *testing.T, f *fleet, path string) *nixcache.NarInfo {
	t.Helper()
	ni, err := nixcache.ParseNarInfo([]byte(httpGet(t, f.httpURL()+"/nix-cache/"+filepath.Base(path)[:32]+".narinfo")))
	if err != nil {
		t.Fatalf("the hub's narinfo of %s: %v", path, err)
	}
	return ni
}

// TestDeployTransfersOnlyWhatChanged: a system of seven paths (six
// packages of 256 KiB of random data and the toplevel) deployed to a host
// sharing nothing with the operator; then one package changes. The second
// `pinkie deploy` uploads exactly the paths that are new in the closure
// (the package and the toplevel that depends on it), its bytes those
// paths' NAR files and narinfos, and the target fetches exactly those
// from the hub's cache: deploy --json reports both sides.
func TestDeployTransfersOnlyWhatChanged(t *testing.T) {
	needOwnNix(t)
	const pkgs, size = 6, 256 << 10
	f := newFleet(t, "goliath")
	f.startHub()
	flake := newPkgFlake(t, map[string]string{"goliath": "local"}, pkgs, size)
	agent, _, _ := startOwnNixAgent(t, f, "goliath")
	deploy := func() transferJSON {
		t.Helper()
		out, code := runPinkie(t, "deploy", "goliath", "--flake", flake.dir, "--server", f.natsURL(), "--nkey", f.operator(), "--wait", "--timeout", "3m", "--json")
		d := parseTransferJSON(t, out)
		if code != 0 || len(d.Hosts) != 1 || d.Hosts[0].Outcome != "activated" || d.Hosts[0].Upload == nil {
			t.Fatalf("deploy: exit %d, want goliath activated with an upload report\n%s\nagent:\n%s", code, out, agent.out.String())
		}
		return d
	}
	first := deploy()
	flake.bump(2)
	second := deploy()
	h1, h2 := first.Hosts[0], second.Hosts[0]

	// What changed: the paths of the new closure that the old one lacks.
	old, cur := closure(t, h1.StorePath), closure(t, h2.StorePath)
	var changed []string
	for p := range cur {
		if !old[p] {
			changed = append(changed, p)
		}
	}
	sort.Strings(changed)
	if len(cur) != pkgs+1 || len(changed) != 2 || !strings.HasSuffix(changed[0], "-pinkie-pkg2-v2") && !strings.HasSuffix(changed[1], "-pinkie-pkg2-v2") {
		t.Fatalf("closure %d paths, changed %q: want %d paths, the changed package and the toplevel new", len(cur), changed, pkgs+1)
	}
	var fileBytes, narBytes int64
	for _, p := range changed {
		ni := hubNarinfo(t, f, p)
		fileBytes += int64(ni.FileSize)
		narBytes += int64(ni.NarSize)
	}

	// The operator's side: only the changed paths went up.
	if got := strings.Join(h2.Upload.UploadedPaths, " "); got != strings.Join(changed, " ") {
		t.Errorf("second deploy uploaded %q, want exactly the changed paths %q", h2.Upload.UploadedPaths, changed)
	}
	if h2.Upload.Paths != pkgs+1 || h2.Upload.CachedPaths != pkgs-1 {
		t.Errorf("second upload %+v: want %d paths, %d already in the cache", *h2.Upload, pkgs+1, pkgs-1)
	}
	// NAR files plus their narinfos (a few hundred bytes each).
	if up := h2.Upload.UploadedBytes; up < fileBytes || up > fileBytes+int64(len(changed))*2048 {
		t.Errorf("second deploy sent %d bytes; the changed paths' NAR files are %d bytes (NARs %d)", up, fileBytes, narBytes)
	}
	if len(h1.Upload.UploadedPaths) != pkgs+1 || h1.Upload.UploadedBytes < int64(pkgs)*size {
		t.Errorf("first upload %+v: want all %d paths, at least %d bytes", *h1.Upload, pkgs+1, pkgs*size)
	}
	if h2.Upload.UploadedBytes*3 > h1.Upload.UploadedBytes {
		t.Errorf("second deploy sent %d bytes, first %d: want far less", h2.Upload.UploadedBytes, h1.Upload.UploadedBytes)
	}

	// The target's side: it fetched the changed paths only.
	if h2.FetchedPaths != len(changed) || h2.FetchedBytes != fileBytes {
		t.Errorf("the target fetched %d paths, %d bytes on the second deploy; want %d paths, %d bytes (their NAR files)", h2.FetchedPaths, h2.FetchedBytes, len(changed), fileBytes)
	}
	if h1.FetchedPaths != pkgs+1 || h1.FetchedBytes < int64(pkgs)*size {
		t.Errorf("the target fetched %d paths, %d bytes on the first deploy; want %d paths, at least %d bytes", h1.FetchedPaths, h1.FetchedBytes, pkgs+1, pkgs*size)
	}
	if !strings.Contains(agent.out.String(), "fetched_paths=2 ") {
		t.Errorf("the agent did not log what it fetched:\n%s", agent.out.String())
	}
	t.Logf("first deploy: uploaded %d paths, %d bytes; target fetched %d paths, %d bytes", len(h1.Upload.UploadedPaths), h1.Upload.UploadedBytes, h1.FetchedPaths, h1.FetchedBytes)
	t.Logf("second deploy (one package changed): uploaded %d paths, %d bytes (their NAR files %d bytes, NARs %d bytes; %d paths, %d bytes already cached); target fetched %d paths, %d bytes; flake source uploads %d then %d bytes",
		len(h2.Upload.UploadedPaths), h2.Upload.UploadedBytes, fileBytes, narBytes, h2.Upload.CachedPaths, h2.Upload.CachedBytes, h2.FetchedPaths, h2.FetchedBytes,
		first.SourceUpload.UploadedBytes, second.SourceUpload.UploadedBytes)
}

// TestDeployRefusesTamperedCache: what reaches the hub's cache by any way
// but a checked upload (an attacker with the hub's disk) is refused by
// the target's nix, and the deploy fails saying why. The closure is first
// uploaded (signed) by a deploy to a host that never takes it; the test
// alters it in the stopped hub's store; then a deploy to goliath finds
// the paths in the cache (and uploads nothing), goliath fetches them with
// signature checks on and the deploy fails, `pinkie deploy --wait`
// showing the reason: the signature (a narinfo altered, or one without
// signatures) or the hash (a NAR swapped for another).
func TestDeployRefusesTamperedCache(t *testing.T) {
	needOwnNix(t)
	f := newFleet(t, "goliath", "spare")
	hub := f.startHub()
	flake := newPkgFlake(t, map[string]string{"goliath": "local", "spare": "local"}, 1, 4096)
	agent, _, _ := startOwnNixAgent(t, f, "goliath")
	// A clean deploy first: the cache and the agent work.
	out, code := runPinkie(t, "deploy", "goliath", "--flake", flake.dir, "--server", f.natsURL(), "--nkey", f.operator(), "--wait", "--timeout", "3m", "--json")
	if d := parseTransferJSON(t, out); code != 0 || d.Hosts[0].Outcome != "activated" {
		t.Fatalf("clean deploy: exit %d\n%s\nagent:\n%s", code, out, agent.out.String())
	}

	for _, tc := range []struct {
		name   string
		tamper func(ctx context.Context, t *testing.T, kv jetstream.KeyValue, obj jetstream.ObjectStore, toplevel, pkg string)
		want   []string
	}{
		{
			name: "unsigned path",
			tamper: func(ctx context.Context, t *testing.T, kv jetstream.KeyValue, _ jetstream.ObjectStore, toplevel, _ string) {
				e := mustGet(ctx, t, kv, toplevel)
				var kept []string
				for _, l := range strings.SplitAfter(string(e), "\n") {
					if !strings.HasPrefix(l, "Sig: ") {
						kept = append(kept, l)
					}
				}
				mustPut(ctx, t, kv, toplevel, []byte(strings.Join(kept, "")))
			},
			want: []string{"refused by nix", "no valid signature", "lacks a valid signature"},
		},
		{
			name: "tampered narinfo",
			tamper: func(ctx context.Context, t *testing.T, kv jetstream.KeyValue, _ jetstream.ObjectStore, toplevel, _ string) {
				e := mustGet(ctx, t, kv, toplevel)
				mustPut(ctx, t, kv, toplevel, []byte(strings.Replace(string(e), "NarSize: ", "NarSize: 1", 1)))
			},
			want: []string{"refused by nix", "no valid signature", "lacks a valid signature"},
		},
		{
			name: "tampered NAR",
			tamper: func(ctx context.Context, t *testing.T, kv jetstream.KeyValue, obj jetstream.ObjectStore, toplevel, pkg string) {
				// The toplevel's NAR file replaced by the package's: a
				// well-formed NAR, not the one the signed narinfo names.
				top, err := nixcache.ParseNarInfo(mustGet(ctx, t, kv, toplevel))
				if err != nil {
					t.Fatal(err)
				}
				other, err := nixcache.ParseNarInfo(mustGet(ctx, t, kv, pkg))
				if err != nil {
					t.Fatal(err)
				}
				b, err := obj.GetBytes(ctx, other.URL)
				if err != nil {
					t.Fatalf("read %s: %v", other.URL, err)
				}
				if _, err := obj.PutBytes(ctx, top.URL, b); err != nil {
					t.Fatalf("replace %s: %v", top.URL, err)
				}
			},
			want: []string{"refused by nix", "does not match the hash"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flake.bump(0) // a new package and toplevel
			// Upload the closure, signed: a deploy to spare (no agent).
			out, code := runPinkie(t, "deploy", "spare", "--flake", flake.dir, "--server", f.natsURL(), "--nkey", f.operator(), "--json")
			d := parseTransferJSON(t, out)
			if code != 0 || d.Hosts[0].Upload == nil || len(d.Hosts[0].Upload.UploadedPaths) != 2 {
				t.Fatalf("deploy spare: exit %d, want the package and the toplevel uploaded\n%s", code, out)
			}
			toplevel := d.Hosts[0].StorePath
			pkg := d.Hosts[0].Upload.UploadedPaths[0]
			if pkg == toplevel {
				pkg = d.Hosts[0].Upload.UploadedPaths[1]
			}
			hub.stop(syscall.SIGTERM)
			withHubStore(t, f, func(ctx context.Context, js jetstream.JetStream) {
				kv, err := js.KeyValue(ctx, streams.NixNarinfoBucket)
				if err != nil {
					t.Fatal(err)
				}
				obj, err := js.ObjectStore(ctx, streams.NixNarBucket)
				if err != nil {
					t.Fatal(err)
				}
				tc.tamper(ctx, t, kv, obj, filepath.Base(toplevel)[:32], filepath.Base(pkg)[:32])
			})
			hub = f.startHub()
			agent.waitFor("hub connected", 30*time.Second)

			out, code = runPinkie(t, "deploy", "goliath", "--flake", flake.dir, "--server", f.natsURL(), "--nkey", f.operator(), "--wait", "--timeout", "3m")
			if code != 1 {
				t.Fatalf("deploy of a tampered closure: exit %d, want 1\n%s\nagent:\n%s", code, out, agent.out.String())
			}
			if !strings.Contains(out, "uploaded 0 of 2 paths") {
				t.Errorf("the deploy to goliath did not find the (tampered) closure in the cache:\n%s", out)
			}
			var failed string
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, " failed ") && strings.Contains(l, "goliath") {
					failed = l
				}
			}
			if failed == "" || !strings.Contains(failed, "fetch "+toplevel) {
				t.Fatalf("deploy --wait printed no failed fetch of %s:\n%s", toplevel, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(failed, w) {
					t.Errorf("the failure %q does not name the %s", failed, w)
				}
			}
			t.Logf("%s: %s", tc.name, strings.TrimSpace(failed))
		})
	}
}

func mustGet(ctx context.Context, t *testing.T, kv jetstream.KeyValue, key string) []byte {
	t.Helper()
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatalf("narinfo %s in the hub's store: %v", key, err)
	}
	return e.Value()
}

func mustPut(ctx context.Context, t *testing.T, kv jetstream.KeyValue, key string, v []byte) {
	t.Helper()
	if _, err := kv.Put(ctx, key, v); err != nil {
		t.Fatalf("put narinfo %s: %v", key, err)
	}
}

// waitDeployOutcome waits until the hub's DEPLOY stream holds an outcome
// (activated, failed, rolledback, skipped) of request id and returns its
// phase and data.
func waitDeployOutcome(t *testing.T, f *fleet, id string, within time.Duration) (string, *events.DeployPhase) {
	t.Helper()
	c := f.client()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, se := range readStream(t, c.JS, streams.DeployStream, "pinkie.deploy.>") {
			phase, ok := events.DeployPhaseOf(se.kind.Name)
			if !ok {
				continue
			}
			d, err := events.DecodeData(se.event, se.kind)
			if err != nil {
				t.Fatalf("%s: %v", se.subject, err)
			}
			switch p := d.(*events.DeployPhase); {
			case p.RequestID != id:
			case phase == "activated", phase == "failed", phase == "rolledback", phase == "skipped":
				return phase, p
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no outcome of request %s within %s", id, within)
	return "", nil
}

// TestDeployToHostOfflineDuringUpload: the target's agent is stopped when
// the operator deploys; `pinkie deploy --wait` with a short timeout uploads
// the closure, requests the deploy and gives up waiting (exit 1, outcome
// timeout). The agent, started again later with its own /nix as before,
// takes the request, fetches the closure from the hub's cache and
// activates.
func TestDeployToHostOfflineDuringUpload(t *testing.T) {
	needOwnNix(t)
	f := newFleet(t, "goliath")
	f.startHub()
	flake := newPkgFlake(t, map[string]string{"goliath": "local"}, 2, 64<<10)
	host := newOwnNix(t)
	agent := startOwnNixAgentIn(t, f, "goliath", host)
	agent.stop(syscall.SIGTERM)

	out, code := runPinkie(t, "deploy", "goliath", "--flake", flake.dir, "--server", f.natsURL(), "--nkey", f.operator(), "--wait", "--timeout", "3s", "--json")
	d := parseTransferJSON(t, out)
	if code != 1 || len(d.Hosts) != 1 || d.Hosts[0].Outcome != "timeout" || d.Hosts[0].Upload == nil || len(d.Hosts[0].Upload.UploadedPaths) != 3 {
		t.Fatalf("deploy to an offline host: exit %d, want 1 with outcome timeout after uploading 3 paths\n%s", code, out)
	}
	h := d.Hosts[0]
	if _, err := os.Stat(filepath.Join(host.nix, "store", filepath.Base(h.StorePath))); err == nil {
		t.Fatal("the closure is in the offline host's store already")
	}

	agent = startOwnNixAgentIn(t, f, "goliath", host)
	phase, p := waitDeployOutcome(t, f, h.RequestID, 2*time.Minute)
	if phase != "activated" || p.StorePath != h.StorePath {
		t.Fatalf("after the agent came back: %s %s (%s), want %s activated\nagent:\n%s", phase, p.StorePath, p.Reason, h.StorePath, agent.out.String())
	}
	if p.FetchedPaths != 3 {
		t.Errorf("the agent fetched %d paths from the hub's cache, want the closure's 3", p.FetchedPaths)
	}
	if _, err := os.Stat(filepath.Join(host.nix, "store", filepath.Base(h.StorePath))); err != nil {
		t.Errorf("the closure is not in the host's own store: %v", err)
	}
	if link, err := filepath.EvalSymlinks(host.profile); err != nil || link != h.StorePath {
		t.Errorf("profile %s points at %q (%v), want %s", host.profile, link, err, h.StorePath)
	}
}

// TestDeployUploadSurvivesHubRestart: the hub is killed (SIGKILL) while
// `pinkie deploy --wait` uploads the closure (a NAR half staged at the
// hub) and started again; the upload goes on from where the hub has it,
// and the deploy activates.
func TestDeployUploadSurvivesHubRestart(t *testing.T) {
	needOwnNix(t)
	f := newFleet(t, "goliath")
	hub := f.startHub()
	flake := newPkgFlake(t, map[string]string{"goliath": "local"}, 2, 8<<20)
	agent, _, _ := startOwnNixAgent(t, f, "goliath")
	type result struct {
		out  string
		code int
	}
	done := make(chan result, 1)
	go func() {
		out, code := runPinkie(t, "deploy", "goliath", "--flake", flake.dir, "--server", f.natsURL(), "--nkey", f.operator(), "--wait", "--timeout", "3m", "--json")
		done <- result{out, code}
	}()
	// The closure's upload is under way once a package's NAR (8 MiB) is
	// partly staged at the hub: more than the flake source's whole NAR.
	staging := filepath.Join(f.hubData, "nixcache-staging")
	staged := func() bool {
		entries, _ := os.ReadDir(staging)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".part") && fi.Size() > 1<<20 {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !staged() && time.Now().Before(deadline) {
		select {
		case r := <-done:
			t.Fatalf("the deploy ended before the test saw its upload at the hub: exit %d\n%s", r.code, r.out)
		case <-time.After(2 * time.Millisecond):
		}
	}
	if !staged() {
		t.Fatalf("no NAR staged at the hub within 2 minutes")
	}
	hub.kill()
	hub = f.startHub()
	r := <-done
	d := parseTransferJSON(t, r.out)
	if r.code != 0 || len(d.Hosts) != 1 || d.Hosts[0].Outcome != "activated" {
		t.Fatalf("deploy across a hub restart: exit %d, want goliath activated\n%s\nhub:\n%s\nagent:\n%s", r.code, r.out, hub.out.String(), agent.out.String())
	}
	if up := d.Hosts[0].Upload; up == nil || len(up.UploadedPaths) != 3 {
		t.Errorf("upload report %+v, want the closure's 3 paths", up)
	}
}
