package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// retentionFleetNix builds the closures of three deploys of two hosts and
// some paths no deploy needs. Every path holds 64 KiB of random bytes but
// the shared-* ones, whose contents are the same (one NAR for both).
const retentionFleetNix = `{ seed }:
let
  mk = name: deps: random: derivation {
    inherit name; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" ("/bin/mkdir $out; echo ${seed} ${builtins.concatStringsSep " " (map toString deps)} > $out/refs; "
      + (if random then "/bin/dd if=/dev/urandom of=$out/blob bs=64k count=1 status=none" else "echo same > $out/blob")) ];
  };
  base = mk "base" [ ] true;
  lib = g: mk "lib-${g}" [ ] true;
  shared3 = mk "shared-3" [ ] false;
  sys = h: g: mk "sys-${h}-${g}" ([ base (lib g) ] ++ (if g == "3" then [ shared3 ] else [ ])) true;
  junkA = mk "junk-a" [ ] true;
in {
  sharedOld = mk "shared-old" [ ] false;
  inherit junkA;
  junkB = mk "junk-b" [ junkA ] true;
  junkNew = mk "junk-new" [ ] true;
  goliath1 = sys "goliath" "1"; koishi1 = sys "koishi" "1";
  goliath2 = sys "goliath" "2"; koishi2 = sys "koishi" "2";
  goliath3 = sys "goliath" "3"; koishi3 = sys "koishi" "3";
}`

