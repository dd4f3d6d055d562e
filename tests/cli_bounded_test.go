package tests

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCollectBoundsEveryFileItReads: every file `pinkie collect` is given
// is read with a limit. /dev/zero never ends and a sparse 4 GiB file is
// far bigger than any real input; both fail at once with exit 2 and an
// error naming the file and the limit (before the fix, --mdstat /dev/zero
// ran a 24 GB machine out of memory). A host file under --root that is
// too big is the producer failing on this host: exit 1, naming the file.
func TestCollectBoundsEveryFileItReads(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skipf("no /dev/zero: %v", err)
	}
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge")
	if err := errors.Join(os.WriteFile(huge, nil, 0o644), os.Truncate(huge, 4<<30)); err != nil {
		t.Fatal(err) // a sparse file: no disk used
	}
	// A replay directory whose commands.json is endless.
	replay := filepath.Join(dir, "replay")
	if err := os.MkdirAll(replay, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(replay, "commands.json")); err != nil {
		t.Fatal(err)
	}
	// A root whose /proc/mdstat is endless.
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(root, "proc", "mdstat")); err != nil {
		t.Fatal(err)
	}

	type tc struct {
		name     string
		args     []string
		wantCode int
		want     string
	}
	var tests []tc
	for _, src := range []struct{ producer, flag, limit string }{
		{"mdraid", "--mdstat", "1 MiB"},
		{"smart", "--smartctl-json", "4 MiB"},
		{"zfs", "--zpool-status", "16 MiB"},
		{"", "--config", "1 MiB"},
	} {
		for _, file := range []string{"/dev/zero", huge} {
			args := []string{"collect", src.flag, file}
			if src.producer != "" {
				args = []string{"collect", src.producer, src.flag, file}
			}
			tests = append(tests, tc{src.flag + " " + filepath.Base(file), args, 2, "read " + file + ": larger than " + src.limit})
		}
	}
	tests = append(tests,
		tc{"--replay-commands", []string{"collect", "network", "--replay-commands", replay}, 2, "read " + filepath.Join(replay, "commands.json") + ": larger than 1 MiB"},
		tc{"--from /dev/zero", []string{"collect", "login", "--from", "/dev/zero"}, 2, "--from /dev/zero: not a regular file"},
		tc{"--root with an endless /proc/mdstat", []string{"collect", "mdraid", "--root", root}, 1, "read /proc/mdstat: read proc/mdstat: larger than 1 MiB"},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			out, code := runPinkie(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d (want %d), output should contain %q:\n%s", code, tt.wantCode, tt.want, out)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v: the read is not bounded", d)
			}
		})
	}
}

// TestCLIBoundsEveryFileItReads: the files other verbs are given (keys,
// CA bundles, configs, a declared fleet) are read with a limit too: exit
// 2 at once, naming the file and the limit.
func TestCLIBoundsEveryFileItReads(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skipf("no /dev/zero: %v", err)
	}
	server := []string{"--server", "nats://127.0.0.1:1"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"--nkey", append([]string{"hosts", "--nkey", "/dev/zero"}, server...), "--nkey: read nkey file: read /dev/zero: larger than 64 KiB"},
		{"--tls-ca", append([]string{"hosts", "--tls-ca", "/dev/zero"}, server...), "--tls-ca: read /dev/zero: larger than 16 MiB"},
		{"hub --config", []string{"hub", "--config", "/dev/zero", "--data", t.TempDir()}, "--config: read /dev/zero: larger than 1 MiB"},
		{"agent --config", []string{"agent", "--config", "/dev/zero", "--name", "x", "--data", t.TempDir()}, "--config: read /dev/zero: larger than 1 MiB"},
		{"fleet export --from", []string{"fleet", "export", "--from", "/dev/zero"}, "--from: read /dev/zero: larger than 8 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			out, code := runPinkie(t, tt.args...)
			if code != 2 || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d (want 2), output should contain %q:\n%s", code, tt.want, out)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v: the read is not bounded", d)
			}
		})
	}
}
