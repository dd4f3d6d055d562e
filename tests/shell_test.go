package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/shell"
	"github.com/pinkiefleet/pinkie/streams"
)

// shellResult is one pinkie shell run: stdout and stderr apart, and the
// exit code.
type shellResult struct {
	stdout, stderr []byte
	code           int
}

// runShellCmd runs pinkie shell with stdin (nil: none) against f's hub as
// the operator, unless args name another --nkey.
func runShellCmd(t *testing.T, f *fleet, stdin []byte, args ...string) shellResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"shell", "--server", f.natsURL()}, args...)
	if !strings.Contains(strings.Join(args, " "), "--nkey") {
		full = append([]string{"shell", "--server", f.natsURL(), "--nkey", f.operator()}, args...)
	}
	cmd := exec.CommandContext(ctx, pinkieBin, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run pinkie %v: %v", full, err)
	}
	return shellResult{stdout: out.Bytes(), stderr: errb.Bytes(), code: code}
}

// startShellFleet is a hub with auth and an agent for each host, alpha
// with --shell as root (explicitly), the others as extra says.
func startShellFleet(t *testing.T, hosts ...string) (*fleet, *proc, map[string]*proc) {
	t.Helper()
	f := newFleet(t, hosts...)
	hub := f.startHub()
	agents := map[string]*proc{}
	for _, h := range hosts {
		var extra []string
		if h == "alpha" {
			extra = []string{"--shell", "--shell-user", "root"}
		}
		agents[h] = f.startAgent(h, t.TempDir(), "", extra...)
		agents[h].waitFor("hub connected", 30*time.Second)
	}
	return f, hub, agents
}

// TestShellCommand: a command's stdout and stderr arrive apart, its exit
// code is pinkie shell's, stdin is piped, and 10 MB of random bytes pass
// through cat unchanged.
func TestShellCommand(t *testing.T) {
	f, _, _ := startShellFleet(t, "alpha")
	cases := []struct {
		name       string
		stdin      []byte
		args       []string
		wantOut    string
		wantErr    string
		wantCode   int
		errContain string
	}{
		{name: "stdout and stderr apart", args: []string{"alpha", "--", "echo out; echo err >&2"}, wantOut: "out\n", wantErr: "err\n"},
		{name: "exit 3", args: []string{"alpha", "--", "sh", "-c", "echo three; exit 3"}, wantOut: "three\n", wantCode: 3},
		{name: "not found is 127", args: []string{"alpha", "--", "no-such-command-xyz"}, wantCode: 127, errContain: "not found"},
		{name: "stdin piped", stdin: []byte("one\ntwo\nthree\n"), args: []string{"alpha", "--", "wc", "-l"}, wantOut: "3\n"},
		{name: "arguments quoted each", args: []string{"alpha", "--", "printf", "%s|", "a b", "c'd"}, wantOut: "a b|c'd|"},
		{name: "a pty with -t", args: []string{"-t", "alpha", "--", "test -t 0 && test -t 1 && echo on a tty"}, wantOut: "on a tty\r\n"},
		{name: "no pty without -t", args: []string{"alpha", "--", "test -t 1 || echo no tty"}, wantOut: "no tty\n"},
		{name: "no command, stdin piped: the login shell reads it", stdin: []byte("echo from-stdin-$((1+1))\n"), args: []string{"alpha"}, wantOut: "from-stdin-2\n"},
		{name: "usage: no host", wantCode: 2, errContain: "missing HOST"},
		{name: "usage: bad host", args: []string{"bad.host"}, wantCode: 2, errContain: "invalid host name"},
		{name: "no stdin with -n", stdin: []byte("ignored"), args: []string{"-n", "alpha", "--", "cat"}, wantOut: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runShellCmd(t, f, tc.stdin, tc.args...)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout %q\nstderr %q", r.code, tc.wantCode, r.stdout, r.stderr)
			}
			if string(r.stdout) != tc.wantOut {
				t.Errorf("stdout %q, want %q", r.stdout, tc.wantOut)
			}
			if tc.errContain != "" {
				if !strings.Contains(string(r.stderr), tc.errContain) {
					t.Errorf("stderr %q does not say %q", r.stderr, tc.errContain)
				}
			} else if string(r.stderr) != tc.wantErr {
				t.Errorf("stderr %q, want %q", r.stderr, tc.wantErr)
			}
		})
	}
	t.Run("10 MB binary through cat", func(t *testing.T) {
		data := make([]byte, 10<<20)
		_, _ = rand.Read(data)
		r := runShellCmd(t, f, data, "alpha", "--", "cat")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if !bytes.Equal(r.stdout, data) {
			t.Fatalf("got %d bytes back, want the %d sent, identical", len(r.stdout), len(data))
		}
	})
}

