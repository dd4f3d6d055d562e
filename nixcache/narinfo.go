package nixcache

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/pinkiefleet/pinkie/bounded"
)

// MaxNarInfoSize bounds a narinfo: a path with a thousand references and a
// few signatures fits in under 64 KiB; anything larger is not a narinfo
// we want to hold in memory.
const MaxNarInfoSize = 64 * bounded.KiB

// NarInfo is a binary cache's description of one store path
// (src/libstore/nar-info.cc). References and Deriver are base names
// (hash-name, without the store directory), as the file holds them.
type NarInfo struct {
	StorePath   string // /nix/store/<hash>-<name>
	URL         string // where the (compressed) NAR is, relative to the cache
	Compression string // xz, zstd, none, …; bzip2 when the file says nothing (as in Nix)
	FileHash    *SHA256
	FileSize    uint64
	NarHash     SHA256
	NarSize     uint64
	References  []string
	Deriver     string
	System      string
	Sigs        []Signature
	CA          string // content address (text:sha256:…, fixed:…), when the path has one
}

// ParseNarInfo reads a narinfo strictly: every line KEY: VALUE, known keys
// only, each at most once (Sig may repeat), StorePath, URL, NarHash and a
// NarSize above 0 present (as Nix requires), store paths and hashes well
// formed. Hashes are kept parsed, so Format writes them as Nix does
// (sha256:<base 32>) whatever form they came in.
func ParseNarInfo(b []byte) (*NarInfo, error) {
	if int64(len(b)) > MaxNarInfoSize {
		return nil, fmt.Errorf("narinfo: %w", &bounded.TooLargeError{Limit: MaxNarInfoSize})
	}
	n := &NarInfo{}
	seen := map[string]bool{}
	text := strings.TrimSuffix(string(b), "\n")
	if text == "" {
		return nil, fmt.Errorf("narinfo is empty")
	}
	for i, line := range strings.Split(text, "\n") {
		key, value, ok := strings.Cut(line, ": ")
		if !ok {
			// "References: " with nothing after it loses its space to
			// editors; accept "KEY:" for it.
			if k, ok2 := strings.CutSuffix(line, ":"); ok2 && !strings.Contains(k, ":") && k != "" {
				key, value, ok = k, "", true
			}
		}
		if !ok {
			return nil, fmt.Errorf("narinfo line %d: %q is not KEY: VALUE", i+1, line)
		}
		if key != "Sig" && seen[key] {
			return nil, fmt.Errorf("narinfo line %d: %s given twice", i+1, key)
		}
		seen[key] = true
		if err := n.set(key, value); err != nil {
			return nil, fmt.Errorf("narinfo line %d: %w", i+1, err)
		}
	}
	for _, k := range []string{"StorePath", "URL", "NarHash", "NarSize"} {
		if !seen[k] {
			return nil, fmt.Errorf("narinfo has no %s", k)
		}
	}
	if n.NarSize == 0 {
		return nil, fmt.Errorf("narinfo for %s: NarSize is 0", n.StorePath)
	}
	if n.Compression == "" {
		n.Compression = "bzip2"
	}
	return n, nil
}

