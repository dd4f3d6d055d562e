package tests

// The fleet's Nix signing key pair in the auth directory (issue 12), as an
// operator meets it: pinkie keys init makes it, --nix-key takes nix's own,
// add-nix-key completes an older directory without ever overwriting, and
// show-nix-key prints what nix.conf's trusted-public-keys takes. Where nix
// is installed, nix itself reads the secret key file pinkie wrote.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// nixMadeSecret was printed by nix 2.8's `nix key generate-secret
// --key-name test-1`; its public half is nixMadePublic.
const (
	nixMadeSecret = "test-1:GDrB/ddSyqzpjj5odNH2/0qlxg50JsxK8k3NZNoyEcay64aOmpnYVwkeAyl6AfbRV3x8JCzOX6QmBES4WiZl0Q=="
	nixMadePublic = "test-1:suuGjpqZ2FcJHgMpegH20Vd8fCQszl+kJgREuFomZdE="
)

type nixKeyJSON struct {
	AuthFile  string `json:"auth_file"`
	SecFile   string `json:"nix_secret_key_file"`
	PubFile   string `json:"nix_public_key_file"`
	KeyName   string `json:"nix_key_name"`
	PublicKey string `json:"nix_public_key"`
}

func decodeNixKeyJSON(t *testing.T, out string) nixKeyJSON {
	t.Helper()
	var r nixKeyJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	return r
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKeysInitMakesNixKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	out, code := runPinkie(t, "keys", "init", dir, "--hosts", "goliath", "--json")
	if code != 0 {
		t.Fatalf("keys init: exit %d\n%s", code, out)
	}
	r := decodeNixKeyJSON(t, out)
	if r.SecFile != filepath.Join(dir, "nix-signing.sec") || r.PubFile != filepath.Join(dir, "nix-signing.pub") {
		t.Errorf("nix key files %q %q", r.SecFile, r.PubFile)
	}
	if !strings.HasPrefix(r.KeyName, "pinkie-") || !strings.HasSuffix(r.KeyName, "-1") || !strings.HasPrefix(r.PublicKey, r.KeyName+":") {
		t.Errorf("key name %q, public key %q", r.KeyName, r.PublicKey)
	}
	st, err := os.Stat(r.SecFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", r.SecFile, st.Mode().Perm())
	}
	if got := readString(t, r.PubFile); got != r.PublicKey+"\n" {
		t.Errorf("%s holds %q, want %q", r.PubFile, got, r.PublicKey)
	}
	// show-nix-key prints the bare key, for $(pinkie keys show-nix-key DIR).
	out, code = runPinkie(t, "keys", "show-nix-key", dir)
	if code != 0 || out != r.PublicKey+"\n" {
		t.Errorf("show-nix-key: exit %d, printed %q, want %q", code, out, r.PublicKey)
	}
	out, code = runPinkie(t, "keys", "show-nix-key", dir, "--json")
	if s := decodeNixKeyJSON(t, out); code != 0 || s.PublicKey != r.PublicKey || s.KeyName != r.KeyName || s.SecFile != "" {
		t.Errorf("show-nix-key --json: exit %d, %+v (the secret key file is none of its business)", code, s)
	}

	// nix reads the secret key file pinkie wrote and derives the same
	// public key.
	if _, err := exec.LookPath("nix"); err == nil {
		cmd := exec.Command("nix", "key", "convert-secret-to-public")
		cmd.Env = append(os.Environ(), "NIX_CONFIG=experimental-features = nix-command flakes")
		f, err := os.Open(r.SecFile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("nix key convert-secret-to-public < %s: %v", r.SecFile, err)
		}
		if strings.TrimSpace(string(got)) != r.PublicKey {
			t.Errorf("nix derives %q from the secret key, pinkie %q", got, r.PublicKey)
		}
	}

	// An existing key is never overwritten.
	sec := readString(t, r.SecFile)
	out, code = runPinkie(t, "keys", "add-nix-key", dir)
	if code != 2 || !strings.Contains(out, "refusing to overwrite a key") {
		t.Errorf("add-nix-key over an existing key: exit %d\n%s", code, out)
	}
	if readString(t, r.SecFile) != sec {
		t.Fatalf("add-nix-key changed the existing secret key")
	}
}

