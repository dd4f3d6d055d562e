package streams

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestContainerUserHelper is the chrooted process of TestContainerUser,
// not a test of its own: it chroots and waits for its stdin to close.
func TestContainerUserHelper(t *testing.T) {
	dir := os.Getenv("PINKIE_TEST_CHROOT")
	if dir == "" {
		t.Skip("helper process of TestContainerUser")
	}
	if err := syscall.Chroot(dir); err != nil {
		os.Exit(3)
	}
	os.Stdout.WriteString("ready\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// TestContainerUser: a container's user is read from the passwd inside
// its root (a real chrooted process), and an absolute symlink the
// container planted at /etc/passwd resolves inside that root, never to
// the host's file it names.
func TestContainerUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	hostFile := filepath.Join(t.TempDir(), "host-passwd")
	if err := os.WriteFile(hostFile, []byte("root:x:0:0::/host-secret:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		plant    func(etc string) error
		wantHome string // "": an error
	}{
		{"its own passwd", func(etc string) error {
			return os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:x:0:0::/inside:/bin/sh\n"), 0o644)
		}, "/inside"},
		{"a symlink to a host file", func(etc string) error { return os.Symlink(hostFile, filepath.Join(etc, "passwd")) }, ""},
		{"a symlink climbing out", func(etc string) error {
			return os.Symlink("../../../../../../../../.."+hostFile, filepath.Join(etc, "passwd"))
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tc.plant(filepath.Join(root, "etc")); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestContainerUserHelper$")
			cmd.Env = append(os.Environ(), "PINKIE_TEST_CHROOT="+root)
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); _ = cmd.Wait() }()
			if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
				t.Fatalf("the chrooted helper said %q", line)
			}
			u, err := containerUser(cmd.Process.Pid, "root")
			switch {
			case tc.wantHome == "" && err == nil:
				t.Fatalf("read %+v through the planted symlink; want an error", u)
			case tc.wantHome == "" && strings.Contains(u.Home, "host-secret"):
				t.Fatalf("read the host's file: %+v", u)
			case tc.wantHome != "" && (err != nil || u.Home != tc.wantHome):
				t.Fatalf("%+v, %v; want home %s", u, err, tc.wantHome)
			}
		})
	}
}