// set stores one field.
func (n *NarInfo) set(key, value string) error {
	var err error
	switch key {
	case "StorePath":
		if _, _, err = splitStorePath(value); err == nil {
			n.StorePath = value
		}
	case "URL":
		n.URL, err = word(value, "")
	case "Compression":
		n.Compression, err = word(value, "/")
	case "FileHash":
		var h SHA256
		if h, err = ParseSHA256(value); err == nil {
			n.FileHash = &h
		}
	case "FileSize":
		n.FileSize, err = parseSize(value)
	case "NarHash":
		n.NarHash, err = ParseSHA256(value)
	case "NarSize":
		n.NarSize, err = parseSize(value)
	case "References":
		for _, r := range strings.Fields(value) {
			if err = checkBaseName(r); err != nil {
				return fmt.Errorf("References: %w", err)
			}
			n.References = append(n.References, r)
		}
	case "Deriver":
		if value == "unknown-deriver" { // Nix's word for none
			return nil
		}
		if err = checkBaseName(value); err == nil && !strings.HasSuffix(value, ".drv") {
			err = fmt.Errorf("Deriver %q is not a .drv", value)
		}
		n.Deriver = value
	case "System":
		n.System, err = word(value, "")
	case "Sig":
		var s Signature
		if s, err = ParseSignature(value); err == nil {
			n.Sigs = append(n.Sigs, s)
		}
	case "CA":
		if !strings.HasPrefix(value, "text:") && !strings.HasPrefix(value, "fixed:") {
			return fmt.Errorf("CA %q is not text:… or fixed:…", value)
		}
		n.CA = value
	default:
		return fmt.Errorf("unknown field %q", key)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// word checks a value that is one word: not empty, no white space, none
// of the characters in bad.
func word(value, bad string) (string, error) {
	if value == "" || strings.ContainsAny(value, " \t\r"+bad) {
		return "", fmt.Errorf("%q is empty or holds white space or any of %q", value, bad)
	}
	return value, nil
}

func parseSize(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size in bytes", s)
	}
	return v, nil
}

// splitStorePath cuts /nix/store/<hash>-<name> into the store directory and
// the base name, checking both.
func splitStorePath(p string) (dir, base string, err error) {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p {
		return "", "", fmt.Errorf("store path %q is not a clean absolute path", p)
	}
	dir, base = path.Dir(p), path.Base(p)
	if dir == "/" {
		return "", "", fmt.Errorf("store path %q has no store directory", p)
	}
	if err := checkBaseName(base); err != nil {
		return "", "", err
	}
	return dir, base, nil
}

// checkBaseName checks <32 base-32 characters>-<name> as
// src/libstore/path.cc does: the name at most 211 characters of
// [A-Za-z0-9+-._?=], not starting with a dot.
func checkBaseName(base string) error {
	if len(base) < 34 || base[32] != '-' {
		return fmt.Errorf("%q is not <hash>-<name>", base)
	}
	for i := 0; i < 32; i++ {
		if strings.IndexByte(nixBase32Alphabet, base[i]) < 0 {
			return fmt.Errorf("%q: hash part holds %q, not Nix base 32", base, base[i])
		}
	}
	name := base[33:]
	if len(name) > 211 {
		return fmt.Errorf("%q: name longer than 211 characters", base)
	}
	if name[0] == '.' {
		return fmt.Errorf("%q: name starts with a dot", base)
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+-._?=", c) >= 0
		if !ok {
			return fmt.Errorf("%q: name holds %q", base, c)
		}
	}
	return nil
}

// StoreDir is the store directory of the path (/nix/store).
func (n *NarInfo) StoreDir() string { return path.Dir(n.StorePath) }

// HashPart is the 32-character hash of the store path: the narinfo's file
// name in a cache is <HashPart>.narinfo.
func (n *NarInfo) HashPart() string {
	b := path.Base(n.StorePath)
	if len(b) < 32 {
		return ""
	}
	return b[:32]
}

// Format writes the narinfo as Nix 2.8 does (NarInfo::to_string): fields
// in Nix's order, References with a trailing space when empty, one Sig
// line per signature.
func (n *NarInfo) Format() []byte {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + ": " + v + "\n") }
	line("StorePath", n.StorePath)
	line("URL", n.URL)
	line("Compression", n.Compression)
	if n.FileHash != nil {
		line("FileHash", n.FileHash.String())
	}
	if n.FileSize != 0 {
		line("FileSize", strconv.FormatUint(n.FileSize, 10))
	}
	line("NarHash", n.NarHash.String())
	line("NarSize", strconv.FormatUint(n.NarSize, 10))
	line("References", strings.Join(n.References, " "))
	if n.Deriver != "" {
		line("Deriver", n.Deriver)
	}
	if n.System != "" {
		line("System", n.System)
	}
	for _, s := range n.Sigs {
		line("Sig", s.String())
	}
	if n.CA != "" {
		line("CA", n.CA)
	}
	return []byte(b.String())
}

// Fingerprint is what a signature on this path signs, exactly as Nix
// computes it (ValidPathInfo::fingerprint in src/libstore/path-info.cc):
//
//	1;<store path>;sha256:<NAR hash, base 32>;<NAR size>;<references as full paths, sorted, comma-separated>
//
// It covers the path, its contents (by hash and size) and its references,
// but not the URL, compression or file hash: a cache may recompress a NAR
// without re-signing.
func (n *NarInfo) Fingerprint() (string, error) {
	dir, _, err := splitStorePath(n.StorePath)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	if n.NarSize == 0 {
		return "", fmt.Errorf("fingerprint of %s: NarSize is not known", n.StorePath)
	}
	refs := make([]string, len(n.References))
	for i, r := range n.References {
		if err := checkBaseName(r); err != nil {
			return "", fmt.Errorf("fingerprint of %s: %w", n.StorePath, err)
		}
		refs[i] = dir + "/" + r
	}
	// Nix's StorePathSet is ordered by base name; with one store directory
	// that is the order of the full paths.
	sort.Strings(refs)
	refs = dedupSorted(refs)
	return "1;" + n.StorePath + ";" + n.NarHash.String() + ";" +
		strconv.FormatUint(n.NarSize, 10) + ";" + strings.Join(refs, ","), nil
}

func dedupSorted(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