func TestKeysNixKeyFromFile(t *testing.T) {
	tmp := t.TempDir()
	secFile := filepath.Join(tmp, "cache.sec")
	pubFile := filepath.Join(tmp, "cache.pub")
	garbage := filepath.Join(tmp, "garbage.sec")
	for p, s := range map[string]string{secFile: nixMadeSecret, pubFile: nixMadePublic, garbage: "test-1:not*base64"} {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	dir := filepath.Join(tmp, "auth")
	out, code := runPinkie(t, "keys", "init", dir, "--hosts", "goliath", "--nix-key", secFile, "--json")
	if code != 0 {
		t.Fatalf("keys init --nix-key: exit %d\n%s", code, out)
	}
	if r := decodeNixKeyJSON(t, out); r.KeyName != "test-1" || r.PublicKey != nixMadePublic {
		t.Errorf("keys init --nix-key took %+v, want test-1's key", r)
	}
	if got := readString(t, filepath.Join(dir, "nix-signing.sec")); got != nixMadeSecret {
		t.Errorf("nix-signing.sec holds %q, want the given key", got)
	}

	for _, tc := range []struct{ name, file, want string }{
		{"a public key", pubFile, "test-1 is a public key"},
		{"bad base 64", garbage, "secret key test-1: bad base 64"},
		{"no such file", filepath.Join(tmp, "missing.sec"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(tmp, "auth-"+strings.ReplaceAll(tc.name, " ", "-"))
			out, code := runPinkie(t, "keys", "init", d, "--hosts", "goliath", "--nix-key", tc.file)
			if code != 2 || !strings.Contains(out, "--nix-key") || !strings.Contains(out, tc.want) {
				t.Errorf("keys init --nix-key %s: exit %d, want 2 saying %q:\n%s", tc.file, code, tc.want, out)
			}
			if _, err := os.Stat(d); err == nil {
				t.Errorf("keys init with a bad --nix-key created %s", d)
			}
		})
	}
}

// TestKeysAddNixKeyToOldAuthDir: an auth directory made before pinkie had
// a Nix cache gets its pair from add-nix-key; until then show-nix-key says
// how.
func TestKeysAddNixKeyToOldAuthDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	if out, code := runPinkie(t, "keys", "init", dir, "--hosts", "goliath"); code != 0 {
		t.Fatalf("keys init: exit %d\n%s", code, out)
	}
	for _, f := range []string{"nix-signing.sec", "nix-signing.pub"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	out, code := runPinkie(t, "keys", "show-nix-key", dir)
	if code != 2 || !strings.Contains(out, "holds no Nix signing key; make one with: pinkie keys add-nix-key "+dir) {
		t.Errorf("show-nix-key without a key: exit %d\n%s", code, out)
	}
	out, code = runPinkie(t, "keys", "add-nix-key", dir, "--json")
	if code != 0 {
		t.Fatalf("add-nix-key: exit %d\n%s", code, out)
	}
	r := decodeNixKeyJSON(t, out)
	if r.SecFile == "" || r.PublicKey == "" {
		t.Errorf("add-nix-key --json: %+v", r)
	}
	out, code = runPinkie(t, "keys", "show-nix-key", dir)
	if code != 0 || out != r.PublicKey+"\n" {
		t.Errorf("show-nix-key after add-nix-key: exit %d, %q, want %q", code, out, r.PublicKey)
	}
	// The hosts and roles are untouched: add-host still works.
	if out, code := runPinkie(t, "keys", "add-host", dir, "koishi"); code != 0 {
		t.Errorf("add-host after add-nix-key: exit %d\n%s", code, out)
	}

	// Not an auth directory at all.
	other := t.TempDir()
	out, code = runPinkie(t, "keys", "add-nix-key", other)
	if code != 2 || !strings.Contains(out, "holds no auth file; create it with: pinkie keys init") {
		t.Errorf("add-nix-key on an empty directory: exit %d\n%s", code, out)
	}
}
