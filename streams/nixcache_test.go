package streams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nixEnv is the environment real nix runs in here: no sandbox, nothing to
// download, and extra settings.
func nixEnv(extra ...string) []string {
	conf := "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false\n" + strings.Join(extra, "\n")
	return append(os.Environ(), "NIX_CONFIG="+conf)
}

func runNix(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("nix", args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("nix %s: %w\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func mustNix(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, err := runNix(t, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNixCacheRealNix: a path built by real nix, copied into a signed
// binary cache directory, uploaded into the hub's cache and fetched from
// the hub's HTTP by real nix into a store of its own (a chroot store that
// shares nothing with the machine's /nix), with signature checks on.
// Tampered and unsigned paths are refused by nix with the reason.
func TestNixCacheRealNix(t *testing.T) {
	needNixRoot(t)
	dir := t.TempDir()
	env := nixEnv()
	sec, pub := nixSigningKey(t, dir, "pinkie-test-1")
	// Two input-addressed paths (no CA: nix trusts those only by signature),
	// built fresh for this run.
	drv := filepath.Join(dir, "d.nix")
	if err := os.WriteFile(drv, []byte(`{ seed }: derivation { name = "pinkie-cache-test"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo ${seed} > $out" ]; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(seed string) string { return nixBuild(t, env, drv, "seed", seed) }
	seed := fmt.Sprint(time.Now().UnixNano())
	signed, unsigned := build(seed+"-signed"), build(seed+"-unsigned")
	local := filepath.Join(dir, "local-cache")
	mustNix(t, env, "copy", "--to", "file://"+local+"?secret-key="+sec, signed)

	hub, _ := startAuthedTestHub(t, "goliath")
	ctx := context.Background()
	st, err := hub.NixCache().UploadDir(ctx, local)
	if err != nil {
		t.Fatal(err)
	}
	if st.Paths != 1 || st.NewPaths != 1 || st.NewNARs != 1 || st.BytesSent == 0 {
		t.Errorf("first upload: %+v, want one new path and NAR", st)
	}
	// Again: nothing to send.
	if st, err = hub.NixCache().UploadDir(ctx, local); err != nil || st.NewPaths != 0 || st.NewNARs != 0 || st.SkippedPaths != 1 {
		t.Errorf("second upload: %+v %v, want everything skipped", st, err)
	}

	cacheURL := "http://" + hub.HTTPAddr() + "/nix-cache"
	trusted := nixEnv("trusted-public-keys = " + strings.TrimSpace(string(pub)))
	fetch := func(p string) error {
		// A fresh store each time, and a fresh narinfo cache: nix keeps
		// narinfos it has seen in ~/.cache/nix.
		env := append(append([]string{}, trusted...), "XDG_CACHE_HOME="+t.TempDir())
		_, err := runNix(t, env, "copy", "--from", cacheURL, "--to", filepath.Join(t.TempDir(), "store"), p)
		return err
	}
	if err := fetch(signed); err != nil {
		t.Fatalf("fetching a signed path from the hub: %v", err)
	}

	// An unsigned path, uploaded as is: nix refuses it.
	local2 := filepath.Join(dir, "unsigned-cache")
	mustNix(t, env, "copy", "--to", "file://"+local2, unsigned)
	if _, err := hub.NixCache().UploadDir(ctx, local2); err != nil {
		t.Fatal(err)
	}
	if err := fetch(unsigned); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("fetching an unsigned path: %v, want a refusal naming the signature", err)
	}

	// A tampered NAR: the narinfo's hashes no longer match.
	hash := filepath.Base(signed)[:32]
	e, err := hub.NixCache().narinfo.Get(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	url, err := narinfoURL(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(local2, filepath.FromSlash(must(narinfoURL(must(os.ReadFile(filepath.Join(local2, filepath.Base(unsigned)[:32]+".narinfo")))))))
	if _, err := hub.NixCache().nar.PutBytes(ctx, url, must(os.ReadFile(other))); err != nil {
		t.Fatal(err)
	}
	if err := fetch(signed); err == nil || !strings.Contains(err.Error(), "hash mismatch") {
		t.Errorf("fetching a path whose NAR was swapped: %v, want a hash mismatch", err)
	}

	// A tampered narinfo (another NAR size under the same signature), with
	// the right NAR back in place.
	if _, err := hub.NixCache().nar.PutBytes(ctx, url, must(os.ReadFile(filepath.Join(local, filepath.FromSlash(url))))); err != nil {
		t.Fatal(err)
	}
	if err := fetch(signed); err != nil {
		t.Fatalf("fetching with the NAR restored: %v", err)
	}
	tampered := bytes.Replace(e.Value(), []byte("NarSize: "), []byte("NarSize: 1"), 1)
	if _, err := hub.NixCache().narinfo.Put(ctx, hash, tampered); err != nil {
		t.Fatal(err)
	}
	if err := fetch(signed); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("fetching a path with a tampered narinfo: %v, want a refusal naming the signature", err)
	}

	// Beyond loopback without the token: no cache.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/nix-cache/"+hash+".narinfo", nil)
	req.RemoteAddr = "192.0.2.1:4242"
	hub.nixCacheHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("a client beyond loopback without the token got %d, want 401", rec.Code)
	}
}

// needNixRoot skips a test that builds with the machine's nix.
func needNixRoot(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("needs nix (apt-get install nix-bin)")
	}
	if os.Geteuid() != 0 {
		t.Skip("building with nix here needs root (the machine's /nix is root's)")
	}
}

// nixSigningKey makes a Nix signing key pair: the secret key's file and
// the public key.
func nixSigningKey(t *testing.T, dir, name string) (secFile string, pub []byte) {
	t.Helper()
	env := nixEnv()
	secFile = filepath.Join(dir, name+".sec")
	if err := os.WriteFile(secFile, []byte(mustNix(t, env, "key", "generate-secret", "--key-name", name)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nix", "key", "convert-secret-to-public")
	cmd.Env, cmd.Stdin = env, bytes.NewReader(must(os.ReadFile(secFile)))
	pub, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix key convert-secret-to-public: %v", err)
	}
	return secFile, pub
}

// nixBuild builds the derivation in file drv with string arguments
// (name, value, ...) and returns its out path.
func nixBuild(t *testing.T, env []string, drv string, args ...string) string {
	t.Helper()
	cmdArgs := []string{"build", "--no-link", "--json", "-f", drv}
	for i := 0; i+1 < len(args); i += 2 {
		cmdArgs = append(cmdArgs, "--argstr", args[i], args[i+1])
	}
	out := mustNix(t, env, cmdArgs...)
	var res []struct{ Outputs map[string]string }
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		t.Fatalf("nix build --json: %q: %v", out, err)
	}
	return res[0].Outputs["out"]
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestNixCacheUploadOverNATS: an operator's client uploads a signed
// binary cache directory into the hub over NATS (no JetStream rights of
// its own), only what the hub lacks, resuming a NAR cut short; real nix
// then fetches the path from the hub. A reader key, an unsigned path and
// a NAR that is not the file its name says are refused.
func TestNixCacheUploadOverNATS(t *testing.T) {
	needNixRoot(t)
	dir := t.TempDir()
	env := nixEnv()
	otherSec, _ := nixSigningKey(t, dir, "pinkie-other-1")
	// The fleet key pinkie keys init made; the fixture's key is another.
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"goliath"}); err != nil {
		t.Fatal(err)
	}
	sec, pub := NixSecretKeyFile(auth), must(os.ReadFile(NixPublicKeyFile(auth)))
	// A path of 3 MB of random bytes: its NAR spans many chunks.
	drv := filepath.Join(dir, "d.nix")
	if err := os.WriteFile(drv, []byte(`{ seed }: derivation { name = "pinkie-upload-test"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo ${seed} > $out.seed; /bin/dd if=/dev/urandom of=$out bs=1M count=3 status=none" ]; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(seed string) string { return nixBuild(t, env, drv, "seed", seed) }
	seed := fmt.Sprint(time.Now().UnixNano())
	signed, unsigned := build(seed+"-a"), build(seed+"-b")
	local := filepath.Join(dir, "local-cache")
	mustNix(t, env, "copy", "--to", "file://"+local+"?secret-key="+sec+"&compression=none", signed)

	hub := startTestHub(t, auth, t.TempDir())
	defer hub.Close()
	ctx := context.Background()
	op, err := Connect(ctx, hub.ClientURL(), OperatorSeedFile(auth), "upload test")
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	hash := filepath.Base(signed)[:32]
	info := must(os.ReadFile(filepath.Join(local, hash+".narinfo")))
	url := must(narinfoURL(info))
	nar := must(os.ReadFile(filepath.Join(local, filepath.FromSlash(url))))
	// A cut: the first chunk only reaches the hub.
	m := narChunkMsg(url, 0, int64(len(nar)), nar[:nixPutChunk])
	m.Subject = NixCachePutOperator + ".nar"
	if _, err := op.Conn.RequestMsg(m, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := UploadNixCacheDir(ctx, op, NixCachePutOperator, local)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(nar)-nixPutChunk) + int64(len(info)); st.Missing != 1 || st.BytesSent != want {
		t.Errorf("resumed upload: %+v, want 1 missing path and %d bytes sent (the NAR less the chunk the hub had, and the narinfo)", st, want)
	}
	if st, err = UploadNixCacheDir(ctx, op, NixCachePutOperator, local); err != nil || st.Missing != 0 || st.BytesSent != 0 {
		t.Errorf("second upload: %+v %v, want nothing sent", st, err)
	}
	trusted := append(nixEnv("trusted-public-keys = "+strings.TrimSpace(string(pub))), "XDG_CACHE_HOME="+t.TempDir())
	if _, err := runNix(t, trusted, "copy", "--from", "http://"+hub.HTTPAddr()+"/nix-cache", "--to", filepath.Join(t.TempDir(), "store"), signed); err != nil {
		t.Fatalf("fetching the uploaded path: %v", err)
	}

	// Unsigned: refused at the hub.
	local2 := filepath.Join(dir, "unsigned")
	mustNix(t, env, "copy", "--to", "file://"+local2, unsigned)
	if _, err := UploadNixCacheDir(ctx, op, NixCachePutOperator, local2); err == nil || !strings.Contains(err.Error(), "unsigned") {
		t.Errorf("unsigned upload: %v, want a refusal saying unsigned", err)
	}
	// Signed, but by another key than the fleet's.
	local4 := filepath.Join(dir, "other-key")
	mustNix(t, env, "copy", "--to", "file://"+local4+"?secret-key="+otherSec+"&compression=zstd", unsigned)
	if _, err := UploadNixCacheDir(ctx, op, NixCachePutOperator, local4); err == nil || !strings.Contains(err.Error(), "no signature by a trusted key") {
		t.Errorf("upload signed by another key: %v, want a refusal naming the trusted key", err)
	}
	// A NAR that is not the file its name says.
	local3 := filepath.Join(dir, "swapped")
	mustNix(t, env, "copy", "--to", "file://"+local3+"?secret-key="+sec+"&compression=bzip2", unsigned) // another file than the one uploaded above
	h3 := filepath.Base(unsigned)[:32]
	url3 := must(narinfoURL(must(os.ReadFile(filepath.Join(local3, h3+".narinfo")))))
	if err := os.WriteFile(filepath.Join(local3, filepath.FromSlash(url3)), []byte("not that NAR"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := UploadNixCacheDir(ctx, op, NixCachePutOperator, local3); err == nil || !strings.Contains(err.Error(), "not the") {
		t.Errorf("swapped NAR upload: %v, want a refusal naming the hash", err)
	}
	// A reader key cannot upload.
	rd, err := Connect(ctx, hub.ClientURL(), ReaderSeedFile(auth), "upload test reader")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := UploadNixCacheDir(rctx, rd, NixCachePutOperator, local3); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("a reader key's upload: %v, want a permission refusal", err)
	} else if time.Since(start) > 5*time.Second {
		t.Errorf("the reader's refusal took %s: it must fail fast", time.Since(start))
	}
}
