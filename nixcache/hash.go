package nixcache

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// nixBase32Alphabet is Nix's base-32 alphabet (no e, o, u, t), from
// src/libutil/hash.cc.
const nixBase32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// NixBase32 encodes b in Nix's base 32, which reads the bytes from the end
// (as src/libutil/hash.cc printHash32 does): not RFC 4648.
func NixBase32(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	n := (len(b)*8-1)/5 + 1
	out := make([]byte, 0, n)
	for i := n - 1; i >= 0; i-- {
		bit := i * 5
		byteIdx, shift := bit/8, uint(bit%8)
		c := b[byteIdx] >> shift
		if byteIdx+1 < len(b) {
			c |= b[byteIdx+1] << (8 - shift)
		}
		out = append(out, nixBase32Alphabet[c&0x1f])
	}
	return string(out)
}

// decodeNixBase32 decodes s (Nix's base 32) into exactly size bytes.
func decodeNixBase32(s string, size int) ([]byte, error) {
	if len(s) != (size*8-1)/5+1 {
		return nil, fmt.Errorf("%d characters of base 32, want %d", len(s), (size*8-1)/5+1)
	}
	out := make([]byte, size)
	for n := 0; n < len(s); n++ {
		c := s[len(s)-n-1]
		digit := strings.IndexByte(nixBase32Alphabet, c)
		if digit < 0 {
			return nil, fmt.Errorf("%q is not a Nix base-32 character", c)
		}
		bit := n * 5
		i, j := bit/8, uint(bit%8)
		out[i] |= byte(digit) << j
		carry := byte(digit >> (8 - j))
		if i+1 < size {
			out[i+1] |= carry
		} else if carry != 0 {
			return nil, fmt.Errorf("base 32 value overflows %d bytes", size)
		}
	}
	return out, nil
}

// SHA256 is a SHA-256 digest as narinfos carry them (NarHash, FileHash).
type SHA256 [32]byte

// String is the form Nix writes in narinfos and signs in fingerprints:
// sha256:<Nix base 32>.
func (h SHA256) String() string { return "sha256:" + NixBase32(h[:]) }

// ParseSHA256 reads a SHA-256 hash in any form Nix accepts for narinfo
// hashes (Hash::parseAnyPrefixed): sha256:<base 32>, sha256:<base 16>,
// sha256:<base 64>, or SRI sha256-<base 64>. Other algorithms are refused:
// Nix's binary caches use SHA-256 only.
func ParseSHA256(s string) (SHA256, error) {
	var h SHA256
	var rest string
	sri := false
	switch {
	case strings.HasPrefix(s, "sha256:"):
		rest = s[len("sha256:"):]
	case strings.HasPrefix(s, "sha256-"):
		rest, sri = s[len("sha256-"):], true
	default:
		algo, _, ok := strings.Cut(s, ":")
		if !ok {
			algo, _, ok = strings.Cut(s, "-")
		}
		if ok && algo != "" && len(algo) < 10 {
			return h, fmt.Errorf("hash %q: algorithm %q, want sha256", s, algo)
		}
		return h, fmt.Errorf("hash %q: want sha256:<hash> or sha256-<base64>", s)
	}
	var b []byte
	var err error
	switch {
	case sri || len(rest) == 44:
		b, err = base64.StdEncoding.DecodeString(rest)
		if err == nil && len(b) != len(h) {
			err = fmt.Errorf("%d bytes, want %d", len(b), len(h))
		}
	case len(rest) == 64:
		b, err = hex.DecodeString(rest)
	case len(rest) == 52:
		b, err = decodeNixBase32(rest, len(h))
	default:
		err = fmt.Errorf("%d characters: not base 16 (64), base 32 (52) or base 64 (44)", len(rest))
	}
	if err != nil {
		return h, fmt.Errorf("hash %q: %w", s, err)
	}
	copy(h[:], b)
	return h, nil
}
