package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/nixcache"
	"github.com/pinkiefleet/pinkie/streams"
)

// TestNixCacheUploadSurvivesHubRestart: an operator uploads a closure (one
// NAR of 48 MiB and three small ones, several at once) into a real hub
// process, which is killed with SIGKILL when a third of the large NAR is
// in and started again on the same data. The upload waits for it, goes on
// from what the hub staged, and completes: every byte was sent once, and
// what was sent again is a few chunks, not the NAR; real nix then fetches
// the large path from the hub's cache into a store of its own, checking
// its hash and the fleet's signature.
func TestNixCacheUploadSurvivesHubRestart(t *testing.T) {
	deployNeedNix(t)
	if os.Geteuid() != 0 {
		t.Skip("building with nix here needs root (the machine's /nix is root's)")
	}
	env := append(os.Environ(), "NIX_CONFIG="+deployNixConfig)
	dir := t.TempDir()
	drv := filepath.Join(dir, "d.nix")
	if err := os.WriteFile(drv, []byte(`{ seed, mib }: derivation { name = "pinkie-restart-${mib}"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "echo ${seed} > /dev/null; /bin/dd if=/dev/urandom of=$out bs=1048576 count=${mib} 2>/dev/null" ]; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := fmt.Sprint(time.Now().UnixNano())
	var paths []string
	for _, mib := range []string{"48", "1", "2", "3"} {
		out, stderr, err := nixRun(t, env, dir, "nix", "build", "--no-link", "--json", "-f", drv, "--argstr", "seed", seed, "--argstr", "mib", mib)
		if err != nil {
			t.Fatalf("nix build: %v\n%s", err, stderr)
		}
		var res []struct{ Outputs map[string]string }
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
			t.Fatalf("nix build --json: %q: %v", out, err)
		}
		paths = append(paths, res[0].Outputs["out"])
	}

	f := newFleet(t, "goliath")
	local := filepath.Join(dir, "cache")
	args := append([]string{"nix", "copy", "--to", "file://" + local + "?secret-key=" + streams.NixSecretKeyFile(f.auth) + "&compression=none"}, paths...)
	if _, stderr, err := nixRun(t, env, dir, args...); err != nil {
		t.Fatalf("nix copy: %v\n%s", err, stderr)
	}
	// What the upload must send: every NAR and narinfo once.
	var whole, bigSize int64
	var bigURL string
	for _, p := range paths {
		info, err := os.ReadFile(filepath.Join(local, filepath.Base(p)[:32]+".narinfo"))
		if err != nil {
			t.Fatal(err)
		}
		ni, err := nixcache.ParseNarInfo(info)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(local, filepath.FromSlash(ni.URL)))
		if err != nil {
			t.Fatal(err)
		}
		whole += fi.Size() + int64(len(info))
		if p == paths[0] {
			bigURL, bigSize = ni.URL, fi.Size()
		}
	}

	hub := f.startHub()
	c := f.client()
	var once sync.Once
	killed := make(chan struct{})
	type result struct {
		st  streams.NixUploadStats
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		st, err := streams.UploadNixCacheDir(ctx, c, streams.NixCachePutOperator, local,
			streams.UploadProgress(func(url string, offset, size int64) {
				if url == bigURL && offset >= size/3 {
					once.Do(func() { hub.kill(); close(killed) })
				}
			}))
		done <- result{st, err}
	}()
	select {
	case <-killed:
	case r := <-done:
		t.Fatalf("the upload ended (%+v, %v) before the hub was killed", r.st, r.err)
	}
	f.startHub()
	r := <-done
	if r.err != nil {
		t.Fatalf("upload across a hub restart: %v", r.err)
	}
	st := r.st
	t.Logf("upload across a hub restart: %+v; the NARs and narinfos are %d bytes, the large NAR %d", st, whole, bigSize)
	if st.Paths != 4 || st.Missing != 4 {
		t.Errorf("paths %d, missing %d: want 4 and 4", st.Paths, st.Missing)
	}
	if st.Retries == 0 {
		t.Errorf("no call was tried again: the upload never saw the hub go away")
	}
	if got := st.BytesSent - st.BytesResent; got != whole {
		t.Errorf("sent %d bytes, %d of them again: %d once, want every byte once (%d)", st.BytesSent, st.BytesResent, got, whole)
	}
	if st.BytesResent >= bigSize/4 {
		t.Errorf("sent %d bytes again after the restart: the upload started the %d-byte NAR over instead of going on", st.BytesResent, bigSize)
	}

	// Real nix checks the NAR's hash and the fleet's signature.
	pub, err := os.ReadFile(streams.NixPublicKeyFile(f.auth))
	if err != nil {
		t.Fatal(err)
	}
	fetchEnv := append(os.Environ(), "NIX_CONFIG="+deployNixConfig+"\ntrusted-public-keys = "+strings.TrimSpace(string(pub)), "XDG_CACHE_HOME="+t.TempDir())
	if _, stderr, err := nixRun(t, fetchEnv, dir, "nix", "copy", "--from", f.httpURL()+"/nix-cache", "--to", filepath.Join(t.TempDir(), "store"), paths[0]); err != nil {
		t.Fatalf("fetching the large path from the restarted hub: %v\n%s", err, stderr)
	}
}