// tmuxPane drives a shell in a detached tmux session on its own server.
type tmuxPane struct {
	t      *testing.T
	socket string
}

func newTmux(t *testing.T, cols, rows int) *tmuxPane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed")
	}
	p := &tmuxPane{t: t, socket: "pinkie-shell-" + filepath.Base(t.TempDir())}
	p.run("-f", "/dev/null", "new-session", "-d", "-s", "s", "-x", strconv.Itoa(cols), "-y", strconv.Itoa(rows),
		"env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME="+t.TempDir(), "PS1=local$ ", "bash", "--norc", "--noprofile")
	p.run("set-option", "-g", "status", "off")
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", p.socket, "kill-server").Run() })
	p.waitFor("local$", 10*time.Second)
	return p
}

func (p *tmuxPane) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", p.socket}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// line types a line and Enter.
func (p *tmuxPane) line(s string) {
	p.run("send-keys", "-t", "s", "-l", s)
	p.run("send-keys", "-t", "s", "Enter")
}

func (p *tmuxPane) screen() string { return p.run("capture-pane", "-p", "-t", "s", "-S", "-200") }

// waitFor polls the pane (tmux tells nobody when it draws) until it shows s.
func (p *tmuxPane) waitFor(s string, within time.Duration) string {
	p.t.Helper()
	sc, ok := p.shows(s, within)
	if !ok {
		p.t.Fatalf("the pane did not show %q within %s:\n%s", s, within, sc)
	}
	return sc
}

