package nixcache

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/bounded"
)

// testdata/*.narinfo were written by nix 2.8 (`nix copy --to
// file://DIR?secret-key=…` from a private store) and signed with the key
// whose public half is testdata/nix-made.pub (made by `nix key
// generate-secret --key-name test-1`). multi.narinfo has four references,
// one to itself, listed by Nix in its own order; ca-text.narinfo is a
// builtins.toFile path with a CA line and no references.

func readNarInfo(t *testing.T, name string) (*NarInfo, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	n, err := ParseNarInfo(b)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return n, b
}

func nixMadeKey(t *testing.T) PublicKey {
	t.Helper()
	k, err := ReadPublicKeyFile(filepath.Join("testdata", "nix-made.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSHA256Forms(t *testing.T) {
	// The same hash as nix 2.8 prints it: path-info --json (SRI), narinfo
	// (base 32), nix hash to-base16.
	want := "sha256:0prans8dvn13ww6agppzvwc3yxg0f2j0xxlxaspxkgxs2x4q9rm8"
	for _, in := range []string{
		"sha256-qOaESRe6v9mvVp32DqRw4HU/GN//3qcM5yPY3ZC2Kl8=",
		"sha256:qOaESRe6v9mvVp32DqRw4HU/GN//3qcM5yPY3ZC2Kl8=",
		want,
		"sha256:a8e6844917babfd9af569df60ea470e0753f18dfffdea70ce723d8dd90b62a5f",
	} {
		h, err := ParseSHA256(in)
		if err != nil {
			t.Fatalf("ParseSHA256(%q): %v", in, err)
		}
		if h.String() != want {
			t.Errorf("ParseSHA256(%q) = %s, want %s", in, h, want)
		}
	}
}

func TestSHA256Errors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no algorithm", "0prans8dvn13ww6agppzvwc3yxg0f2j0xxlxaspxkgxs2x4q9rm8", "want sha256:<hash>"},
		{"other algorithm", "sha512:abcd", `algorithm "sha512", want sha256`},
		{"wrong length", "sha256:abcd", "4 characters"},
		{"bad base 32", "sha256:eprans8dvn13ww6agppzvwc3yxg0f2j0xxlxaspxkgxs2x4q9rm8", "not a Nix base-32 character"},
		{"base 32 overflow", "sha256:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "overflows"},
		{"bad base 16", "sha256:g8e6844917babfd9af569df60ea470e0753f18dfffdea70ce723d8dd90b62a5f", "invalid byte"},
		{"short SRI", "sha256-qOaESRe6v9mvVp32", "bytes, want 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSHA256(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseSHA256(%q) = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestKeyRoundTrip(t *testing.T) {
	k, err := NewFleetKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Name, "pinkie-") || !strings.HasSuffix(k.Name, "-1") || len(k.Name) != len("pinkie-12345678-1") {
		t.Errorf("fleet key name %q, want pinkie-<8 characters>-1", k.Name)
	}
	k2, err := ParseSecretKey(k.Encode() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if k2.Name != k.Name || !k2.Key.Equal(k.Key) {
		t.Errorf("secret key did not survive Encode/Parse")
	}
	pub, err := ParsePublicKey(k.Public().String())
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Key.Equal(k.Key.Public()) || pub.Name != k.Name {
		t.Errorf("public key did not survive String/Parse")
	}
	if strings.Contains(k.String(), base64.StdEncoding.EncodeToString(k.Key)) || !strings.Contains(k.String(), k.Name) {
		t.Errorf("SecretKey.String() = %q: must name the key and not print it", k.String())
	}
}

// TestNixMadeKeys parses keys as nix 2.8 printed them.
func TestNixMadeKeys(t *testing.T) {
	sec, err := ParseSecretKey("test-1:suuGjpqZ2FcJHgMpegH20Vd8fCQszl+kJgREuFomZdE=")
	if err == nil {
		t.Fatalf("a public key parsed as a secret key: %v", sec)
	}
	const secText = "test-1:GDrB/ddSyqzpjj5odNH2/0qlxg50JsxK8k3NZNoyEcay64aOmpnYVwkeAyl6AfbRV3x8JCzOX6QmBES4WiZl0Q=="
	sec, err = ParseSecretKey(secText)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sec.Public(), nixMadeKey(t); got.String() != want.String() {
		t.Errorf("public from secret = %s, nix key convert-secret-to-public printed %s", got, want)
	}
	if sec.Encode() != secText {
		t.Errorf("Encode = %q, want nix's %q", sec.Encode(), secText)
	}
}

func TestKeyParseErrors(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(seed)
	b64 := base64.StdEncoding.EncodeToString
	mismatched := append([]byte(nil), priv...)
	mismatched[40] ^= 1
	for _, tc := range []struct {
		name, in, want string
		public         bool
	}{
		{"secret: no name", b64(priv), "no NAME: prefix", false},
		{"secret: empty name", ":" + b64(priv), "key name is empty", false},
		{"secret: name with space", "my key:" + b64(priv), "white space", false},
		{"secret: bad base 64", "k-1:@@@@", "k-1: bad base 64", false},
		{"secret: too short", "k-1:" + b64(priv[:63]), "63 bytes, want 64", false},
		{"secret: a public key", "k-1:" + b64(priv[32:]), "k-1 is a public key", false},
		{"secret: halves mismatch", "k-1:" + b64(mismatched), "public half does not match its seed", false},
		{"secret: empty", "", "no NAME: prefix", false},
		{"public: no name", b64(priv[32:]), "public key: no NAME: prefix", true},
		{"public: bad base 64", "k-1:not base64!", "public key k-1: bad base 64", true},
		{"public: a secret key", "k-1:" + b64(priv), "64 bytes, want 32", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.public {
				_, err = ParsePublicKey(tc.in)
			} else {
				_, err = ParseSecretKey(tc.in)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parse %q = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestReadKeyFileBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.sec")
	if err := os.WriteFile(p, bytes.Repeat([]byte("a"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecretKeyFile(p); !errors.Is(err, bounded.ErrTooLarge) {
		t.Fatalf("ReadSecretKeyFile(1 MiB) = %v, want ErrTooLarge", err)
	}
}

// TestFingerprintOfNixNarInfos checks the fingerprint against narinfos from
// real nix: nix's own signature on each verifies over our fingerprint.
func TestFingerprintOfNixNarInfos(t *testing.T) {
	key := nixMadeKey(t)
	for _, tc := range []struct{ file, want string }{
		{"multi.narinfo", "1;/nix/store/1pjf0nq292d32qcq1m8znzcz54ggmrgp-multi;sha256:0prans8dvn13ww6agppzvwc3yxg0f2j0xxlxaspxkgxs2x4q9rm8;312;" +
			"/nix/store/15yvbdiy9cpd2pf66g7sjhkhxyz3cdkh-b.txt,/nix/store/1pjf0nq292d32qcq1m8znzcz54ggmrgp-multi," +
			"/nix/store/51rxayynph851gc2y7n0243n7x9rbb3v-c.txt,/nix/store/wzflyq5q9kjg4p27yck2nnispnblxsnh-a.txt"},
		{"withref.narinfo", "1;/nix/store/11r1msk67r6p3rb43syqgzcvpligncbl-withref;sha256:0kb0pn7d7yq0aax2zl29k4afz0dy6dx1q2b99zsspi2msayfip3i;168;" +
			"/nix/store/wzflyq5q9kjg4p27yck2nnispnblxsnh-a.txt"},
		{"ca-text.narinfo", "1;/nix/store/wzflyq5q9kjg4p27yck2nnispnblxsnh-a.txt;sha256:0sg9f58l1jj88w6pdrfdpj5x9b1zrwszk84j81zvby36q9whhhqa;120;"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			n, _ := readNarInfo(t, tc.file)
			fp, err := n.Fingerprint()
			if err != nil {
				t.Fatal(err)
			}
			if fp != tc.want {
				t.Errorf("fingerprint:\n got %s\nwant %s", fp, tc.want)
			}
			got, err := n.Verify([]PublicKey{key})
			if err != nil {
				t.Fatalf("nix's signature does not verify here: %v", err)
			}
			if got.Name != "test-1" {
				t.Errorf("verified by %s, want test-1", got.Name)
			}
			// References in another order sign the same fingerprint.
			for i, j := 0, len(n.References)-1; i < j; i, j = i+1, j-1 {
				n.References[i], n.References[j] = n.References[j], n.References[i]
			}
			if fp2, _ := n.Fingerprint(); fp2 != fp {
				t.Errorf("fingerprint depends on the order of References: %s", fp2)
			}
		})
	}
}

// TestFormatRoundTrip: a narinfo nix wrote comes out of Parse and Format
// byte for byte.
func TestFormatRoundTrip(t *testing.T) {
	for _, f := range []string{"multi.narinfo", "withref.narinfo", "ca-text.narinfo"} {
		t.Run(f, func(t *testing.T) {
			n, b := readNarInfo(t, f)
			if diff := cmp.Diff(string(b), string(n.Format())); diff != "" {
				t.Errorf("Format (-nix +ours):\n%s", diff)
			}
		})
	}
}

func TestNarInfoParseErrors(t *testing.T) {
	_, good := readNarInfo(t, "withref.narinfo")
	replace := func(old, new string) string {
		if !strings.Contains(string(good), old) {
			t.Fatalf("fixture lacks %q", old)
		}
		return strings.Replace(string(good), old, new, 1)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "narinfo is empty"},
		{"too large", string(good) + strings.Repeat("Sig: x\n", int(MaxNarInfoSize)/7), "larger than 64 KiB"},
		{"unknown field", string(good) + "Foo: bar\n", `line 11: unknown field "Foo"`},
		{"duplicate field", string(good) + "NarSize: 168\n", "line 11: NarSize given twice"},
		{"not key value", string(good) + "garbage\n", `line 11: "garbage" is not KEY: VALUE`},
		{"blank line", replace("URL:", "\nURL:"), `line 2: "" is not KEY: VALUE`},
		{"no store path", replace("StorePath: /nix/store/11r1msk67r6p3rb43syqgzcvpligncbl-withref\n", ""), "narinfo has no StorePath"},
		{"no NarHash", replace("NarHash: sha256:0kb0pn7d7yq0aax2zl29k4afz0dy6dx1q2b99zsspi2msayfip3i\n", ""), "narinfo has no NarHash"},
		{"no URL", replace("URL: nar/10j3iivl8nvms4la65k5kqwlhciayjfka35a7r7prywnp5fpddch.nar.xz\n", ""), "narinfo has no URL"},
		{"zero NarSize", replace("NarSize: 168", "NarSize: 0"), "NarSize is 0"},
		{"negative size", replace("FileSize: 172", "FileSize: -1"), `FileSize: "-1" is not a size in bytes`},
		{"relative store path", replace("StorePath: /nix/store/", "StorePath: nix/store/"), "not a clean absolute path"},
		{"short hash part", replace("StorePath: /nix/store/11r1msk67r6p3rb43syqgzcvpligncbl-withref", "StorePath: /nix/store/11r1-withref"), "is not <hash>-<name>"},
		{"bad hash part", replace("StorePath: /nix/store/11r1msk67r6p3rb43syqgzcvpligncbl", "StorePath: /nix/store/11r1msk67r6p3rb43syqgzcvpligncbe"), "not Nix base 32"},
		{"bad name", replace("-withref\n", "-with$ref\n"), `name holds '$'`},
		{"nested store path", replace("-withref\n", "-with/ref\n"), `"ref" is not <hash>-<name>`},
		{"bad reference", replace("References: wzflyq5q9kjg4p27yck2nnispnblxsnh-a.txt", "References: ../../etc/passwd"), "References:"},
		{"bad NarHash", replace("NarHash: sha256:0kb0", "NarHash: sha256:0kb"), "NarHash: hash"},
		{"bad signature", replace("Sig: test-1:", "Sig: test-1:AAAA"), "Sig: signature test-1:"},
		{"deriver not drv", replace("-withref.drv", "-withref"), "is not a .drv"},
		{"bad CA", string(good) + "CA: nonsense\n", `CA "nonsense" is not text:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNarInfo([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseNarInfo = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestNarInfoDefaults(t *testing.T) {
	n, err := ParseNarInfo([]byte("StorePath: /nix/store/11r1msk67r6p3rb43syqgzcvpligncbl-withref\nURL: nar/x.nar\n" +
		"NarHash: sha256-qOaESRe6v9mvVp32DqRw4HU/GN//3qcM5yPY3ZC2Kl8=\nNarSize: 1\nReferences:\nDeriver: unknown-deriver"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Compression != "bzip2" || n.Deriver != "" || n.HashPart() != "11r1msk67r6p3rb43syqgzcvpligncbl" || n.StoreDir() != "/nix/store" {
		t.Errorf("defaults: compression %q deriver %q hash part %q store dir %q", n.Compression, n.Deriver, n.HashPart(), n.StoreDir())
	}
	if !strings.Contains(string(n.Format()), "NarHash: sha256:0prans8dvn13ww6agppzvwc3yxg0f2j0xxlxaspxkgxs2x4q9rm8\n") {
		t.Errorf("Format does not write the NAR hash as Nix does:\n%s", n.Format())
	}
}

// fleetAndOther makes a fleet key and an unrelated key named other-1.
func fleetAndOther(t *testing.T) (fleet, other SecretKey) {
	t.Helper()
	fleet, err := NewFleetKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err = GenerateKey("other-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	return fleet, other
}

func TestSignVerify(t *testing.T) {
	fleet, other := fleetAndOther(t)
	impostor, err := GenerateKey(fleet.Name, nil) // same name, other key
	if err != nil {
		t.Fatal(err)
	}
	nixKey := nixMadeKey(t)
	trusted := []PublicKey{fleet.Public(), nixKey}
	load := func() *NarInfo { n, _ := readNarInfo(t, "withref.narinfo"); return n }

	for _, tc := range []struct {
		name    string
		change  func(n *NarInfo)
		wantKey string
		wantErr error
		wantMsg string
	}{
		{"signed by nix, trusted", func(n *NarInfo) {}, "test-1", nil, ""},
		{"signed by us", func(n *NarInfo) { n.Sigs = nil; must(t, n.Sign(fleet)) }, fleet.Name, nil, ""},
		{"signed by us and another, order does not matter", func(n *NarInfo) { n.Sigs = nil; must(t, n.Sign(other)); must(t, n.Sign(fleet)) }, fleet.Name, nil, ""},
		{"unsigned", func(n *NarInfo) { n.Sigs = nil }, "", ErrNoTrustedSignature, "no signature by a trusted key (it is unsigned)"},
		{"signed by an untrusted key", func(n *NarInfo) { n.Sigs = nil; must(t, n.Sign(other)) }, "", ErrNoTrustedSignature, "no signature by a trusted key (signed only by other-1)"},
		{"signed by an impostor with a trusted name", func(n *NarInfo) { n.Sigs = nil; must(t, n.Sign(impostor)) }, "", ErrBadSignature, "signature by " + fleet.Name + " does not verify"},
		{"NarHash tampered after signing", func(n *NarInfo) { n.NarHash[0] ^= 1 }, "", ErrBadSignature, "signature by test-1 does not verify"},
		{"NarSize tampered", func(n *NarInfo) { n.NarSize++ }, "", ErrBadSignature, "signature by test-1 does not verify"},
		{"reference dropped", func(n *NarInfo) { n.References = nil }, "", ErrBadSignature, "signature by test-1 does not verify"},
		{"URL changed: not signed, still verifies", func(n *NarInfo) { n.URL = "nar/elsewhere.nar" }, "test-1", nil, ""},
		{"re-signing replaces our old signature", func(n *NarInfo) {
			n.Sigs = nil
			must(t, n.Sign(fleet))
			n.NarSize++
			must(t, n.Sign(fleet))
			if len(n.Sigs) != 1 {
				t.Errorf("%d signatures after signing twice, want 1", len(n.Sigs))
			}
		}, fleet.Name, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := load()
			tc.change(n)
			// Through the text form, as a cache would carry it.
			n2, err := ParseNarInfo(n.Format())
			if err != nil {
				t.Fatal(err)
			}
			k, err := n2.Verify(trusted)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("Verify = %v, want %v saying %q", err, tc.wantErr, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if k.Name != tc.wantKey {
				t.Errorf("verified by %s, want %s", k.Name, tc.wantKey)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
