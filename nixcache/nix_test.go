package nixcache

// Against real nix (Debian's nix-bin 2.8): every store here is a private
// local store under t.TempDir() (`--store DIR`, a chroot store with
// /nix/store as its store directory), so nothing touches the machine's
// /nix, and nix's narinfo cache lives in a temporary XDG_CACHE_HOME, so a
// tampered narinfo is never answered from an earlier lookup.

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// nixTestConfig: flakes on, no sandbox, no substituters (offline), as
// ../shared/MACHINE.md gives it.
const nixTestConfig = "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false"

type nixEnv struct {
	t   *testing.T
	env []string
	dir string
}

// newNixEnv skips the test when nix is missing.
func newNixEnv(t *testing.T) *nixEnv {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix is not installed (apt-get install nix-bin)")
	}
	dir := t.TempDir()
	env := append(os.Environ(), "NIX_CONFIG="+nixTestConfig, "XDG_CACHE_HOME="+filepath.Join(dir, "xdg-cache"))
	return &nixEnv{t: t, env: env, dir: dir}
}

// run runs nix with args and returns stdout, stderr and the error.
func (e *nixEnv) run(args ...string) (string, string, error) {
	cmd := exec.Command("nix", args...)
	cmd.Env = e.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// must runs nix and fails the test when it fails.
func (e *nixEnv) must(args ...string) string {
	e.t.Helper()
	out, stderr, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("nix %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// buildClosure builds, in a private store, a path that is not content
// addressed (nix accepts those only with a trusted signature) and refers to
// a builtins.toFile path. It returns the store and the path.
func (e *nixEnv) buildClosure() (store, path string) {
	e.t.Helper()
	store = filepath.Join(e.dir, "src-store")
	expr := filepath.Join(e.dir, "closure.nix")
	src := `let dep = builtins.toFile "dep.txt" "a dependency"; in
derivation { name = "signed-thing"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "echo ${dep} > $out; echo $out >> $out" ]; }`
	if err := os.WriteFile(expr, []byte(src), 0o644); err != nil {
		e.t.Fatal(err)
	}
	// A store outside /nix builds in a chroot: /bin/sh and its libraries
	// come in through extra-sandbox-paths.
	out, stderr, err := e.run("build", "--store", store, "-f", expr, "--json", "--no-link",
		"--option", "extra-sandbox-paths", "/bin /usr /lib /lib64")
	if err != nil {
		e.t.Skipf("cannot build in a private nix store here (needs root or user namespaces): %v\n%s", err, stderr)
	}
	var res []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		e.t.Fatalf("nix build --json printed %q: %v", out, err)
	}
	return store, res[0].Outputs["out"]
}

// writeKey writes a Go-made key pair as nix reads them and returns the
// file names.
func writeKey(t *testing.T, dir string, k SecretKey) (secFile string, pub string) {
	t.Helper()
	secFile = filepath.Join(dir, k.Name+".sec")
	if err := os.WriteFile(secFile, []byte(k.Encode()), 0o600); err != nil {
		t.Fatal(err)
	}
	return secFile, k.Public().String()
}

func narInfoFile(cache, storePath string) string {
	return filepath.Join(cache, filepath.Base(storePath)[:32]+".narinfo")
}

func readNarInfoFile(t *testing.T, p string) *NarInfo {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ParseNarInfo(b)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return n
}

// TestNixUsesGoKeys: a key pair made here works in nix both ways: nix signs
// with the Go-made secret key (nix copy --to file://…?secret-key=, nix
// store sign --key-file) and checks with the Go-made public key (nix copy
// --from with trusted-public-keys, nix store verify); Go verifies what nix
// signed.
func TestNixUsesGoKeys(t *testing.T) {
	e := newNixEnv(t)
	store, path := e.buildClosure()
	goKey, err := NewFleetKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	secFile, pub := writeKey(t, e.dir, goKey)

	// nix signs with the Go-made key; Go verifies nix's signature.
	cache := filepath.Join(e.dir, "cache")
	e.must("copy", "--store", store, "--to", "file://"+cache+"?secret-key="+secFile, path)
	n := readNarInfoFile(t, narInfoFile(cache, path))
	if k, err := n.Verify([]PublicKey{goKey.Public()}); err != nil || k.Name != goKey.Name {
		t.Fatalf("Go does not verify nix's signature with the Go-made key: %v, %v", k, err)
	}

	// nix checks with the Go-made public key.
	dst := filepath.Join(e.dir, "dst-store")
	e.must("copy", "--from", "file://"+cache, "--to", dst, "--option", "trusted-public-keys", pub, path)
	if _, stderr, err := e.run("path-info", "--store", dst, path); err != nil {
		t.Fatalf("path not in the destination store after nix copy: %v\n%s", err, stderr)
	}

	// nix store sign / verify with a second Go-made key, in a store where
	// the path is not "ultimate" (built there), so signatures count.
	second, err := GenerateKey("second-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	secFile2, pub2 := writeKey(t, e.dir, second)
	if _, stderr, err := e.run("store", "verify", "--store", dst, "--trusted-public-keys", pub2, path); err == nil {
		t.Fatalf("nix store verify passed before the path was signed by second-1: %s", stderr)
	}
	e.must("store", "sign", "--store", dst, "--key-file", secFile2, path)
	e.must("store", "verify", "--store", dst, "--trusted-public-keys", pub2, path)

	// The signature nix store sign made verifies in Go over Go's
	// fingerprint of what nix path-info reports.
	var infos []struct {
		Path       string   `json:"path"`
		NarHash    string   `json:"narHash"`
		NarSize    uint64   `json:"narSize"`
		References []string `json:"references"`
		Signatures []string `json:"signatures"`
	}
	if err := json.Unmarshal([]byte(e.must("path-info", "--store", dst, "--json", "--sigs", path)), &infos); err != nil || len(infos) != 1 {
		t.Fatalf("nix path-info --json: %v", err)
	}
	info := infos[0]
	h, err := ParseSHA256(info.NarHash) // SRI form here
	if err != nil {
		t.Fatal(err)
	}
	n2 := &NarInfo{StorePath: info.Path, NarHash: h, NarSize: info.NarSize}
	for _, r := range info.References {
		n2.References = append(n2.References, filepath.Base(r))
	}
	for _, s := range info.Signatures {
		sig, err := ParseSignature(s)
		if err != nil {
			t.Fatalf("nix path-info signature %q: %v", s, err)
		}
		n2.Sigs = append(n2.Sigs, sig)
	}
	if k, err := n2.Verify([]PublicKey{second.Public()}); err != nil || k.Name != "second-1" {
		t.Fatalf("Go does not verify nix store sign's signature: %v", err)
	}
}

// TestNixChecksGoSignatures: narinfos from an unsigned `nix copy --to
// file://` cache, signed here, are accepted by `nix copy --from` with
// signature checks on; tampered, unsigned or foreign-signed ones are
// refused by nix, and Verify says why.
func TestNixChecksGoSignatures(t *testing.T) {
	e := newNixEnv(t)
	store, path := e.buildClosure()
	fleet, other := fleetAndOther(t)
	unsigned := filepath.Join(e.dir, "unsigned")
	e.must("copy", "--store", store, "--to", "file://"+unsigned+"?compression=none", path)

	for _, tc := range []struct {
		name    string
		change  func(t *testing.T, n *NarInfo) // on the top path's narinfo, after Go signed it
		wantGo  error                          // nil: Verify passes
		wantNix string                         // "": nix copy succeeds; else in nix's stderr
	}{
		{"signed by the fleet key", func(t *testing.T, n *NarInfo) {}, nil, ""},
		{"NarHash changed after signing", func(t *testing.T, n *NarInfo) { n.NarHash[3] ^= 0x10 }, ErrBadSignature, "lacks a valid signature"},
		{"reference dropped after signing", func(t *testing.T, n *NarInfo) { n.References = n.References[:0] }, ErrBadSignature, "lacks a valid signature"},
		{"signed by another key", func(t *testing.T, n *NarInfo) { n.Sigs = nil; must(t, n.Sign(other)) }, ErrNoTrustedSignature, "lacks a valid signature"},
		{"unsigned", func(t *testing.T, n *NarInfo) { n.Sigs = nil }, ErrNoTrustedSignature, "lacks a valid signature"},
		{"wrong NarHash, signed anyway", func(t *testing.T, n *NarInfo) { n.NarHash[3] ^= 0x10; must(t, n.Sign(fleet)) }, nil, "hash mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(e.dir, "case-"+strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.CopyFS(cache, os.DirFS(unsigned)); err != nil {
				t.Fatal(err)
			}
			paths, err := filepath.Glob(filepath.Join(cache, "*.narinfo"))
			if err != nil || len(paths) != 2 {
				t.Fatalf("want 2 narinfos in the cache, got %v (%v)", paths, err)
			}
			for _, p := range paths {
				n := readNarInfoFile(t, p)
				if len(n.Sigs) != 0 {
					t.Fatalf("%s: nix copy without secret-key signed it", p)
				}
				must(t, n.Sign(fleet))
				if p == narInfoFile(cache, path) {
					tc.change(t, n)
				}
				if err := os.WriteFile(p, n.Format(), 0o644); err != nil {
					t.Fatal(err)
				}
			}

			n := readNarInfoFile(t, narInfoFile(cache, path))
			_, err = n.Verify([]PublicKey{fleet.Public()})
			if !errors.Is(err, tc.wantGo) || (tc.wantGo == nil) != (err == nil) {
				t.Errorf("Verify = %v, want %v", err, tc.wantGo)
			}

			dst := filepath.Join(e.dir, "dst-"+filepath.Base(cache))
			_, stderr, err := e.run("copy", "--from", "file://"+cache, "--to", dst,
				"--option", "trusted-public-keys", fleet.Public().String(), "--option", "require-sigs", "true", path)
			switch {
			case tc.wantNix == "" && err != nil:
				t.Fatalf("nix copy --from a Go-signed cache failed: %v\n%s", err, stderr)
			case tc.wantNix != "" && err == nil:
				t.Fatalf("nix copy accepted it; want a failure saying %q", tc.wantNix)
			case tc.wantNix != "" && !strings.Contains(stderr, tc.wantNix):
				t.Fatalf("nix copy failed, but not saying %q:\n%s", tc.wantNix, stderr)
			}
		})
	}
}
