// Command shellbench measures pinkie shell on one machine, through a hub
// with auth (operator key in the clients' account, the agent a leaf with
// its host key, as in production):
//
//   - keystroke round trip: one byte typed into an interactive-style
//     session (a pty in cooked mode, whose line discipline echoes it)
//     until its echo is written out at the client; p50, p99 and max over
//     -keys keystrokes, one after the other;
//   - throughput: -mb MiB of random bytes from the host's `head -c` to the
//     client (stdout, no pty), with the credit window in force;
//   - the keystroke round trip through the dashboard's web terminal: the
//     same byte sent on the terminal's WebSocket (signed in as the local
//     admin) until its echo comes back on it, the hub relaying with the
//     same client (-web=false skips it);
//   - the same two, in the same run, through OpenSSH on loopback (an sshd
//     of its own on a free port, key auth; -ssh=false skips it), for a
//     baseline: `ssh -tt host 'cat > /dev/null'` and `ssh host head -c`.
//
// Run it through scripts/bench/shell.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"time"

	"github.com/pinkiefleet/pinkie/scripts/bench/benchutil"
	"github.com/pinkiefleet/pinkie/streams"
)

type result struct {
	Keys         int     `json:"keys"`
	RoundTripP50 float64 `json:"keystroke_round_trip_p50_ms"`
	RoundTripP99 float64 `json:"keystroke_round_trip_p99_ms"`
	RoundTripMax float64 `json:"keystroke_round_trip_max_ms"`
	MiB          int     `json:"throughput_mib"`
	MiBPerSec    float64 `json:"throughput_mib_per_sec"`
	SSH          *result `json:"ssh,omitempty"`
	Web          *result `json:"web_terminal,omitempty"`
}

