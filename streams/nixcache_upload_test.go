package streams

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/nixcache"
)

// TestNixCacheUploadGivesUpOnAnAbsentHub: an upload whose hub went away
// tries again with backoff for as long as UploadRetryFor says, then fails
// saying the hub did not answer (TestNixCacheUploadSurvivesHubRestart in
// tests/ has the hub come back).
func TestNixCacheUploadGivesUpOnAnAbsentHub(t *testing.T) {
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"goliath"}); err != nil {
		t.Fatal(err)
	}
	hub := startTestHub(t, auth, t.TempDir())
	ctx := context.Background()
	op, err := Connect(ctx, hub.ClientURL(), OperatorSeedFile(auth), "upload test")
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	hub.Close()
	local := t.TempDir()
	if err := os.WriteFile(filepath.Join(local, "0123456789abcdfghijklmnpqrsvwxyz.narinfo"), []byte("StorePath: /nix/store/0123456789abcdfghijklmnpqrsvwxyz-x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st, err := UploadNixCacheDir(ctx, op, NixCachePutOperator, local, UploadRetryFor(1500*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "the hub did not answer for 1.5s") {
		t.Fatalf("upload to a hub that is gone: %v, want it to say the hub did not answer for 1.5s", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("giving up took %s: the wait must be bounded by UploadRetryFor", took)
	}
	if st.Retries == 0 {
		t.Errorf("stats %+v: no call tried again", st)
	}
}

// writeSyntheticCache writes a signed binary cache directory of n paths
// (uncompressed NARs of random bytes, every 50th one big) as nix copy
// --to file:// would, without nix: the hub checks file hashes and
// signatures, not NAR syntax. It returns the bytes of NAR files.
func writeSyntheticCache(tb testing.TB, dir string, key nixcache.SecretKey, n int, small, big int) int64 {
	tb.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "nar"), 0o755); err != nil {
		tb.Fatal(err)
	}
	var total int64
	for i := range n {
		size := small
		if i%50 == 0 {
			size = big
		}
		nar := make([]byte, size)
		_, _ = rand.Read(nar)
		sum := nixcache.SHA256(sha256.Sum256(nar))
		hash := nixcache.NixBase32(sum[:20])
		ni := &nixcache.NarInfo{StorePath: "/nix/store/" + hash + "-synthetic-" + strconv.Itoa(i), URL: "nar/" + nixcache.NixBase32(sum[:]) + ".nar",
			Compression: "none", FileHash: &sum, FileSize: uint64(size), NarHash: sum, NarSize: uint64(size)}
		if err := ni.Sign(key); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(ni.URL)), nar, 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, hash+".narinfo"), ni.Format(), 0o644); err != nil {
			tb.Fatal(err)
		}
		total += int64(size)
	}
	return total
}

// BenchmarkNixCacheUpload: an operator uploads 1,000 paths (20 of 4 MiB,
// the rest 100 KiB: 117 MiB) into a fresh embedded hub over NATS.
func BenchmarkNixCacheUpload(b *testing.B) {
	auth := b.TempDir()
	if _, err := KeysInit(auth, []string{"goliath"}); err != nil {
		b.Fatal(err)
	}
	key, err := LoadNixSecretKey(auth)
	if err != nil {
		b.Fatal(err)
	}
	local := b.TempDir()
	total := writeSyntheticCache(b, local, key, 1000, 100<<10, 4<<20)
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		hub, err := StartHub(context.Background(), HubOptions{IngestCheck: testIngestCheck, DataDir: b.TempDir(), NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", AuthDir: auth, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		op, err := Connect(context.Background(), hub.ClientURL(), OperatorSeedFile(auth), "upload bench")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		st, err := UploadNixCacheDir(context.Background(), op, NixCachePutOperator, local)
		b.StopTimer()
		if err != nil || st.Missing != 1000 {
			b.Fatalf("upload: %+v %v", st, err)
		}
		op.Close()
		hub.Close()
		b.StartTimer()
	}
}

// TestNixCacheUploadPaths: store paths streamed straight from their
// source (as nix store dump-path would), without a binary cache directory:
// a NAR cut short resumes (its source opened again and read past what the
// hub has), a second upload opens no source at all (the hub has every
// path), and the hub serves the NARs intact.
func TestNixCacheUploadPaths(t *testing.T) {
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"goliath"}); err != nil {
		t.Fatal(err)
	}
	key, err := LoadNixSecretKey(auth)
	if err != nil {
		t.Fatal(err)
	}
	hub := startTestHub(t, auth, t.TempDir())
	defer hub.Close()
	ctx := context.Background()
	op, err := Connect(ctx, hub.ClientURL(), OperatorSeedFile(auth), "upload test")
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()

	var paths []NixUploadPath
	nars := map[string][]byte{}
	var opens atomic.Int32
	var total int64
	for i, size := range []int{3*nixPutChunk + 1234, 1000, nixPutChunk} {
		nar := make([]byte, size)
		_, _ = rand.Read(nar)
		sum := nixcache.SHA256(sha256.Sum256(nar))
		ni := &nixcache.NarInfo{StorePath: "/nix/store/" + nixcache.NixBase32(sum[:20]) + "-streamed-" + strconv.Itoa(i), URL: "nar/" + nixcache.NixBase32(sum[:]) + ".nar",
			Compression: "none", FileHash: &sum, FileSize: uint64(size), NarHash: sum, NarSize: uint64(size)}
		if err := ni.Sign(key); err != nil {
			t.Fatal(err)
		}
		nars[ni.URL] = nar
		total += int64(size) + int64(len(ni.Format()))
		paths = append(paths, NixUploadPath{Info: ni, Open: func(context.Context) (io.ReadCloser, error) {
			opens.Add(1)
			return io.NopCloser(bytes.NewReader(nar)), nil // not a Seeker: read past what the hub has
		}})
	}
	// A cut: the first chunk of the large NAR only reaches the hub.
	big := paths[0].Info
	m := narChunkMsg(big.URL, 0, int64(big.FileSize), nars[big.URL][:nixPutChunk])
	m.Subject = NixCachePutOperator + ".nar"
	if _, err := op.Conn.RequestMsg(m, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	st, err := UploadNixPaths(ctx, op, NixCachePutOperator, paths)
	if err != nil {
		t.Fatal(err)
	}
	if want := total - nixPutChunk; st.Paths != 3 || st.Missing != 3 || st.BytesSent != want || opens.Load() != 3 {
		t.Errorf("upload: %+v, %d sources opened; want 3 missing, %d bytes sent (all less the chunk the hub had), 3 opened", st, opens.Load(), want)
	}
	opens.Store(0)
	if st, err := UploadNixPaths(ctx, op, NixCachePutOperator, paths); err != nil || st.Missing != 0 || st.BytesSent != 0 || opens.Load() != 0 {
		t.Errorf("second upload: %+v %v, %d sources opened; want nothing missing, sent or opened", st, err, opens.Load())
	}
	for url, nar := range nars {
		res, err := hub.NixCache().nar.GetBytes(ctx, url)
		if err != nil || !bytes.Equal(res, nar) {
			t.Errorf("NAR %s in the hub's cache: %d bytes, equal %t, %v", url, len(res), bytes.Equal(res, nar), err)
		}
	}
}

