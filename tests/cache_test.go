package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

// TestCacheCLI runs `pinkie cache ls|stats|gc --json` against a real hub
// process whose cache holds three paths of 64 KiB, each the store path of
// a deploy request under way (pending), under a budget of two of them. The
// hub keeps all three while the requests last (gc says the cache stays
// over budget: exit 1); once the oldest request expires its path is the
// one gc drops. A reader lists and sums up, but may not collect: pinkie
// says so with exit 2, the real nats CLI gets a permissions violation.
func TestCacheCLI(t *testing.T) {
	deployNeedNix(t)
	natsCLI(t)
	if os.Geteuid() != 0 {
		t.Skip("building with nix here needs root (the machine's /nix is root's)")
	}
	f := newFleet(t, "goliath")
	dir := t.TempDir()
	drv := filepath.Join(dir, "paths.nix")
	if err := os.WriteFile(drv, []byte(`{ seed }: let mk = n: derivation { name = "cache-cli-${n}"; system = builtins.currentSystem; builder = "/bin/sh";
	  args = [ "-c" "echo ${seed} > $out.seed; /bin/dd if=/dev/urandom of=$out bs=64k count=1 status=none" ]; }; in { a = mk "a"; b = mk "b"; c = mk "c"; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	built0, err := exec.Command("nix", "build", "--no-link", "--json", "-f", drv, "--argstr", "seed", fmt.Sprint(time.Now().UnixNano()), "a", "b", "c").Output()
	if err != nil {
		t.Fatalf("nix build: %v", err)
	}
	var built []struct{ Outputs map[string]string }
	if err := json.Unmarshal(built0, &built); err != nil || len(built) != 3 {
		t.Fatalf("nix build --json: %s: %v", built0, err)
	}
	path := map[string]string{}
	for _, b := range built {
		p := b.Outputs["out"]
		path[p[len(p)-1:]] = p
	}
	f.startHub("--cache-budget", "150KiB", "--cache-grace", "1ms")
	ctx := context.Background()
	c := f.client()
	// Deploy requests under way for each path; a's expires first, in 20 s:
	// time enough for what must find it under way (the uploads and the
	// first gc) even on a loaded machine.
	aExpires := time.Now().Add(20 * time.Second)
	for _, n := range []string{"a", "b", "c"} {
		expires := time.Now().Add(time.Hour)
		if n == "a" {
			expires = aExpires
		}
		data := fmt.Sprintf(`{"host":"goliath","store_path":%q,"build_on":"local","expires_at":%q}`, path[n], expires.UTC().Format(time.RFC3339Nano))
		if out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", f.operator(), "--data", data, "deploy.requested"); code != 0 {
			t.Fatalf("pub deploy.requested: exit %d\n%s", code, out)
		}
	}
	// Uploaded as an operator's `pinkie deploy` does, a first.
	for _, n := range []string{"a", "b", "c"} {
		local := filepath.Join(dir, "cache-"+n)
		if out, err := exec.Command("nix", "copy", "--to", "file://"+local+"?secret-key="+streams.NixSecretKeyFile(f.auth)+"&compression=none", path[n]).CombinedOutput(); err != nil {
			t.Fatalf("nix copy: %v\n%s", err, out)
		}
		if _, err := streams.UploadNixCacheDir(ctx, c, streams.NixCachePutOperator, local); err != nil {
			t.Fatal(err)
		}
	}
	reader, operator := streams.ReaderSeedFile(f.auth), f.operator()
	cache := func(key string, args ...string) (string, int) {
		t.Helper()
		return runPinkie(t, append(append([]string{"cache"}, args...), "--server", f.natsURL(), "--nkey", key)...)
	}
	ls := func() map[string]streams.NixCacheEntry {
		t.Helper()
		out, code := cache(reader, "ls", "--json")
		var entries []streams.NixCacheEntry
		if err := json.Unmarshal([]byte(out), &entries); code != 0 || err != nil {
			t.Fatalf("cache ls --json as a reader: exit %d, %v\n%s", code, err, out)
		}
		got := map[string]streams.NixCacheEntry{}
		for _, e := range entries {
			got[e.StorePath] = e
		}
		return got
	}
	entries := ls()
	for _, n := range []string{"a", "b", "c"} {
		e, ok := entries[path[n]]
		if !ok {
			t.Fatalf("cache ls lacks %s: %v", path[n], entries)
		}
		if strings.Join(e.KeptBecause, ",") != "pending:goliath" || e.NarSize < 64<<10 || e.FileSize < 64<<10 || time.Since(e.Uploaded) > time.Minute {
			t.Errorf("cache ls: %s is %+v, want kept as pending:goliath, 64 KiB, uploaded just now", n, e)
		}
	}
	var st streams.NixCacheStats
	out, code := cache(reader, "stats", "--json")
	if err = json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("cache stats --json as a reader: exit %d, %v\n%s", code, err, out)
	}
	if st.Paths != 3 || st.BudgetBytes != 150<<10 || st.KeptPaths != 3 || st.KeptBytes != st.Bytes || st.CollectablePaths != 0 || st.Bytes <= st.BudgetBytes {
		t.Errorf("cache stats: %+v, want 3 paths, all kept, over a budget of %d", st, 150<<10)
	}

	// A reader may not collect.
	if out, code := cache(reader, "gc", "--dry-run"); code != 2 || !strings.Contains(out, "not permitted") {
		t.Errorf("cache gc as a reader: exit %d, want 2 and 'not permitted':\n%s", code, out)
	}
	// (nats 0.5.0 reports the violation but exits 0: no reply is what counts.)
	if out, code := natsRun(t, f, reader, 20*time.Second, "req", streams.NixCacheAdminGC, `{"dry_run":true}`); !strings.Contains(out, "Permissions Violation") || strings.Contains(out, "budget_bytes") {
		t.Errorf("nats req %s as a reader: exit %d, want a permissions violation and no reply:\n%s", streams.NixCacheAdminGC, code, out)
	}
	if out, code := natsRun(t, f, operator, 20*time.Second, "req", streams.NixCacheAdminGC, `{"dry_run":true}`); code != 0 || !strings.Contains(out, `"dry_run":true`) {
		t.Errorf("nats req %s as an operator: exit %d, want a dry run's result:\n%s", streams.NixCacheAdminGC, code, out)
	}
	if out, code := natsRun(t, f, reader, 20*time.Second, "req", streams.NixCacheAdminStats, `{}`); code != 0 || !strings.Contains(out, `"budget_bytes":153600`) {
		t.Errorf("nats req %s as a reader: exit %d, want the stats:\n%s", streams.NixCacheAdminStats, code, out)
	}

	// Everything is needed: nothing goes, and gc says the cache stays
	// over budget.
	gc := func(args ...string) (streams.NixGCResult, int, string) {
		t.Helper()
		out, code := cache(operator, append([]string{"gc", "--json"}, args...)...)
		var res streams.NixGCResult
		if err := json.Unmarshal([]byte(firstLine(out)), &res); err != nil {
			t.Fatalf("cache gc --json: exit %d, %v\n%s", code, err, out)
		}
		return res, code, out
	}
	if res, code, out := gc(); code != 1 || !res.OverBudget || res.DroppedPaths != 0 || !strings.Contains(out, "raise the hub's --cache-budget") {
		t.Errorf("cache gc with every path needed: exit %d, %+v, want exit 1, over budget, nothing dropped:\n%s", code, res, out)
	}
	if time.Now().After(aExpires) {
		t.Fatalf("a's request expired (at %s) before the checks that need it under way were done: the machine is too slow for this test's timing", aExpires.Format(time.RFC3339))
	}
	// Once a's request expires, a is what goes.
	deadline := aExpires.Add(30 * time.Second)
	for {
		res, _, _ := gc("--dry-run")
		if res.DroppedPaths > 0 || time.Now().After(deadline) {
			if len(res.Dropped) != 1 || res.Dropped[0].StorePath != path["a"] || !res.DryRun {
				t.Fatalf("cache gc --dry-run after a's request expired: %+v, want a alone", res)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(ls()) != 3 {
		t.Errorf("cache gc --dry-run dropped something")
	}
	res, code, out := gc()
	if code != 0 || res.DroppedPaths != 1 || res.Dropped[0].StorePath != path["a"] || res.DroppedNARs != 1 || res.BytesFreed < 64<<10 || res.BytesAfter > res.BudgetBytes || res.OverBudget {
		t.Errorf("cache gc: exit %d, %+v, want a dropped and the cache under budget:\n%s", code, res, out)
	}
	entries = ls()
	if _, ok := entries[path["a"]]; ok || len(entries) != 2 {
		t.Errorf("after gc the cache holds %v, want b and c", entries)
	}
	// And people read it too.
	if out, code := cache(reader, "stats"); code != 0 || !strings.Contains(out, "paths        2") {
		t.Errorf("cache stats: exit %d\n%s", code, out)
	}
	if out, code := cache(reader, "ls"); code != 0 || !strings.Contains(out, path["b"]) || !strings.Contains(out, "pending:goliath") {
		t.Errorf("cache ls: exit %d\n%s", code, out)
	}
}

// firstLine is the first line of out (the JSON of a command that then
// explains its exit code on stderr).
func firstLine(out string) string {
	line, _, _ := strings.Cut(out, "\n")
	return line
}
