package bounded

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestReadFile(t *testing.T) {
	fsys := fstest.MapFS{
		"proc/mdstat": {Data: []byte(strings.Repeat("x", 100))},
	}
	tests := []struct {
		name    string
		file    string
		limit   int64
		wantLen int
		wantErr error
		wantMsg string
	}{
		{"under the limit", "proc/mdstat", 101, 100, nil, ""},
		{"exactly the limit", "proc/mdstat", 100, 100, nil, ""},
		{"one byte over", "proc/mdstat", 99, 0, ErrTooLarge, "read proc/mdstat: larger than 99 bytes, the limit for this input"},
		{"missing", "proc/nope", 100, 0, fs.ErrNotExist, "proc/nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ReadFile(fsys, tt.file, tt.limit)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
			if len(b) != tt.wantLen {
				t.Errorf("read %d bytes, want %d", len(b), tt.wantLen)
			}
		})
	}
}

// TestReadPathEndlessAndHuge: /dev/zero never ends and a sparse 8 GiB file
// holds more than memory should; both fail at once, naming the file and
// the limit.
func TestReadPathEndlessAndHuge(t *testing.T) {
	huge := filepath.Join(t.TempDir(), "huge")
	if err := errors.Join(os.WriteFile(huge, nil, 0o644), os.Truncate(huge, 8<<30)); err != nil {
		t.Fatal(err) // a sparse file: no disk used
	}
	for _, path := range []string{"/dev/zero", huge} {
		t.Run(path, func(t *testing.T) {
			if _, err := os.Stat(path); err != nil {
				t.Skipf("%s: %v", path, err)
			}
			start := time.Now()
			_, err := ReadPath(path, 1*MiB)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
			if want := "read " + path + ": larger than 1 MiB"; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q, want it to start %q", err, want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{99: "99 bytes", 64 * KiB: "64 KiB", 16 * MiB: "16 MiB", MiB + 1: "1048577 bytes"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestReadTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		n    int64
		want string
	}{{100, "one\ntwo\nthree\n"}, {6, "three\n"}, {8, "o\nthree\n"}} {
		if b, err := ReadTail(p, tt.n); err != nil || string(b) != tt.want {
			t.Errorf("ReadTail(%d) = %q, %v; want %q", tt.n, b, err, tt.want)
		}
	}
	if b, err := ReadTail("/dev/zero", 1000); err != nil || len(b) != 1000 {
		t.Errorf("ReadTail(/dev/zero) = %d bytes, %v", len(b), err)
	}
}
