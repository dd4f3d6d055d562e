package streams

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A reader's WaitKey sees a key appear and go as the hub stores the
// changes, and gives up at its timeout when nothing changes.
func TestWaitKey(t *testing.T) {
	hub, auth := startAuthedTestHub(t)
	ctx := context.Background()
	kv, err := hub.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "wait-test"})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := Connect(ctx, hub.ClientURL(), ReaderSeedFile(auth), "wait test reader")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	if !WaitKey(ctx, rd.JS, "wait-test", "k", false, time.Second) {
		t.Error("absent key: WaitKey(absent) = false, want true at once")
	}
	start := time.Now()
	if WaitKey(ctx, rd.JS, "wait-test", "k", true, 300*time.Millisecond) {
		t.Error("absent key: WaitKey(present) = true, want false")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("WaitKey gave up after %s, before its 300ms timeout", d)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = kv.Put(ctx, "k", []byte("v"))
	}()
	if !WaitKey(ctx, rd.JS, "wait-test", "k", true, 5*time.Second) {
		t.Error("key put while waiting: WaitKey(present) = false, want true")
	}
	if !WaitKey(ctx, rd.JS, "wait-test", "k", true, time.Second) {
		t.Error("present key: WaitKey(present) = false, want true at once")
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = kv.Delete(ctx, "k")
	}()
	if !WaitKey(ctx, rd.JS, "wait-test", "k", false, 5*time.Second) {
		t.Error("key deleted while waiting: WaitKey(absent) = false, want true")
	}
}

// ReadKey finds a present key, reports an absent or deleted one as not
// found, and names the bucket it could not open.
func TestReadKey(t *testing.T) {
	hub, auth := startAuthedTestHub(t)
	ctx := context.Background()
	kv, err := hub.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "readkey-test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "here", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "gone", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	rd, err := Connect(ctx, hub.ClientURL(), ReaderSeedFile(auth), "readkey test reader")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if v, found, err := ReadKey(ctx, rd.JS, "readkey-test", "here"); err != nil || !found || string(v) != "v" {
		t.Errorf("here: %q %v %v, want \"v\" found", v, found, err)
	}
	for _, key := range []string{"gone", "never"} {
		if v, found, err := ReadKey(ctx, rd.JS, "readkey-test", key); err != nil || found {
			t.Errorf("%s: %q %v %v, want not found", key, v, found, err)
		}
	}
	_, _, err = ReadKey(ctx, rd.JS, "no-such-bucket", "k")
	var open *KeyOpenError
	if !errors.As(err, &open) || !strings.HasPrefix(err.Error(), "open no-such-bucket: ") {
		t.Errorf("missing bucket: err %v, want a *KeyOpenError naming it", err)
	}
}
