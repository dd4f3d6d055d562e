package streams

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pinkiefleet/pinkie/nixcache"
)

// The fleet's Nix signing key pair lives in the auth directory next to the
// nkeys: the hub signs what enters its binary cache with the secret key,
// agents check what they fetch against the public key.

// NixSecretKeyFile is the fleet's Nix secret key (mode 0600, for the hub
// only), in nix's own format: usable as nix's secret-key-files or
// `nix copy --to 'file://…?secret-key=FILE'`.
func NixSecretKeyFile(dir string) string { return filepath.Join(dir, "nix-signing.sec") }

// NixPublicKeyFile is the fleet's Nix public key, one line, as nix.conf's
// trusted-public-keys takes it.
func NixPublicKeyFile(dir string) string { return filepath.Join(dir, "nix-signing.pub") }

// KeysOption changes what KeysInit and KeysAddNixKey write.
type KeysOption func(*keysOptions)

type keysOptions struct {
	nixKey *nixcache.SecretKey
}

// WithNixKey makes KeysInit and KeysAddNixKey store an existing Nix secret
// key (from nix key generate-secret, or a cache's key) instead of making a
// new one.
func WithNixKey(k nixcache.SecretKey) KeysOption {
	return func(o *keysOptions) { o.nixKey = &k }
}

// checkNoNixKey refuses a directory that already holds either half of a
// Nix key pair: a key is never overwritten.
func checkNoNixKey(dir string) error {
	for _, p := range []string{NixSecretKeyFile(dir), NixPublicKeyFile(dir)} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists: refusing to overwrite a key (show it with: pinkie keys show-nix-key %s)", p, dir)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}
	return nil
}

// writeNixKey writes the pair: the secret key first, so a crash between
// the two leaves a pair LoadNixKey can complete, never a public key
// without its secret.
func writeNixKey(dir string, opts []KeysOption) (nixcache.PublicKey, error) {
	var o keysOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkNoNixKey(dir); err != nil {
		return nixcache.PublicKey{}, err
	}
	var k nixcache.SecretKey
	if o.nixKey != nil {
		k = *o.nixKey
	} else {
		var err error
		if k, err = nixcache.NewFleetKey(nil); err != nil {
			return nixcache.PublicKey{}, err
		}
	}
	// Without a newline, as nix key generate-secret prints it.
	if err := writeFileAtomic(NixSecretKeyFile(dir), []byte(k.Encode()), 0o600); err != nil {
		return nixcache.PublicKey{}, err
	}
	pub := k.Public()
	if err := writeFileAtomic(NixPublicKeyFile(dir), []byte(pub.String()+"\n"), 0o644); err != nil {
		return nixcache.PublicKey{}, err
	}
	return pub, nil
}

// KeysAddNixKey gives an auth directory made before pinkie had a Nix cache
// its Nix signing key pair: a new one, or the key WithNixKey names. It
// refuses when either file exists.
func KeysAddNixKey(dir string, opts ...KeysOption) (nixcache.PublicKey, error) {
	if !authExists(dir) {
		return nixcache.PublicKey{}, fmt.Errorf("%s holds no auth file; create it with: pinkie keys init %s --hosts NAMES", dir, dir)
	}
	return writeNixKey(dir, opts)
}

// LoadNixPublicKey reads the fleet's Nix public key from an auth directory.
func LoadNixPublicKey(dir string) (nixcache.PublicKey, error) {
	p := NixPublicKeyFile(dir)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(NixSecretKeyFile(dir)); serr == nil {
			k, err := LoadNixSecretKey(dir)
			if err != nil {
				return nixcache.PublicKey{}, err
			}
			return k.Public(), nil
		}
		return nixcache.PublicKey{}, fmt.Errorf("%s holds no Nix signing key; make one with: pinkie keys add-nix-key %s", dir, dir)
	}
	return nixcache.ReadPublicKeyFile(p)
}

// LoadNixSecretKey reads the fleet's Nix secret key and checks that the
// public key file beside it, if any, is its public half.
func LoadNixSecretKey(dir string) (nixcache.SecretKey, error) {
	p := NixSecretKeyFile(dir)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return nixcache.SecretKey{}, fmt.Errorf("%s holds no Nix signing key; make one with: pinkie keys add-nix-key %s", dir, dir)
	}
	k, err := nixcache.ReadSecretKeyFile(p)
	if err != nil {
		return nixcache.SecretKey{}, err
	}
	pp := NixPublicKeyFile(dir)
	if _, err := os.Stat(pp); err == nil {
		pub, err := nixcache.ReadPublicKeyFile(pp)
		if err != nil {
			return nixcache.SecretKey{}, err
		}
		if pub.String() != k.Public().String() {
			return nixcache.SecretKey{}, fmt.Errorf("%s (%s) is not the public half of %s (%s)", pp, pub.Name, p, k.Name)
		}
	}
	return k, nil
}

// errNoFleetNixKey: the hub has no fleet Nix signing key.
var errNoFleetNixKey = errors.New("no fleet signing key")

// fleetNixPublicKey is the fleet's Nix public key as the hub knows it: the
// public half of --nix-signing-key, else the auth directory's.
func (h *Hub) fleetNixPublicKey() (nixcache.PublicKey, error) {
	if h.opts.NixSigningKeyFile != "" {
		k, err := nixcache.ReadSecretKeyFile(h.opts.NixSigningKeyFile)
		if err != nil {
			return nixcache.PublicKey{}, fmt.Errorf("--nix-signing-key: %w", err)
		}
		return k.Public(), nil
	}
	if h.opts.AuthDir == "" {
		return nixcache.PublicKey{}, fmt.Errorf("%w: the hub runs without --auth and --nix-signing-key", errNoFleetNixKey)
	}
	if _, err := os.Stat(NixPublicKeyFile(h.opts.AuthDir)); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(NixSecretKeyFile(h.opts.AuthDir)); errors.Is(err, fs.ErrNotExist) {
			return nixcache.PublicKey{}, fmt.Errorf("%w: the hub's auth directory has no %s (pinkie keys add-nix-key makes one)", errNoFleetNixKey, filepath.Base(NixPublicKeyFile(h.opts.AuthDir)))
		}
	}
	return LoadNixPublicKey(h.opts.AuthDir)
}

// fleetNixSecretKey is the fleet's Nix secret key: --nix-signing-key's,
// else the auth directory's; nil (and no error) when the hub has none.
func (h *Hub) fleetNixSecretKey() (*nixcache.SecretKey, error) {
	if h.opts.NixSigningKeyFile != "" {
		k, err := nixcache.ReadSecretKeyFile(h.opts.NixSigningKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--nix-signing-key: %w", err)
		}
		return &k, nil
	}
	if h.opts.AuthDir == "" {
		return nil, nil
	}
	if _, err := os.Stat(NixSecretKeyFile(h.opts.AuthDir)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	k, err := LoadNixSecretKey(h.opts.AuthDir)
	if err != nil {
		return nil, err
	}
	return &k, nil
}
