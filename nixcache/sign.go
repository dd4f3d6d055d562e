package nixcache

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
)

// ErrNoTrustedSignature matches a narinfo that carries no signature by any
// trusted key (unsigned, or signed only by keys nobody trusts).
var ErrNoTrustedSignature = errors.New("no signature by a trusted key")

// NoTrustedSignatureError says which signatures there were, if any.
type NoTrustedSignatureError struct {
	StorePath string
	KeyNames  []string // names on the path's signatures, none trusted
}

func (e *NoTrustedSignatureError) Error() string {
	if len(e.KeyNames) == 0 {
		return fmt.Sprintf("%s: no signature by a trusted key (it is unsigned)", e.StorePath)
	}
	return fmt.Sprintf("%s: no signature by a trusted key (signed only by %s)", e.StorePath, strings.Join(e.KeyNames, ", "))
}

// Is makes errors.Is(err, ErrNoTrustedSignature) true.
func (e *NoTrustedSignatureError) Is(target error) bool { return target == ErrNoTrustedSignature }

// ErrBadSignature matches a signature by a trusted key that does not
// verify: the narinfo (path, NAR hash or size, references) or the
// signature was changed after signing.
var ErrBadSignature = errors.New("signature does not verify")

// BadSignatureError names the trusted key whose signature failed.
type BadSignatureError struct {
	StorePath string
	KeyName   string
}

func (e *BadSignatureError) Error() string {
	return fmt.Sprintf("%s: signature by %s does not verify (narinfo or signature changed after signing)", e.StorePath, e.KeyName)
}

// Is makes errors.Is(err, ErrBadSignature) true.
func (e *BadSignatureError) Is(target error) bool { return target == ErrBadSignature }

// Sign adds k's signature over the fingerprint, replacing any earlier
// signature by a key of the same name (Nix would keep both; a stale one can
// only fail).
func (n *NarInfo) Sign(k SecretKey) error {
	fp, err := n.Fingerprint()
	if err != nil {
		return err
	}
	sigs := n.Sigs[:0:0]
	for _, s := range n.Sigs {
		if s.KeyName != k.Name {
			sigs = append(sigs, s)
		}
	}
	n.Sigs = append(sigs, k.Sign(fp))
	return nil
}

// Verify checks the narinfo's signatures against trusted keys and returns
// the key whose signature verified. Unlike Nix, it does not accept
// content-addressed paths without a signature: the cache signs every path.
// The error is a *NoTrustedSignatureError when no signature is by a
// trusted key, a *BadSignatureError when one is but does not verify.
func (n *NarInfo) Verify(trusted []PublicKey) (PublicKey, error) {
	fp, err := n.Fingerprint()
	if err != nil {
		return PublicKey{}, err
	}
	var bad string
	var names []string
	for _, s := range n.Sigs {
		matched := false
		for _, k := range trusted {
			if k.Name != s.KeyName {
				continue
			}
			matched = true
			if len(k.Key) == ed25519.PublicKeySize && ed25519.Verify(k.Key, []byte(fp), s.Sig) {
				return k, nil
			}
		}
		if matched && bad == "" {
			bad = s.KeyName
		}
		names = append(names, s.KeyName)
	}
	if bad != "" {
		return PublicKey{}, &BadSignatureError{StorePath: n.StorePath, KeyName: bad}
	}
	return PublicKey{}, &NoTrustedSignatureError{StorePath: n.StorePath, KeyNames: names}
}
