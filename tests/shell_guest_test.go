package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/shell"
	"github.com/pinkiefleet/pinkie/streams"
)

// startNamespaceGuest starts `sleep ARG` as PID 1 of new PID, mount, UTS,
// IPC and network namespaces with its own hostname and /proc: a
// container's leader as nsenter sees it. It returns the leader's host PID.
func startNamespaceGuest(t *testing.T, hostname, arg string) int {
	t.Helper()
	cmd := exec.Command("unshare", "--fork", "--kill-child", "--pid", "--mount", "--uts", "--ipc", "--net", "--mount-proc",
		"sh", "-c", "hostname "+hostname+" && "+emptyHomes+" && exec sleep "+arg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	children := fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid)
	for i := 0; i < 200; i++ {
		b, _ := os.ReadFile(children)
		if f := strings.Fields(string(b)); len(f) == 1 {
			line, _ := os.ReadFile("/proc/" + f[0] + "/cmdline")
			if string(line) == "sleep\x00"+arg+"\x00" {
				pid, _ := strconv.Atoi(f[0])
				return pid
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("the namespace's sleep did not start: %s", errb.String())
	return 0
}

// serveConsole serves a shell on a pty at a unix socket, as a
// hypervisor serves a VM's console: one connection at a time, closed
// when the shell exits.
func serveConsole(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			sh := exec.Command("sh")
			sh.Env = []string{"PS1=vm1$ ", "PATH=" + os.Getenv("PATH")}
			tty, err := pty.Start(sh)
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(tty, c) }()
			_, _ = io.Copy(c, tty)
			_ = sh.Wait()
			tty.Close()
			c.Close()
		}
	}()
}

