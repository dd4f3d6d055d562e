package nixcache

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/pinkiefleet/pinkie/bounded"
)

// Nix keys and signatures are NAME:BASE64 (src/libstore/crypto.cc): the
// name says which key, so a verifier can pick it out of its trusted set.
// Secret keys hold libsodium's 64 bytes (seed then public key), which is
// Go's ed25519.PrivateKey; public keys hold 32 bytes; signatures 64.

// SecretKey is a Nix signing key. Its String does not print the key; use
// Encode to write it out.
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey
}

// PublicKey is a Nix public key, as in nix.conf's trusted-public-keys.
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// maxKeyFile bounds key files: a secret key line is under 200 bytes.
const maxKeyFile = 4 * bounded.KiB

// GenerateKey makes a new signing key named name from rand (crypto/rand's
// Reader when nil).
func GenerateKey(name string, rand io.Reader) (SecretKey, error) {
	if err := checkKeyName(name); err != nil {
		return SecretKey{}, err
	}
	_, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return SecretKey{}, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return SecretKey{Name: name, Key: priv}, nil
}

// checkKeyName refuses names Nix cannot split off (empty, with a colon) or
// that would break a space-separated trusted-public-keys list.
func checkKeyName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("key name is empty")
	case strings.ContainsAny(name, ": \t\r\n"):
		return fmt.Errorf("key name %q holds a colon or white space", name)
	}
	return nil
}

// splitKey cuts NAME:BASE64 and decodes the base-64 part to want bytes.
// what is "secret key", "public key" or "signature", for errors.
func splitKey(what, s string, want int) (string, []byte, error) {
	s = strings.TrimSpace(s)
	name, b64, ok := strings.Cut(s, ":")
	if !ok {
		return "", nil, fmt.Errorf("%s: no NAME: prefix (want NAME:BASE64)", what)
	}
	if err := checkKeyName(name); err != nil {
		return "", nil, fmt.Errorf("%s: %w", what, err)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", nil, fmt.Errorf("%s %s: bad base 64: %w", what, name, err)
	}
	if len(raw) != want {
		return "", nil, fmt.Errorf("%s %s: %d bytes, want %d", what, name, len(raw), want)
	}
	return name, raw, nil
}

// ParseSecretKey reads a secret key as `nix key generate-secret` prints it.
// A key whose public half does not belong to its seed is refused: it would
// sign with signatures nobody can verify.
func ParseSecretKey(s string) (SecretKey, error) {
	name, raw, err := splitKey("secret key", s, ed25519.PrivateKeySize)
	if err != nil {
		if pub, perr := ParsePublicKey(s); perr == nil {
			return SecretKey{}, fmt.Errorf("secret key: %s is a public key; want the secret key (nix key generate-secret)", pub.Name)
		}
		return SecretKey{}, err
	}
	priv := ed25519.PrivateKey(raw)
	if !bytes.Equal(ed25519.NewKeyFromSeed(priv.Seed()).Public().(ed25519.PublicKey), priv[32:]) {
		return SecretKey{}, fmt.Errorf("secret key %s: its public half does not match its seed", name)
	}
	return SecretKey{Name: name, Key: priv}, nil
}

// ParsePublicKey reads a public key as `nix key convert-secret-to-public`
// prints it.
func ParsePublicKey(s string) (PublicKey, error) {
	name, raw, err := splitKey("public key", s, ed25519.PublicKeySize)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{Name: name, Key: ed25519.PublicKey(raw)}, nil
}

// ParsePublicKeys reads a white-space separated list of public keys, as
// nix.conf's trusted-public-keys holds them.
func ParsePublicKeys(s string) ([]PublicKey, error) {
	var keys []PublicKey
	for _, f := range strings.Fields(s) {
		k, err := ParsePublicKey(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ReadSecretKeyFile reads a secret key file (nix's secret-key-files format).
func ReadSecretKeyFile(path string) (SecretKey, error) {
	return readKeyFile(path, "secret", ParseSecretKey)
}

// ReadPublicKeyFile reads a file holding one public key.
func ReadPublicKeyFile(path string) (PublicKey, error) {
	return readKeyFile(path, "public", ParsePublicKey)
}

func readKeyFile[K any](path, what string, parse func(string) (K, error)) (K, error) {
	var zero K
	b, err := bounded.ReadPath(path, maxKeyFile)
	if err != nil {
		return zero, fmt.Errorf("read Nix %s key: %w", what, err)
	}
	k, err := parse(string(b))
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Encode is the key in Nix's text format, NAME:BASE64, without a newline
// (as nix prints it; nix reads secret-key files whole).
func (k SecretKey) Encode() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// String names the key without printing it, so a key that reaches a log
// does not leak.
func (k SecretKey) String() string { return "nix secret key " + k.Name }

// Public is the key's public half, with the same name.
func (k SecretKey) Public() PublicKey {
	return PublicKey{Name: k.Name, Key: k.Key.Public().(ed25519.PublicKey)}
}

// Sign signs data (a fingerprint) and returns the signature Nix writes in
// Sig lines.
func (k SecretKey) Sign(data string) Signature {
	return Signature{KeyName: k.Name, Sig: ed25519.Sign(k.Key, []byte(data))}
}

// String is the key in Nix's text format, NAME:BASE64.
func (k PublicKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// NewFleetKey makes a new signing key named pinkie-<id>-1, where id is 8
// characters of the hash of its public key: Nix keeps trusted keys in a
// map by name, so two fleets' keys must not share one, and the name stays
// the same wherever the key is copied. The -1 is Nix's convention for a
// key's generation. rand is crypto/rand's Reader when nil.
func NewFleetKey(rand io.Reader) (SecretKey, error) {
	k, err := GenerateKey("pinkie", rand)
	if err != nil {
		return SecretKey{}, err
	}
	h := sha256.Sum256(k.Public().Key)
	k.Name = "pinkie-" + NixBase32(h[:])[:8] + "-1"
	return k, nil
}

// Signature is one Sig line of a narinfo: which key, and the ed25519
// signature of the fingerprint.
type Signature struct {
	KeyName string
	Sig     []byte
}

// ParseSignature reads NAME:BASE64(64 bytes).
func ParseSignature(s string) (Signature, error) {
	name, raw, err := splitKey("signature", s, ed25519.SignatureSize)
	if err != nil {
		return Signature{}, err
	}
	return Signature{KeyName: name, Sig: raw}, nil
}

// String is the signature as a Sig line holds it.
func (s Signature) String() string {
	return s.KeyName + ":" + base64.StdEncoding.EncodeToString(s.Sig)
}