// TestNixCacheRetention fills the hub's cache with the closures of three
// deploys of two hosts (goliath activated 1, 2, 3; koishi 1 and 2, with a
// deploy of 3 requested and under way) and paths no deploy needs, under a
// budget smaller than the whole. The hub drops on its own, after the
// uploads, the oldest paths no deploy needs (a path with what refers to
// it, a shared NAR only with its last narinfo) just until it is under
// budget; with a tighter budget, gc (dry run first) drops the next oldest.
// Every current, previous and pending closure stays whole: real nix
// fetches it from the hub with signature checks; a dropped one it cannot.
func TestNixCacheRetention(t *testing.T) {
	needNixRoot(t)
	dir := t.TempDir()
	env := nixEnv()
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"goliath", "koishi"}); err != nil {
		t.Fatal(err)
	}
	sec, pub := NixSecretKeyFile(auth), must(os.ReadFile(NixPublicKeyFile(auth)))
	drv := filepath.Join(dir, "fleet.nix")
	if err := os.WriteFile(drv, []byte(retentionFleetNix), 0o644); err != nil {
		t.Fatal(err)
	}
	names := []string{"sharedOld", "junkA", "junkB", "junkNew", "goliath1", "koishi1", "goliath2", "koishi2", "goliath3", "koishi3"}
	args := []string{"build", "--no-link", "--json", "-f", drv, "--argstr", "seed", fmt.Sprint(time.Now().UnixNano())}
	var built []struct{ Outputs map[string]string }
	if err := json.Unmarshal([]byte(mustNix(t, env, append(args, names...)...)), &built); err != nil || len(built) != len(names) {
		t.Fatalf("nix build: %v (%d results)", err, len(built))
	}
	// nix build --json lists them in its own order: match by name.
	drvName := map[string]string{"sharedOld": "shared-old", "junkA": "junk-a", "junkB": "junk-b", "junkNew": "junk-new"}
	for _, h := range []string{"goliath", "koishi"} {
		for _, g := range []string{"1", "2", "3"} {
			drvName[h+g] = "sys-" + h + "-" + g
		}
	}
	p := map[string]string{} // attribute → store path
	for _, n := range names {
		for _, b := range built {
			if strings.HasSuffix(b.Outputs["out"], "-"+drvName[n]) {
				p[n] = b.Outputs["out"]
			}
		}
		if p[n] == "" {
			t.Fatalf("nix build built no %s", drvName[n])
		}
	}
	// The closures, as binary caches signed with the fleet's key, in the
	// order they are uploaded (oldest first).
	steps := [][]string{{"sharedOld"}, {"junkA"}, {"goliath1", "koishi1"}, {"junkB"}, {"goliath2", "koishi2"}, {"goliath3", "koishi3"}, {"junkNew"}}
	var dirs []string
	size := map[string]int64{} // store path → narinfo and NAR bytes
	nar := map[string]string{} // store path → NAR URL
	var total int64
	counted := map[string]bool{}
	for i, step := range steps {
		d := filepath.Join(dir, fmt.Sprintf("cache-%d", i))
		var paths []string
		for _, n := range step {
			paths = append(paths, p[n])
		}
		mustNix(t, env, append([]string{"copy", "--to", "file://" + d + "?secret-key=" + sec + "&compression=none"}, paths...)...)
		dirs = append(dirs, d)
		entries := must(os.ReadDir(d))
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".narinfo") {
				continue
			}
			info := must(os.ReadFile(filepath.Join(d, e.Name())))
			url := must(narinfoURL(info))
			sp := storePathOf(t, info)
			if counted[sp] {
				continue
			}
			counted[sp] = true
			narBytes := must(os.Stat(filepath.Join(d, filepath.FromSlash(url)))).Size()
			size[sp], nar[sp] = int64(len(info))+narBytes, url
			total += int64(len(info))
			if !counted[url] { // a NAR two paths share is stored once
				total += narBytes
				counted[url] = true
			}
		}
	}
	if nar[p["sharedOld"]] != nar[closureOf(t, env, p["goliath3"], "shared-3")] {
		t.Fatalf("shared-old and shared-3 have different NARs: the test needs them to share one")
	}
	// First budget: everything but half of junk-a. The oldest paths no
	// deploy needs go: shared-old (its narinfo: its NAR is shared-3's
	// too), then junk-a with junk-b, which refers to it (though
	// sys-goliath-1 is older than junk-b).
	budget1 := total - size[p["junkA"]]/2

	hub, err := StartHub(context.Background(), HubOptions{IngestCheck: testIngestCheck,
		DataDir: t.TempDir(), NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		AuthDir: auth, Log: testLog(t), NixCacheBudget: budget1, NixCacheGrace: time.Nanosecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	ctx := context.Background()
	// The deploy record first, so retention knows the roots from the
	// first upload on.
	now := time.Now()
	activated := func(host, attr, prev string) {
		publishDeploy(t, hub, host, "activated", &events.DeployPhase{RequestID: "req-" + attr, Host: host, StorePath: p[attr], PreviousPath: prev})
	}
	activated("goliath", "goliath1", "")
	activated("koishi", "koishi1", "")
	activated("goliath", "goliath2", p["goliath1"])
	activated("koishi", "koishi2", p["koishi1"])
	activated("goliath", "goliath3", p["goliath2"])
	exp := now.Add(time.Hour)
	publishDeploy(t, hub, "koishi", "requested", &events.DeployRequested{Host: "koishi", StorePath: p["koishi3"], BuildOn: "local", ExpiresAt: &exp})
	for _, d := range dirs {
		if _, err := hub.NixCache().UploadDir(ctx, d); err != nil {
			t.Fatal(err)
		}
	}

	op := must(Connect(ctx, hub.ClientURL(), OperatorSeedFile(auth), "retention test"))
	defer op.Close()
	rd := must(Connect(ctx, hub.ClientURL(), ReaderSeedFile(auth), "retention test reader"))
	defer rd.Close()
	// The hub collects on its own after the uploads.
	deadline := time.Now().Add(30 * time.Second)
	var st NixCacheStats
	for {
		if st, err = NixCacheStatsOf(ctx, rd); err != nil {
			t.Fatalf("stats as a reader: %v", err)
		}
		// Done when under budget with no NAR left unnamed: a collection
		// drops narinfos first, then their NARs.
		if st.Bytes <= budget1 && st.OrphanNARs == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Bytes > budget1 {
		t.Fatalf("30 s after the uploads the cache holds %d bytes, over its budget of %d: %+v", st.Bytes, budget1, st)
	}
	gone := func(dropped ...string) []string {
		drop := map[string]bool{}
		for _, d := range dropped {
			drop[d] = true
		}
		var out []string
		for _, n := range names {
			if !drop[n] {
				out = append(out, n)
			}
		}
		return out
	}
	checkHolds := func(want []string) map[string]NixCacheEntry {
		t.Helper()
		entries, err := NixCacheList(ctx, rd)
		if err != nil {
			t.Fatalf("ls as a reader: %v", err)
		}
		byPath := map[string]NixCacheEntry{}
		for _, e := range entries {
			byPath[e.StorePath] = e
		}
		var got []string
		for _, n := range names {
			if _, ok := byPath[p[n]]; ok {
				got = append(got, n)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("top-level paths in the cache (-want +got):\n%s", diff)
		}
		for i := 1; i < len(entries); i++ {
			if entries[i].Uploaded.Before(entries[i-1].Uploaded) {
				t.Errorf("ls is not oldest upload first: %s before %s", entries[i-1].StorePath, entries[i].StorePath)
			}
		}
		return byPath
	}
	byPath := checkHolds(gone("sharedOld", "junkA", "junkB"))
	for attr, want := range map[string]string{
		"goliath3": "current:goliath", "goliath2": "previous:goliath", "goliath1": "",
		"koishi2": "current:koishi", "koishi1": "previous:koishi", "koishi3": "pending:koishi", "junkNew": "",
	} {
		if got := strings.Join(byPath[p[attr]].KeptBecause, ","); got != want {
			t.Errorf("%s is kept because %q, want %q", attr, got, want)
		}
	}
	base := byPath[closureOf(t, env, p["goliath1"], "base")]
	if got := strings.Join(base.KeptBecause, ","); got != "current:goliath,current:koishi,pending:koishi,previous:goliath,previous:koishi" {
		t.Errorf("base, in every closure, is kept because %q", got)
	}
	if _, err := hub.NixCache().nar.GetInfo(ctx, nar[p["sharedOld"]]); err != nil {
		t.Errorf("the NAR shared-old shared with shared-3 is gone with shared-old's narinfo: %v", err)
	}
	if st.CollectablePaths != 2 || st.CollectableBytes != size[p["goliath1"]]+size[p["junkNew"]] {
		t.Errorf("stats: %+v, want sys-goliath-1 and junk-new collectable (%d bytes)", st, size[p["goliath1"]]+size[p["junkNew"]])
	}

	// A reader may not collect; an operator may.
	if _, err := NixCacheCollect(ctx, rd, true); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("gc as a reader: %v, want a refusal", err)
	}
	// Tighter: the next oldest, sys-goliath-1, goes; junk-new stays.
	r := hub.nixRetention
	r.mu.Lock()
	r.budget = st.Bytes - size[p["goliath1"]]/2
	r.mu.Unlock()
	dry, err := NixCacheCollect(ctx, op, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := droppedPaths(dry); !cmp.Equal(got, []string{p["goliath1"]}) || !dry.DryRun || dry.BytesFreed != size[p["goliath1"]] {
		t.Errorf("dry run: drops %q freeing %d (%+v), want only %s, %d bytes", got, dry.BytesFreed, dry, p["goliath1"], size[p["goliath1"]])
	}
	checkHolds(gone("sharedOld", "junkA", "junkB"))
	res, err := NixCacheCollect(ctx, op, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := droppedPaths(res); !cmp.Equal(got, []string{p["goliath1"]}) || res.BytesFreed != size[p["goliath1"]] || res.DroppedNARs != 1 || res.OverBudget {
		t.Errorf("gc: %+v, want only %s dropped, %d bytes freed", res, p["goliath1"], size[p["goliath1"]])
	}
	checkHolds(gone("sharedOld", "junkA", "junkB", "goliath1"))

	// What is kept is whole: real nix fetches it, signatures checked.
	trusted := nixEnv("trusted-public-keys = " + strings.TrimSpace(string(pub)))
	fetch := func(path string) error {
		env := append(append([]string{}, trusted...), "XDG_CACHE_HOME="+t.TempDir())
		_, err := runNix(t, env, "copy", "--from", "http://"+hub.HTTPAddr()+"/nix-cache", "--to", filepath.Join(t.TempDir(), "store"), path)
		return err
	}
	for _, attr := range []string{"goliath3", "goliath2", "koishi2", "koishi1", "koishi3"} {
		if err := fetch(p[attr]); err != nil {
			t.Errorf("fetching %s (%s) from the hub: %v", attr, p[attr], err)
		}
	}
	if err := fetch(p["goliath1"]); err == nil {
		t.Errorf("fetching the dropped %s from the hub worked", p["goliath1"])
	}
	// No NAR is left that no narinfo names, and none is missing.
	left, err := hub.NixCache().listNarinfos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nars, err := hub.NixCache().listNars(ctx)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, e := range left {
		named[e.url] = true
		if nars[e.url] == nil {
			t.Errorf("%s's narinfo names %s, which is gone", e.StorePath, e.url)
		}
	}
	for url := range nars {
		if !named[url] {
			t.Errorf("NAR %s is left with no narinfo naming it", url)
		}
	}
}

func droppedPaths(r NixGCResult) []string {
	var out []string
	for _, e := range r.Dropped {
		out = append(out, e.StorePath)
	}
	sort.Strings(out)
	return out
}

// storePathOf is a narinfo's StorePath.
func storePathOf(t *testing.T, info []byte) string {
	t.Helper()
	for _, line := range strings.Split(string(info), "\n") {
		if v, ok := strings.CutPrefix(line, "StorePath: "); ok {
			return v
		}
	}
	t.Fatalf("narinfo without StorePath: %s", info)
	return ""
}

// closureOf finds the path named name in path's closure.
func closureOf(t *testing.T, env []string, path, name string) string {
	t.Helper()
	for _, p := range strings.Fields(mustNix(t, env, "path-info", "-r", path)) {
		if strings.HasSuffix(p, "-"+name) {
			return p
		}
	}
	t.Fatalf("%s's closure has no %s", path, name)
	return ""
}

// publishDeploy stores a deploy event in DEPLOY as the hub would forward
// it (phases from the host's agent, requests from an operator).
func publishDeploy(t *testing.T, hub *Hub, host, phase string, data any) {
	t.Helper()
	k, ok := events.Lookup("deploy." + phase)
	if !ok {
		t.Fatalf("no kind deploy.%s", phase)
	}
	e, err := events.New(k, host, "test", time.Now(), data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hub.JetStream().Publish(context.Background(), events.DeploySubject(host, phase), b, jetstream.WithMsgID(e.ID())); err != nil {
		t.Fatal(err)
	}
}