// TestShellGuest: --guest web enters a NixOS container (a real process in
// its own namespaces, its leader PID answered by a replayed machinectl):
// hostname and /proc/1 are the container's, as root and as a non-root
// --shell-user; an unknown guest is refused with the host's guests; a
// stopped container and a MicroVM without a console socket are clear
// refusals; a MicroVM's console socket is a session; the audit event names
// the guest; a reader key and a compromised leaf holding beta's key open
// no guest session.
func TestShellGuest(t *testing.T) {
	needGuests(t)
	guestFlags := guestFixture(t)
	const nsHost, sleepArg = guestNSHost, guestSleepArg

	f := newFleet(t, "alpha", "beta", "gamma")
	f.startHub()
	f.startAgent("alpha", t.TempDir(), "", append(guestFlags, "--shell-user", "root")...).waitFor("hub connected", 30*time.Second)
	beta := f.startAgent("beta", t.TempDir(), "")
	beta.waitFor("hub connected", 30*time.Second)
	// gamma: the same guests, sessions as a non-root user (the namespace
	// shares the host's /etc/passwd).
	user, uid := nonRootUser(t)
	if user != "" {
		f.startAgent("gamma", t.TempDir(), "", append(guestFlags, "--shell-user", user)...).waitFor("hub connected", 30*time.Second)
	}
	ownHost, _ := os.Hostname()

	t.Run("container as root", func(t *testing.T) {
		r := runShellCmd(t, f, nil, "-n", "alpha", "--guest", "web", "--", "hostname")
		if r.code != 0 || strings.TrimSpace(string(r.stdout)) != nsHost {
			t.Fatalf("hostname in web: exit %d, %q, want %q (the host is %q)\n%s", r.code, r.stdout, nsHost, ownHost, r.stderr)
		}
		r = runShellCmd(t, f, nil, "-n", "alpha", "--guest", "web", "--", "cat /proc/1/cmdline; echo; id -u")
		if r.code != 0 || string(r.stdout) != "sleep\x00"+sleepArg+"\x00\n0\n" {
			t.Fatalf("/proc/1 in web: exit %d, %q, want the namespace's sleep %s as root\n%s", r.code, r.stdout, sleepArg, r.stderr)
		}
		ev := waitShellEvent(t, f, "alpha", "ended", 30*time.Second)
		if ev.Guest != "web" || ev.User != "root" {
			t.Errorf("the audit event names guest %q user %q, want web and root", ev.Guest, ev.User)
		}
		r = runShellCmd(t, f, nil, "-n", "alpha", "--", "hostname")
		if strings.TrimSpace(string(r.stdout)) != ownHost {
			t.Errorf("without --guest, hostname is %q, want the host's %q", r.stdout, ownHost)
		}
	})
	t.Run("container as a non-root user", func(t *testing.T) {
		if user == "" {
			t.Skip("no non-root user with a login shell in /etc/passwd")
		}
		r := runShellCmd(t, f, nil, "-n", "gamma", "--guest", "web", "--", "id -u; hostname")
		if r.code != 0 || string(r.stdout) != uid+"\n"+nsHost+"\n" {
			t.Fatalf("exit %d, %q, want uid %s in %s\n%s", r.code, r.stdout, uid, nsHost, r.stderr)
		}
		r = runShellCmd(t, f, nil, "-n", "-t", "gamma", "--guest", "web", "--", "stat -c %U $(tty); cat /proc/1/cmdline")
		if r.code != 0 || !strings.HasPrefix(string(r.stdout), user+"\r\n") || !strings.Contains(string(r.stdout), "sleep\x00"+sleepArg) {
			t.Fatalf("with a pty: exit %d, %q, want the pty owned by %s and the namespace's /proc\n%s", r.code, r.stdout, user, r.stderr)
		}
	})
	t.Run("interactive in the container", func(t *testing.T) {
		tm := newTmux(t, 100, 30)
		tm.line(strings.Join([]string{pinkieBin, "shell", "--server", f.natsURL(), "--nkey", f.operator(), "alpha", "--guest", "web"}, " ") + "; echo pinkie-exit=$?")
		tm.line("echo in-$(hostname) size=$(stty size) pid1=$(tr '\\0' ' ' < /proc/1/cmdline)")
		tm.waitFor("in-"+nsHost+" size=30 100 pid1=sleep "+sleepArg, 20*time.Second)
		tm.line("exit 5")
		tm.waitFor("pinkie-exit=5", 10*time.Second)
	})
	t.Run("unknown guest", func(t *testing.T) {
		r := runShellCmd(t, f, nil, "-n", "alpha", "--guest", "nosuch", "--", "true")
		want := `alpha has no guest "nosuch"; its guests: beta (microvm), db (container), vm1 (microvm), vm2 (microvm), web (container)`
		if r.code != 255 || !strings.Contains(string(r.stderr), want) {
			t.Fatalf("exit %d, want 255 and %q:\n%s", r.code, want, r.stderr)
		}
	})
	t.Run("stopped container", func(t *testing.T) {
		r := runShellCmd(t, f, nil, "-n", "alpha", "--guest", "db", "--", "true")
		if r.code != 255 || !strings.Contains(string(r.stderr), "container db on alpha is not running") || !strings.Contains(string(r.stderr), "No machine 'db' known") {
			t.Fatalf("exit %d, want 255 and 'not running':\n%s", r.code, r.stderr)
		}
	})
	t.Run("microvm without a console", func(t *testing.T) {
		r := runShellCmd(t, f, nil, "-n", "alpha", "--guest", "vm2", "--", "true")
		if r.code != 255 || !strings.Contains(string(r.stderr), "vm2.sock") || !strings.Contains(string(r.stderr), "pinkie shell <its host name>") {
			t.Fatalf("exit %d, want 255, the socket path and the hint to use the VM's own agent:\n%s", r.code, r.stderr)
		}
	})
	t.Run("microvm with its own agent", func(t *testing.T) {
		waitInventory(t, f, "beta")
		r := runShellCmd(t, f, nil, "-n", "alpha", "--guest", "beta", "--", "true")
		if r.code != 255 || !strings.Contains(string(r.stderr), "beta is a host of the fleet with its own agent: pinkie shell beta") {
			t.Fatalf("exit %d, want 255 and the VM's own host named:\n%s", r.code, r.stderr)
		}
		r = runShellCmd(t, f, nil, "-n", "alpha", "--guest", "vm2", "--", "true")
		if strings.Contains(string(r.stderr), "is a host of the fleet") {
			t.Errorf("vm2 is no host of the fleet, but:\n%s", r.stderr)
		}
	})
	t.Run("microvm console", func(t *testing.T) {
		r := runShellCmd(t, f, nil, "alpha", "--guest", "vm1", "--", "true")
		if r.code != 255 || !strings.Contains(string(r.stderr), "its console is a terminal") {
			t.Fatalf("a command on the console: exit %d, want 255 and a refusal:\n%s", r.code, r.stderr)
		}
		r = runShellCmd(t, f, []byte("echo console-$((6*7))\nexit\n"), "alpha", "--guest", "vm1")
		if r.code != 0 || !strings.Contains(string(r.stdout), "console-42") {
			t.Fatalf("the console session: exit %d, %q, want console-42\n%s", r.code, r.stdout, r.stderr)
		}
		// The earlier sessions' events come first; the console's is the
		// last ended one.
		var ev events.ShellSession
		for i := 0; i < 10 && ev.Guest != "vm1"; i++ {
			ev = waitShellEvent(t, f, "alpha", "ended", 30*time.Second)
		}
		if ev.Guest != "vm1" || ev.User != "" || ev.ExitCode == nil || *ev.ExitCode != 0 {
			t.Errorf("the console's audit event: guest %q user %q exit %v, want vm1, no user, 0", ev.Guest, ev.User, ev.ExitCode)
		}
	})
	marker := filepath.Join(t.TempDir(), "marker")
	t.Run("reader key", func(t *testing.T) {
		r := runShellCmd(t, f, nil, "--nkey", streams.ReaderSeedFile(f.auth), "alpha", "--guest", "web", "--", "touch "+marker+".reader")
		if r.code != 255 || !strings.Contains(string(r.stderr), "not permitted") {
			t.Fatalf("exit %d, want 255 and a refusal:\n%s", r.code, r.stderr)
		}
		sid := streams.NewShellSession()
		body, _ := json.Marshal(shell.Open{Session: sid, Command: "touch " + marker + ".natscli", Guest: "web", Window: 1 << 20})
		out, _ := exec.Command(natsCLI(t), "--server", f.natsURL(), "--nkey", streams.ReaderSeedFile(f.auth), "pub", events.ShellOpenSubject("alpha"), string(body)).CombinedOutput()
		if !strings.Contains(strings.ToLower(string(out)), "permission") {
			t.Errorf("nats pub with the reader key was not refused:\n%s", out)
		}
	})
	t.Run("compromised beta leaf", func(t *testing.T) {
		beta.kill()
		rogue := startRogueLeaf(t, f, "beta")
		sid := streams.NewShellSession()
		body, _ := json.Marshal(shell.Open{Session: sid, Command: "touch " + marker + ".rogue", Guest: "web", Window: 1 << 20})
		rogue.natsPub(t, events.ShellOpenSubject("alpha"), body)
		// A session after the rogue's publish: the rogue's open, had it
		// crossed, would have reached alpha's agent by then.
		if r := runShellCmd(t, f, nil, "-n", "alpha", "--guest", "web", "--", "true"); r.code != 0 {
			t.Fatalf("the operator's session after the rogue's: exit %d\n%s", r.code, r.stderr)
		}
	})
	for _, suffix := range []string{".reader", ".natscli", ".rogue"} {
		if _, err := os.Stat(marker + suffix); err == nil {
			t.Errorf("a refused guest session ran: %s exists", marker+suffix)
		}
	}
}