// keystrokes types keys+20 bytes into w one at a time and times each
// until echo reports it (the first 20 warm up).
func keystrokes(keys int, w io.Writer, echo <-chan byte) (p50, p99, max float64, err error) {
	var rtt []time.Duration
	for i := 0; i < keys+20; i++ {
		k := byte('a' + i%26)
		t0 := time.Now()
		if _, err := w.Write([]byte{k}); err != nil {
			return 0, 0, 0, err
		}
		for b := range echo {
			if b == k {
				break
			}
		}
		if i >= 20 {
			rtt = append(rtt, time.Since(t0))
		}
	}
	sort.Slice(rtt, func(i, j int) bool { return rtt[i] < rtt[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return ms(rtt[len(rtt)/2]), ms(rtt[len(rtt)*99/100]), ms(rtt[len(rtt)-1]), nil
}

func main() {
	keys := flag.Int("keys", 500, "keystrokes to time")
	mib := flag.Int("mb", 100, "MiB for the throughput run (0: skip)")
	asJSON := flag.Bool("json", false, "print JSON")
	withSSH := flag.Bool("ssh", true, "measure OpenSSH on loopback too (needs /usr/sbin/sshd and ssh-keygen)")
	withWeb := flag.Bool("web", true, "measure the dashboard's web terminal too (its WebSocket, as a browser uses it)")
	flag.Parse()
	if err := run(*keys, *mib, *withSSH, *withWeb, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "shellbench:", err)
		os.Exit(1)
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// echoWatch receives the session's output and signals each byte.
type echoWatch struct{ got chan byte }

func (e echoWatch) Write(p []byte) (int, error) {
	for _, b := range p {
		e.got <- b
	}
	return len(p), nil
}

func run(keys, mib int, withSSH, withWeb, asJSON bool) error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, err := os.MkdirTemp("", "shellbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	auth := filepath.Join(dir, "auth")
	if _, err := streams.KeysInit(auth, []string{"bench"}); err != nil {
		return err
	}
	hub, err := streams.StartHub(ctx, streams.HubOptions{IngestCheck: benchutil.IngestCheck, DataDir: dir + "/hub", AuthDir: auth, NATSAddr: freeAddr(), LeafAddr: freeAddr(), HTTPAddr: freeAddr(), Log: log})
	if err != nil {
		return err
	}
	defer hub.Close()
	me, err := user.Current()
	if err != nil {
		return err
	}
	sh := streams.NewShellService(streams.ShellOptions{Enabled: true, User: me.Username, Log: log})
	ag, err := streams.StartAgent(ctx, streams.AgentOptions{Host: "bench", HubURLs: []string{hub.LeafURL()}, NkeyFile: streams.HostSeedFile(auth, "bench"),
		DataDir: dir + "/agent", Log: log, ReconnectInterval: 100 * time.Millisecond, Services: []streams.AgentService{sh}})
	if err != nil {
		return err
	}
	defer ag.Close()
	c, err := streams.Connect(ctx, hub.ClientURL(), streams.OperatorSeedFile(auth), "shellbench")
	if err != nil {
		return err
	}
	defer c.Close()
	var r result

	// Keystrokes: a pty in cooked mode echoes each byte at once.
	in, inW := io.Pipe()
	echo := echoWatch{got: make(chan byte, 1024)}
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Shell(ctx, streams.ShellRequest{Host: "bench", Command: "cat > /dev/null", TTY: true, Term: "xterm", Rows: 24, Cols: 80,
			Stdin: in, Stdout: echo, Stderr: io.Discard, OpenTimeout: 30 * time.Second, Started: func() { close(started) }})
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		return fmt.Errorf("open the keystroke session: %v", err)
	}
	if r.RoundTripP50, r.RoundTripP99, r.RoundTripMax, err = keystrokes(keys, inW, echo.got); err != nil {
		return err
	}
	r.Keys = keys
	_, _ = inW.Write([]byte{4, 4}) // ^D ends cat
	_ = inW.Close()
	if err := <-done; err != nil {
		return fmt.Errorf("keystroke session: %v", err)
	}
	if mib > 0 {
		var out countWriter
		t0 := time.Now()
		code, err := c.Shell(ctx, streams.ShellRequest{Host: "bench", Command: fmt.Sprintf("head -c %d /dev/urandom", mib<<20), Stdout: &out, Stderr: io.Discard, OpenTimeout: 30 * time.Second})
		if err != nil || code != 0 {
			return fmt.Errorf("throughput session: exit %d, %v", code, err)
		}
		if out.n != int64(mib)<<20 {
			return fmt.Errorf("throughput session: %d bytes, want %d", out.n, mib<<20)
		}
		r.MiB, r.MiBPerSec = mib, float64(mib)/time.Since(t0).Seconds()
	}
	if withWeb {
		if r.Web, err = measureWeb(ctx, hub, keys, log); err != nil {
			return fmt.Errorf("web terminal: %w", err)
		}
	}
	if withSSH {
		if r.SSH, err = measureSSH(dir, keys, mib); err != nil {
			return fmt.Errorf("ssh baseline: %w", err)
		}
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	fmt.Printf("keystroke round trip through the hub (%d keys): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", r.Keys, r.RoundTripP50, r.RoundTripP99, r.RoundTripMax)
	if r.MiB > 0 {
		fmt.Printf("throughput, %d MiB from head -c to the client: %.1f MiB/s\n", r.MiB, r.MiBPerSec)
	}
	if w := r.Web; w != nil {
		fmt.Printf("keystroke round trip through the dashboard's web terminal (WebSocket to the hub, %d keys): p50 %.2f ms, p99 %.2f ms, max %.2f ms (web/CLI p50 %.2fx)\n",
			w.Keys, w.RoundTripP50, w.RoundTripP99, w.RoundTripMax, w.RoundTripP50/r.RoundTripP50)
	}
	if s := r.SSH; s != nil {
		fmt.Printf("ssh on loopback, same run: keystroke round trip p50 %.2f ms, p99 %.2f ms, max %.2f ms; throughput %.1f MiB/s\n", s.RoundTripP50, s.RoundTripP99, s.RoundTripMax, s.MiBPerSec)
		fmt.Printf("pinkie/ssh: round trip p50 %.2fx, p99 %.2fx; throughput %.2fx\n", r.RoundTripP50/s.RoundTripP50, r.RoundTripP99/s.RoundTripP99, r.MiBPerSec/s.MiBPerSec)
	}
	return nil
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// measureSSH runs an sshd of its own on loopback and measures the same
// through it.
func measureSSH(dir string, keys, mib int) (*result, error) {
	d := filepath.Join(dir, "ssh")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(d, k)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(d, "client.pub"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(d, "authorized_keys"), pub, 0o600); err != nil {
		return nil, err
	}
	addr := freeAddr()
	host, port, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf("ListenAddress %s\nPort %s\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n",
		host, port, filepath.Join(d, "host"), filepath.Join(d, "authorized_keys"), filepath.Join(d, "sshd.pid"))
	if err := os.WriteFile(filepath.Join(d, "sshd_config"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	_ = os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	sshd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(d, "sshd_config"))
	var sshdLog bytes.Buffer
	sshd.Stderr = &sshdLog
	if err := sshd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	defer func() { _ = sshd.Process.Kill(); _ = sshd.Wait() }()
	me, _ := user.Current()
	ssh := func(args ...string) *exec.Cmd {
		return exec.Command("ssh", append([]string{"-F", "/dev/null", "-p", port, "-i", filepath.Join(d, "client"), "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", me.Username + "@" + host}, args...)...)
	}
	// sshd listens a moment after it starts.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ssh("true").Run(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sshd did not answer: %s", sshdLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var r result
	cmd := ssh("-tt", "cat > /dev/null")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	echo := echoWatch{got: make(chan byte, 1024)}
	cmd.Stdout = echo
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if r.RoundTripP50, r.RoundTripP99, r.RoundTripMax, err = keystrokes(keys, in, echo.got); err != nil {
		return nil, err
	}
	r.Keys = keys
	_, _ = in.Write([]byte{4, 4})
	_ = in.Close()
	go func() {
		for range echo.got {
		}
	}()
	_ = cmd.Wait()
	if mib > 0 {
		var out countWriter
		cmd := ssh(fmt.Sprintf("head -c %d /dev/urandom", mib<<20))
		cmd.Stdout = &out
		t0 := time.Now()
		if err := cmd.Run(); err != nil || out.n != int64(mib)<<20 {
			return nil, fmt.Errorf("ssh head -c: %v, %d bytes", err, out.n)
		}
		r.MiB, r.MiBPerSec = mib, float64(mib)/time.Since(t0).Seconds()
	}
	return &r, nil
}
