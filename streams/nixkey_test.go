package streams

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pinkiefleet/pinkie/nixcache"
)

func TestNixKeyPairInAuthDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	if _, err := KeysInit(dir, []string{"goliath"}); err != nil {
		t.Fatal(err)
	}
	sec, err := LoadNixSecretKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadNixPublicKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if pub.String() != sec.Public().String() {
		t.Fatalf("public key file %s is not the secret key's public half %s", pub, sec.Public())
	}

	// A public key file that belongs to another key is refused, naming both.
	other, err := nixcache.GenerateKey("other-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(NixPublicKeyFile(dir), []byte(other.Public().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNixSecretKey(dir); err == nil || !strings.Contains(err.Error(), "other-1") || !strings.Contains(err.Error(), "is not the public half of") {
		t.Errorf("LoadNixSecretKey with a foreign public key file = %v", err)
	}

	// Without the public key file (a crash between the two writes), the
	// public key comes from the secret key.
	if err := os.Remove(NixPublicKeyFile(dir)); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadNixPublicKey(dir); err != nil || got.String() != sec.Public().String() {
		t.Errorf("LoadNixPublicKey without the .pub file = %v, %v", got, err)
	}
	// add-nix-key still refuses: half a pair is a key.
	if _, err := KeysAddNixKey(dir); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("KeysAddNixKey with the secret key present = %v", err)
	}

	// KeysInit refuses a directory that holds a Nix key but no auth file,
	// before writing anything.
	stray := t.TempDir()
	if err := os.WriteFile(NixSecretKeyFile(stray), []byte(sec.Encode()), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := KeysInit(stray, []string{"goliath"}); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("KeysInit over a stray Nix key = %v", err)
	}
	if _, err := os.Stat(OperatorSeedFile(stray)); err == nil {
		t.Errorf("KeysInit wrote seeds before refusing")
	}
}

func TestReservedHostNames(t *testing.T) {
	for _, h := range []string{"operator", "put"} {
		if _, err := KeysInit(t.TempDir(), []string{h}); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("keys init with host %q: %v, want a refusal saying reserved", h, err)
		}
	}
	dir := t.TempDir()
	if _, err := KeysInit(dir, []string{"goliath"}); err != nil {
		t.Fatal(err)
	}
	if _, err := KeysAddHost(dir, "put"); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("keys add-host put: %v, want a refusal saying reserved", err)
	}
}
