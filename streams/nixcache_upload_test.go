package streams

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
		hub, err := StartHub(context.Background(), HubOptions{DataDir: b.TempDir(), NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0",
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