// TestNixCacheUploadInlineNarinfo: a NAR of one chunk may carry its
// narinfo; the hub takes it once the NAR is in, with every check the
// narinfo call makes (the fleet's signature, FileHash against the URL),
// and says so in its reply, or refuses it with the reason and keeps no
// narinfo.
func TestNixCacheUploadInlineNarinfo(t *testing.T) {
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"goliath"}); err != nil {
		t.Fatal(err)
	}
	fleet := must(LoadNixSecretKey(auth))
	other := must(nixcache.GenerateKey("other-1", rand.Reader))
	hub := startTestHub(t, auth, t.TempDir())
	defer hub.Close()
	ctx := context.Background()
	op := must(Connect(ctx, hub.ClientURL(), OperatorSeedFile(auth), "upload test"))
	defer op.Close()

	tests := []struct {
		name string
		// edit changes the narinfo before it is signed (sign) and sent.
		edit    func(ni *nixcache.NarInfo)
		sign    *nixcache.SecretKey
		encode  func([]byte) string
		wantErr string // "": stored with its narinfo
	}{
		{name: "signed by the fleet", sign: &fleet},
		{name: "signed by another key", sign: &other, wantErr: "no signature by a trusted key"},
		{name: "unsigned", wantErr: "unsigned"},
		{name: "FileHash not the URL's", sign: &fleet, wantErr: "is not the hash its URL",
			edit: func(ni *nixcache.NarInfo) { h := *ni.FileHash; h[0] ^= 1; ni.FileHash = &h }},
		{name: "not base64", sign: &fleet, wantErr: "not base64", encode: func([]byte) string { return "%%%" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nar := make([]byte, 1000)
			_, _ = rand.Read(nar)
			sum := nixcache.SHA256(sha256.Sum256(nar))
			hash := nixcache.NixBase32(sum[:20])
			ni := &nixcache.NarInfo{StorePath: "/nix/store/" + hash + "-inline", URL: "nar/" + nixcache.NixBase32(sum[:]) + ".nar",
				Compression: "none", FileHash: &sum, FileSize: uint64(len(nar)), NarHash: sum, NarSize: uint64(len(nar))}
			if tc.edit != nil {
				tc.edit(ni)
			}
			if tc.sign != nil {
				if err := ni.Sign(*tc.sign); err != nil {
					t.Fatal(err)
				}
			}
			encode := base64.StdEncoding.EncodeToString
			if tc.encode != nil {
				encode = tc.encode
			}
			m := narChunkMsg(ni.URL, 0, int64(len(nar)), nar)
			m.Subject = NixCachePutOperator + ".nar"
			m.Header.Set(HeaderNarinfo, encode(ni.Format()))
			resp, err := op.Conn.RequestMsg(m, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			r, err := decodePutReply("nar", resp)
			_, kvErr := hub.NixCache().narinfo.Get(ctx, hash)
			if tc.wantErr == "" {
				if err != nil || !r.Stored || !r.Narinfo || kvErr != nil {
					t.Errorf("reply %+v %v, narinfo in the cache: %v; want the NAR and its narinfo stored", r, err, kvErr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("reply %+v %v, want a refusal saying %q", r, err, tc.wantErr)
			}
			if kvErr == nil {
				t.Errorf("the refused narinfo of %s is in the cache", hash)
			}
		})
	}
}
