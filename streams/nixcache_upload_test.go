package streams

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
