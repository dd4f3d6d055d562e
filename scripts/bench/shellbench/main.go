// Command shellbench measures pinkie shell on one machine, through a hub
// with auth (operator key in the clients' account, the agent a leaf with
// its host key, as in production):
//
//   - keystroke round trip: one byte typed into an interactive-style
//     session (a pty in cooked mode, whose line discipline echoes it)
//     until its echo is written out at the client; p50, p99 and max over
//     -keys keystrokes, one after the other;
//   - throughput: -mb MiB of random bytes from the host's `head -c` to the
//     client (stdout, no pty), with the credit window in force.
//
// Run it through scripts/bench/shell.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

type result struct {
	Keys         int     `json:"keys"`
	RoundTripP50 float64 `json:"keystroke_round_trip_p50_ms"`
	RoundTripP99 float64 `json:"keystroke_round_trip_p99_ms"`
	RoundTripMax float64 `json:"keystroke_round_trip_max_ms"`
	MiB          int     `json:"throughput_mib"`
	MiBPerSec    float64 `json:"throughput_mib_per_sec"`
}

func main() {
	keys := flag.Int("keys", 500, "keystrokes to time")
	mib := flag.Int("mb", 100, "MiB for the throughput run (0: skip)")
	asJSON := flag.Bool("json", false, "print JSON")
	flag.Parse()
	if err := run(*keys, *mib, *asJSON); err != nil {
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

func run(keys, mib int, asJSON bool) error {
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
	hub, err := streams.StartHub(ctx, streams.HubOptions{DataDir: dir + "/hub", AuthDir: auth, NATSAddr: freeAddr(), LeafAddr: freeAddr(), HTTPAddr: freeAddr(), Log: log})
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
	var rtt []time.Duration
	for i := 0; i < keys+20; i++ {
		k := byte('a' + i%26)
		t0 := time.Now()
		if _, err := inW.Write([]byte{k}); err != nil {
			return err
		}
		for b := range echo.got {
			if b == k {
				break
			}
		}
		if i >= 20 { // warm-up
			rtt = append(rtt, time.Since(t0))
		}
	}
	_, _ = inW.Write([]byte{4, 4}) // ^D ends cat
	_ = inW.Close()
	if err := <-done; err != nil {
		return fmt.Errorf("keystroke session: %v", err)
	}
	sort.Slice(rtt, func(i, j int) bool { return rtt[i] < rtt[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r.Keys = len(rtt)
	r.RoundTripP50, r.RoundTripP99, r.RoundTripMax = ms(rtt[len(rtt)/2]), ms(rtt[len(rtt)*99/100]), ms(rtt[len(rtt)-1])

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
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	fmt.Printf("keystroke round trip through the hub (%d keys): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", r.Keys, r.RoundTripP50, r.RoundTripP99, r.RoundTripMax)
	if r.MiB > 0 {
		fmt.Printf("throughput, %d MiB from head -c to the client: %.1f MiB/s\n", r.MiB, r.MiBPerSec)
	}
	return nil
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