// shows polls the pane until it shows s or within passed.
func (p *tmuxPane) shows(s string, within time.Duration) (string, bool) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		sc := p.screen()
		if strings.Contains(sc, s) {
			return sc, true
		}
		if time.Now().After(deadline) {
			return sc, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestShellInteractive drives an interactive session through tmux: a
// command typed at the remote shell prints its output, TERM and the window
// size arrive, a resize of the local window reaches the remote pty, Ctrl-C
// interrupts the remote job (not pinkie shell), exit ends pinkie shell
// with the shell's code, and the local terminal is as before.
func TestShellInteractive(t *testing.T) {
	f, _, _ := startShellFleet(t, "alpha")
	tm := newTmux(t, 120, 30)
	dir := t.TempDir()
	before, after := filepath.Join(dir, "before"), filepath.Join(dir, "after")
	tm.line("stty -g > " + before + `; echo "local""-term=$TERM."`) // the typed line does not say local-term=
	m := regexp.MustCompile(`local-term=(\S+)\.`).FindStringSubmatch(tm.waitFor("local-term=", 5*time.Second))
	if m == nil {
		t.Fatalf("no local TERM on the pane:\n%s", tm.screen())
	}
	localTerm := m[1]
	tm.line(strings.Join([]string{pinkieBin, "shell", "--server", f.natsURL(), "--nkey", f.operator(), "alpha"}, " ") + "; echo pinkie-exit=$?")
	tm.line("export PS1='remote# '; echo remote-$((6*7)) term=$TERM")
	tm.waitFor("remote-42 term="+localTerm+"\n", 20*time.Second) // TERM arrived as the local one
	tm.line("echo size=$(stty size)")
	tm.waitFor("size=30 120", 10*time.Second)
	// The resize travels as SIGWINCH to pinkie shell, then on ctl, apart
	// from the typed input: ask until the remote pty has it.
	tm.run("resize-window", "-t", "s", "-x", "100", "-y", "25")
	for try := 0; ; try++ {
		tm.line("echo resized=$(stty size)")
		if _, ok := tm.shows("resized=25 100", time.Second); ok {
			break
		}
		if try == 10 {
			t.Fatalf("the remote pty did not take the new size:\n%s", tm.screen())
		}
	}
	// Ctrl-C goes to the remote foreground job, not to pinkie shell.
	tm.line("echo sleeping-$((1+1)); sleep 300; echo after-$((2*21))")
	tm.waitFor("sleeping-2", 10*time.Second) // the line was read: Ctrl-C now hits the job, not typeahead
	tm.run("send-keys", "-t", "s", "C-c")
	tm.line("echo interrupted-$((40+2))")
	tm.waitFor("interrupted-42", 10*time.Second)
	if sc := tm.screen(); strings.Contains(sc, "after-42") || regexp.MustCompile(`pinkie-exit=\d`).MatchString(sc) {
		t.Fatalf("Ctrl-C did not interrupt only the remote job:\n%s", tm.screen())
	}
	tm.line("exit 7")
	tm.waitFor("pinkie-exit=7", 10*time.Second)
	tm.line("stty -g > " + after + "; cmp " + before + " " + after + " && echo terminal-restored")
	tm.waitFor("terminal-restored", 5*time.Second)
}

// openBody is an open request as an attacker would write it.
func openBody(session, command string) []byte {
	b, _ := json.Marshal(shell.Open{Session: session, Command: command, Window: 1 << 20})
	return b
}

// remoteExists asks alpha, as the operator, whether path exists there.
func remoteExists(t *testing.T, f *fleet, path string) bool {
	t.Helper()
	r := runShellCmd(t, f, nil, "-n", "alpha", "--", "test -e "+path+" && echo present || echo absent")
	if r.code != 0 {
		t.Fatalf("check %s on alpha: exit %d: %s", path, r.code, r.stderr)
	}
	return strings.TrimSpace(string(r.stdout)) == "present"
}

// TestShellRefusals: a reader key (pinkie shell and the real nats CLI), a
// compromised leaf holding beta's key, an agent without --shell (also for
// a --guest session) and a root agent without --shell-user are all
// refused, and nothing runs. Guest sessions against real guests:
// TestShellGuest (reader key, compromised leaf).
func TestShellRefusals(t *testing.T) {
	f, _, agents := startShellFleet(t, "alpha", "beta", "gamma", "delta")
	// gamma runs without --shell (startShellFleet); delta with --shell as
	// root but no --shell-user.
	agents["delta"].kill()
	f.startAgent("delta", t.TempDir(), "", "--shell").waitFor("hub connected", 30*time.Second)
	marker := filepath.Join(t.TempDir(), "marker")
	reader := streams.ReaderSeedFile(f.auth)
	natsBin := natsCLI(t)

	t.Run("reader key with pinkie shell", func(t *testing.T) {
		r := runShellCmd(t, f, nil, "--nkey", reader, "alpha", "--", "touch "+marker+".reader")
		if r.code != 255 || !strings.Contains(string(r.stderr), "not permitted") {
			t.Fatalf("exit %d, want 255 and a refusal:\n%s", r.code, r.stderr)
		}
	})
	t.Run("reader key with the nats CLI", func(t *testing.T) {
		sid := streams.NewShellSession()
		out, _ := exec.Command(natsBin, "--server", f.natsURL(), "--nkey", reader, "pub", events.ShellOpenSubject("alpha"), string(openBody(sid, "touch "+marker+".natscli"))).CombinedOutput()
		if !strings.Contains(strings.ToLower(string(out)), "permission") {
			t.Errorf("nats pub with the reader key was not refused:\n%s", out)
		}
		out, _ = exec.Command(natsBin, "--server", f.natsURL(), "--nkey", reader, "sub", events.ShellSubject("alpha", "*", events.ShellOut), "--count", "1", "--timeout", "2s").CombinedOutput()
		if !strings.Contains(strings.ToLower(string(out)), "permission") {
			t.Errorf("nats sub to alpha's output with the reader key was not refused:\n%s", out)
		}
	})
	t.Run("agent without --shell", func(t *testing.T) {
		r := runShellCmd(t, f, nil, "gamma", "--", "touch "+marker+".gamma")
		if r.code != 255 || !strings.Contains(string(r.stderr), "not started with --shell") {
			t.Fatalf("exit %d, want 255 and 'not started with --shell':\n%s", r.code, r.stderr)
		}
	})
	t.Run("guest on an agent without --shell", func(t *testing.T) {
		r := runShellCmd(t, f, nil, "gamma", "--guest", "web", "--", "touch "+marker+".gammaguest")
		if r.code != 255 || !strings.Contains(string(r.stderr), "not started with --shell") {
			t.Fatalf("exit %d, want 255 and 'not started with --shell':\n%s", r.code, r.stderr)
		}
	})
	t.Run("root agent without --shell-user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs an agent running as root")
		}
		r := runShellCmd(t, f, nil, "delta", "--", "touch "+marker+".delta")
		if r.code != 255 || !strings.Contains(string(r.stderr), "--shell-user is not set") {
			t.Fatalf("exit %d, want 255 and a refusal naming --shell-user:\n%s", r.code, r.stderr)
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		r := runShellCmd(t, f, nil, "--open-timeout", "2s", "nosuchhost", "--", "true")
		if r.code != 255 || !strings.Contains(string(r.stderr), "no agent answered for host nosuchhost within 2s") {
			t.Fatalf("exit %d, want 255 and 'no agent answered':\n%s", r.code, r.stderr)
		}
	})
	t.Run("compromised beta leaf", func(t *testing.T) {
		agents["beta"].kill()
		rogue := startRogueLeaf(t, f, "beta")
		spy := make(chan *nats.Msg, 1024)
		if _, err := rogue.nc.ChanSubscribe(events.ShellPrefix+".>", spy); err != nil {
			t.Fatal(err)
		}
		if err := rogue.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		// Open a session on alpha from beta's leaf.
		sid := streams.NewShellSession()
		rogue.natsPub(t, events.ShellOpenSubject("alpha"), openBody(sid, "touch "+marker+".rogue"))
		// Inject into, and read, an operator's live session on alpha.
		cmd := exec.Command(pinkieBin, "shell", "--server", f.natsURL(), "--nkey", f.operator(), "alpha", "--", `read line; echo "got=$line secret"`)
		stdin, _ := cmd.StdinPipe()
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		live := waitShellEvent(t, f, "alpha", "started", 30*time.Second)
		rogue.natsPub(t, events.ShellSubject("alpha", live.Session, events.ShellIn), []byte("INJECTED\n"), shell.HeaderOffset+":0")
		rogue.natsPub(t, events.ShellSubject("alpha", live.Session, events.ShellOut), []byte("FORGED\n"), shell.HeaderOffset+":0")
		rogue.natsPub(t, events.ShellSubject("alpha", live.Session, events.ShellCtl), []byte(`{"t":"close"}`))
		_, _ = stdin.Write([]byte("legit\n"))
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("the operator's session failed: %v\n%s", err, errb.String())
		}
		if out.String() != "got=legit secret\n" {
			t.Errorf("the operator's session printed %q, want only its own input echoed", out.String())
		}
		if remoteExists(t, f, marker+".rogue") {
			t.Error("beta's leaf opened a session on alpha")
		}
		// The rogue's server shows the rogue its own publishes; anything
		// else of alpha's is a leak.
		own := map[string]bool{"INJECTED\n": true, "FORGED\n": true, `{"t":"close"}`: true, string(openBody(sid, "touch "+marker+".rogue")): true}
		for len(spy) > 0 {
			m := <-spy
			if strings.HasPrefix(m.Subject, events.ShellPrefix+".alpha.") && !own[string(m.Data)] {
				t.Errorf("beta's leaf received alpha's %s: %q", m.Subject, m.Data)
			}
		}
	})
	for _, suffix := range []string{".reader", ".natscli", ".gamma", ".gammaguest", ".delta"} {
		if remoteExists(t, f, marker+suffix) {
			t.Errorf("a refused session ran: %s exists", marker+suffix)
		}
	}
	if _, err := os.Stat(marker + ".gamma"); err == nil {
		t.Error("gamma ran a command without --shell")
	}
}

