package streams

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNixSubstituterRealNix: real nix fetches through an agent's loopback
// substituter, from the hub's cache over the agent's leaf link with auth
// on, into a store of its own, trusting the key the agent learnt from the
// hub: a signed path arrives; a NAR of several chunks arrives intact; an
// unsigned path is refused naming the signature. The transfer rate is
// logged next to nix copy from the file:// cache the upload came from.
func TestNixSubstituterRealNix(t *testing.T) {
	needNixRoot(t)
	dir := t.TempDir()
	env := nixEnv()
	sec, pub := nixSigningKey(t, dir, "pinkie-fleet-1")
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"goliath", "koishi"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(NixPublicKeyFile(auth), pub, 0o644); err != nil {
		t.Fatal(err)
	}

	// Input-addressed paths built fresh for this run: a small one, one of
	// 4 MiB of random bytes (a NAR of several chunks), an unsigned one.
	drv := filepath.Join(dir, "d.nix")
	if err := os.WriteFile(drv, []byte(`{ seed, mib }: derivation { name = "pinkie-substituter-test"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "if [ ${mib} = 0 ]; then echo ${seed} > $out; else /bin/dd if=/dev/urandom of=$out bs=1048576 count=${mib} 2>/dev/null; fi" ]; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(seed, mib string) string { return nixBuild(t, env, drv, "seed", seed, "mib", mib) }
	seed := fmt.Sprint(time.Now().UnixNano())
	small, big, unsigned := build(seed+"-small", "0"), build(seed+"-big", "4"), build(seed+"-unsigned", "0")
	local := filepath.Join(dir, "local-cache")
	mustNix(t, env, "copy", "--to", "file://"+local+"?secret-key="+sec, small, big)
	unsignedCache := filepath.Join(dir, "unsigned-cache")
	mustNix(t, env, "copy", "--to", "file://"+unsignedCache, unsigned)

	hub := startTestHub(t, auth, t.TempDir())
	defer hub.Close()
	ctx := context.Background()
	for _, c := range []string{local, unsignedCache} {
		if _, err := hub.NixCache().UploadDir(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	agent, sub := startSubstitutingAgent(t, "koishi", hub.LeafURL(), HostSeedFile(auth, "koishi"), "")
	defer agent.Close()
	url, key, err := sub.Source(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if key != strings.TrimSpace(string(pub)) {
		t.Fatalf("the agent learnt %q from the hub, want %q", key, pub)
	}
	fetch := func(from, p string) (time.Duration, error) {
		env := append(nixEnv("trusted-public-keys = "+key), "XDG_CACHE_HOME="+t.TempDir())
		start := time.Now()
		_, err := runNix(t, env, "copy", "--from", from, "--to", filepath.Join(t.TempDir(), "store"), p)
		return time.Since(start), err
	}
	if _, err := fetch(url, small); err != nil {
		t.Fatalf("fetching a signed path through the agent: %v", err)
	}
	took, err := fetch(url, big)
	if err != nil {
		t.Fatalf("fetching a 4 MiB path through the agent: %v", err)
	}
	tookFile, err := fetch("file://"+local, big)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(big)
	mb := float64(st.Size()) / 1e6
	t.Logf("%.1f MB path: through the agent's substituter %.0f ms (%.1f MB/s), nix copy --from file:// %.0f ms (%.1f MB/s)",
		mb, took.Seconds()*1000, mb/took.Seconds(), tookFile.Seconds()*1000, mb/tookFile.Seconds())
	if _, err := fetch(url, unsigned); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("fetching an unsigned path through the agent: %v, want a refusal naming the signature", err)
	}

	// As on a host that shares nothing: nix in a mount namespace whose
	// /nix is an empty directory fetches the path into that store.
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("the empty-/nix case needs unshare (util-linux)")
	}
	emptyNix := t.TempDir()
	sh := exec.Command("unshare", "-m", "sh", "-c", `mount --bind "$1" /nix && nix copy --from "$2" "$3" && nix path-info "$3"`, "sh", emptyNix, url, big)
	sh.Env = append(nixEnv("trusted-public-keys = "+key), "XDG_CACHE_HOME="+t.TempDir())
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("fetching into an empty /nix in a mount namespace: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(emptyNix, "store", filepath.Base(big))); err != nil {
		t.Errorf("the path is not in the namespace's store: %v", err)
	}
}