// The namespace guestFixture starts as the container web: its hostname,
// and the argument of its PID 1 (sleep).
const guestNSHost, guestSleepArg = "guest-web-ns", "86399"

// guestFixture makes a host with guests for an agent, and returns the
// agent's flags (--shell without --shell-user): NixOS containers web (a
// real namespace, startNamespaceGuest, its leader PID answered by a
// replayed machinectl) and db (stopped), MicroVMs vm1 (a console socket
// serving a shell on a pty) and vm2 (none).
func guestFixture(t *testing.T) []string {
	t.Helper()
	leader := startNamespaceGuest(t, guestNSHost, guestSleepArg)
	root := t.TempDir()
	// beta: a MicroVM that is a host of the fleet with its own agent.
	for _, d := range []string{"etc/nixos-containers", "var/lib/microvms/vm1", "var/lib/microvms/vm2", "var/lib/microvms/beta"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []string{"web", "db"} {
		if err := os.WriteFile(filepath.Join(root, "etc/nixos-containers", c+".conf"), []byte("LOCAL_ADDRESS=10.233.0.2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	replay := t.TempDir()
	rec := map[string]string{
		"web.out": strconv.Itoa(leader) + "\n", "web.code": "0",
		"db.out": "Could not get path to machine: No machine 'db' known\n", "db.code": "1",
	}
	for name, body := range rec {
		if err := os.WriteFile(filepath.Join(replay, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmds, _ := json.Marshal(map[string]string{
		"machinectl show --property=Leader --value web": "web",
		"machinectl show --property=Leader --value db":  "db",
	})
	if err := os.WriteFile(filepath.Join(replay, "commands.json"), cmds, 0o644); err != nil {
		t.Fatal(err)
	}
	consoles := t.TempDir()
	serveConsole(t, filepath.Join(consoles, "vm1.sock"))
	return []string{"--shell", "--root", root, "--replay-commands", replay, "--producers", "heartbeat",
		"--shell-microvm-console", filepath.Join(consoles, "{name}.sock")}
}

// waitInventory waits until host is in the hub's inventory (the hub has
// projected its first events; its dashboard page exists).
func waitInventory(t *testing.T, f *fleet, host string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := exec.Command(pinkieBin, "hosts", "--server", f.natsURL(), "--nkey", f.operator(), host).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not in the inventory within 30s: %v\n%s", host, err, out)
		}
	}
}

// needGuests skips a test that cannot enter namespaces here.
func needGuests(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("entering namespaces needs root")
	}
	for _, bin := range []string{"unshare", "nsenter", "setpriv", "hostname"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: %v", bin, err)
		}
	}
}

// nonRootUser is a user of this machine with a login shell, and its uid.
func nonRootUser(t *testing.T) (name, uid string) {
	t.Helper()
	b, _ := os.ReadFile("/etc/passwd")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) == 7 && f[2] != "0" && (strings.HasSuffix(f[6], "/bash") || strings.HasSuffix(f[6], "/sh")) {
			return f[0], f[2]
		}
	}
	return "", ""
}