// waitShellEvent waits for host's next shell.session event of phase at the
// hub, returning its data.
func waitShellEvent(t *testing.T, f *fleet, host, phase string, within time.Duration) events.ShellSession {
	t.Helper()
	c := f.client()
	deadline := time.Now().Add(within)
	for {
		for _, e := range readStreamQuiet(t, c, host) {
			var d events.ShellSession
			if json.Unmarshal(e.event.Data(), &d) == nil && d.Phase == phase && !seenShellEvent[d.Session+phase] {
				seenShellEvent[d.Session+phase] = true
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s shell.session event from %s within %s", phase, host, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var seenShellEvent = map[string]bool{}

func readStreamQuiet(t *testing.T, c *streams.Client, host string) []storedEvent {
	t.Helper()
	if countSubjects(t, c.JS, streams.HostsStream, events.HostSubject(host, "shell.session", "")) == 0 {
		return nil
	}
	return readStream(t, c.JS, streams.HostsStream, events.HostSubject(host, "shell.session", ""))
}

// TestShellLimitAndAudit: the agent refuses a session over
// --shell-max-sessions with a clear error, and every session is a
// started and an ended event that operators can nats sub, naming the
// operator's key, its address, the user, the command and the exit code.
func TestShellLimitAndAudit(t *testing.T) {
	f := newFleet(t, "alpha")
	f.startHub()
	f.startAgent("alpha", t.TempDir(), "", "--shell", "--shell-user", "root", "--shell-max-sessions", "1").waitFor("hub connected", 30*time.Second)
	auth, err := streams.LoadAuth(f.auth)
	if err != nil {
		t.Fatal(err)
	}
	sub := natsSub(t, f, events.HostSubject("alpha", "shell.session", ""), 4)

	first := exec.Command(pinkieBin, "shell", "--server", f.natsURL(), "--nkey", f.operator(), "alpha", "--", "cat")
	stdin, _ := first.StdinPipe()
	var out bytes.Buffer
	first.Stdout = &out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitShellEvent(t, f, "alpha", "started", 30*time.Second)
	r := runShellCmd(t, f, nil, "alpha", "--", "true")
	if r.code != 255 || !strings.Contains(string(r.stderr), "alpha already has 1 of 1 shell sessions open (--shell-max-sessions)") {
		t.Fatalf("a session over the limit: exit %d, want 255 and the limit named:\n%s", r.code, r.stderr)
	}
	_, _ = stdin.Write([]byte("first\n"))
	_ = stdin.Close()
	if err := first.Wait(); err != nil || out.String() != "first\n" {
		t.Fatalf("the first session: %v, printed %q", err, out.String())
	}
	waitShellEvent(t, f, "alpha", "ended", 30*time.Second)
	if r := runShellCmd(t, f, nil, "-n", "alpha", "--", "exit 5"); r.code != 5 {
		t.Fatalf("after the first ended, a new session: exit %d, want 5: %s", r.code, r.stderr)
	}
	ended := waitShellEvent(t, f, "alpha", "ended", 30*time.Second)
	want := events.ShellSession{Session: ended.Session, Phase: "ended", Operator: auth.Operators[0], ClientName: "pinkie shell",
		RemoteIP: "127.0.0.1", User: "root", Command: "exit 5", StartedAt: ended.StartedAt, EndedAt: ended.EndedAt, ExitCode: ptr(5)}
	if diff := cmp.Diff(want, ended); diff != "" {
		t.Errorf("ended event (-want +got):\n%s", diff)
	}
	if ended.EndedAt == nil || ended.EndedAt.Before(ended.StartedAt) {
		t.Errorf("ended_at %v before started_at %v", ended.EndedAt, ended.StartedAt)
	}
	got := sub(30 * time.Second)
	for _, s := range []string{`"phase":"started"`, `"phase":"ended"`, `"exit_code":5`, auth.Operators[0]} {
		if !strings.Contains(got, s) {
			t.Errorf("nats sub of the audit subject lacks %s:\n%s", s, got)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestShellLinkCut: a session whose client is interrupted, or whose link
// breaks, ends on both sides: the client exits 255 saying so, the agent
// kills the process and records the end, which reaches the hub once the
// link is back.
func TestShellLinkCut(t *testing.T) {
	f := newFleet(t, "alpha")
	hub := f.startHub()
	proxy := newLinkProxy(t, fmt.Sprintf("127.0.0.1:%d", f.leafPort))
	agent := f.startAgent("alpha", t.TempDir(), proxy.url(), "--shell", "--shell-user", "root")
	agent.waitFor("hub connected", 30*time.Second)

	// session starts one that runs until it is killed, and returns the
	// running pinkie shell and the remote process's pid.
	session := func(t *testing.T) (*exec.Cmd, *bytes.Buffer, int) {
		t.Helper()
		pidFile := filepath.Join(t.TempDir(), "pid")
		cmd := exec.Command(pinkieBin, "shell", "--server", f.natsURL(), "--nkey", f.operator(), "alpha", "--", "echo $$ > "+pidFile+"; echo ready; exec sleep 1000")
		var errb bytes.Buffer
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		deadline := time.Now().Add(30 * time.Second)
		for {
			// "ready" arrived: the client knows the session started.
			if b, err := os.ReadFile(pidFile); err == nil && out.String() == "ready\n" {
				pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
				return cmd, &errb, pid
			}
			if time.Now().After(deadline) {
				t.Fatalf("the session did not start: %s", errb.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// ends waits for both ends: pinkie shell exits 255 saying why, and
	// the remote process is gone.
	ends := func(t *testing.T, cmd *exec.Cmd, errb *bytes.Buffer, pid int, want string) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 255 || !strings.Contains(errb.String(), want) {
				t.Errorf("pinkie shell: %v, want exit 255 saying %q:\n%q", err, want, errb.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("pinkie shell did not end after the link was cut:\n%s", errb.String())
		}
		deadline := time.Now().Add(30 * time.Second)
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("the remote process %d still runs after the link was cut", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Run("client interrupted", func(t *testing.T) {
		cmd, errb, pid := session(t)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		ends(t, cmd, errb, pid, "interrupted; the session was closed")
		agent.waitFor(`reason="closed by the operator"`, 30*time.Second)
	})
	t.Run("leaf cut", func(t *testing.T) {
		cmd, errb, pid := session(t)
		connects := agent.count("hub connected")
		proxy.cut()
		ends(t, cmd, errb, pid, "lost the link to the host: no word from alpha")
		agent.waitFor("link lost: no word from the operator", 30*time.Second)
		proxy.restore()
		deadline := time.Now().Add(30 * time.Second)
		for agent.count("hub connected") == connects {
			if time.Now().After(deadline) {
				t.Fatalf("the agent did not reconnect:\n%s", agent.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("hub stopped", func(t *testing.T) {
		cmd, errb, pid := session(t)
		hub.stop(syscall.SIGTERM)
		ends(t, cmd, errb, pid, "the connection to the hub")
		hub = f.startHub()
		for {
			if ev := waitShellEvent(t, f, "alpha", "ended", 60*time.Second); strings.HasPrefix(ev.Reason, "link lost") && ev.ExitCode == nil {
				break
			}
		}
	})
}

// TestShellIdleTimeout: a session with no input and no output for
// --shell-idle-timeout ends, pinkie shell saying so with 255, and the
// remote process is gone.
func TestShellIdleTimeout(t *testing.T) {
	f := newFleet(t, "alpha")
	f.startHub()
	f.startAgent("alpha", t.TempDir(), "", "--shell", "--shell-user", "root", "--shell-idle-timeout", "2s").waitFor("hub connected", 30*time.Second)
	r := runShellCmd(t, f, nil, "-n", "alpha", "--", "sleep 600")
	if r.code != 255 || !strings.Contains(string(r.stderr), "idle for 2s (--shell-idle-timeout)") {
		t.Fatalf("exit %d, want 255 and the idle timeout named:\n%s", r.code, r.stderr)
	}
	if ev := waitShellEvent(t, f, "alpha", "ended", 30*time.Second); ev.ExitCode != nil || !strings.HasPrefix(ev.Reason, "idle") {
		t.Errorf("ended event: exit code %v, reason %q; want no code and the idle reason", ev.ExitCode, ev.Reason)
	}
}

// TestShellRecordReplay: with --shell-record, a session's output is kept
// on the host as asciicast v2; an operator replays it (played, or as the
// file), a reader key may not, and an unknown session is a clear error.
func TestShellRecordReplay(t *testing.T) {
	f := newFleet(t, "alpha")
	f.startHub()
	f.startAgent("alpha", t.TempDir(), "", "--shell", "--shell-user", "root", "--shell-record").waitFor("hub connected", 30*time.Second)
	if r := runShellCmd(t, f, nil, "-n", "alpha", "--", "echo recorded-$((6*7)); echo to-stderr >&2"); r.code != 0 {
		t.Fatalf("recorded session: exit %d: %s", r.code, r.stderr)
	}
	id := waitShellEvent(t, f, "alpha", "ended", 30*time.Second).Session

	r := runShellCmd(t, f, nil, "alpha", "--replay", id, "--cast")
	if r.code != 0 {
		t.Fatalf("--replay --cast: exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(r.stdout)), "\n")
	var header struct {
		Version int    `json:"version"`
		Width   int    `json:"width"`
		Command string `json:"command"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &header); err != nil || header.Version != 2 || header.Width == 0 || !strings.Contains(header.Command, "recorded-") {
		t.Fatalf("not an asciicast v2 header (%v): %s", err, lines[0])
	}
	var text strings.Builder
	for _, l := range lines[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || len(ev) != 3 || ev[1] != "o" {
			t.Fatalf("not an asciicast output event (%v): %s", err, l)
		}
		text.WriteString(ev[2].(string))
	}
	if !strings.Contains(text.String(), "recorded-42\n") || !strings.Contains(text.String(), "to-stderr\n") {
		t.Errorf("the recording's output is %q, want the session's stdout and stderr", text.String())
	}
	if r := runShellCmd(t, f, nil, "alpha", "--replay", id); r.code != 0 || !strings.Contains(string(r.stdout), "recorded-42\n") || strings.Contains(string(r.stdout), `"version"`) {
		t.Errorf("--replay: exit %d, printed %q; want the session's output played", r.code, r.stdout)
	}
	if ev := waitShellEvent(t, f, "alpha", "replayed", 30*time.Second); ev.ReplayOf != id || ev.ExitCode == nil || *ev.ExitCode != 0 || ev.Operator == "" || ev.BytesOut == 0 {
		t.Errorf("the replay's audit event: %+v", ev)
	}
	if r := runShellCmd(t, f, nil, "--nkey", streams.ReaderSeedFile(f.auth), "alpha", "--replay", id); r.code != 255 || bytes.Contains(r.stdout, []byte("recorded-42")) {
		t.Errorf("a reader key replayed a recording: exit %d, %q", r.code, r.stdout)
	}
	unknown := streams.NewShellSession()
	if r := runShellCmd(t, f, nil, "alpha", "--replay", unknown); r.code != 255 || !strings.Contains(string(r.stderr), "alpha holds no recording of session "+unknown) {
		t.Errorf("replay of an unknown session: exit %d: %s", r.code, r.stderr)
	}
}

// TestShellAsUser: a root agent with --shell-user runs sessions as that
// user, groups and pty included, never as root.
func TestShellAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs an agent running as root")
	}
	name := ""
	b, _ := os.ReadFile("/etc/passwd")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) == 7 && f[2] != "0" && (strings.HasSuffix(f[6], "/bash") || strings.HasSuffix(f[6], "/sh")) {
			name = f[0]
			break
		}
	}
	if name == "" {
		t.Skip("no non-root user with a login shell in /etc/passwd")
	}
	f := newFleet(t, "alpha")
	f.startHub()
	f.startAgent("alpha", t.TempDir(), "", "--shell", "--shell-user", name).waitFor("hub connected", 30*time.Second)
	r := runShellCmd(t, f, nil, "-n", "alpha", "--", "id -un; id -u; echo $USER $HOME")
	want, _ := exec.Command("sh", "-c", "id -u "+name+"; getent passwd "+name+" | cut -d: -f6").Output()
	fields := strings.Fields(string(want))
	if r.code != 0 || string(r.stdout) != fmt.Sprintf("%s\n%s\n%s %s\n", name, fields[0], name, fields[1]) {
		t.Fatalf("exit %d, printed %q; want to run as %s (uid %s)\n%s", r.code, r.stdout, name, fields[0], r.stderr)
	}
	r = runShellCmd(t, f, nil, "-n", "-t", "alpha", "--", "stat -c %U $(tty)")
	if r.code != 0 || strings.TrimSpace(string(r.stdout)) != name {
		t.Fatalf("the session's pty belongs to %q, want %s (exit %d: %s)", r.stdout, name, r.code, r.stderr)
	}
	if ev := waitShellEvent(t, f, "alpha", "ended", 30*time.Second); ev.User != name {
		t.Errorf("the audit event says user %q, want %s", ev.User, name)
	}
}
