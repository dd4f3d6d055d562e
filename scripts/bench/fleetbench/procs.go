package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pinkiefleet/pinkie/scripts/bench/benchutil"
)

// hubNode is one `pinkie hub` process (a single hub, or a cluster node).
type hubNode struct {
	name                  string
	data                  string
	nats, leaf, http, clu int
	cmd                   *exec.Cmd
	started               chan struct{} // closed when it logs "hub started"
	exited                chan struct{}
	logf                  *os.File
	cpuAtStart            float64
	bin, auth, routes     string
	extraFlags            []string
}

func newHubNodes(bin, dir, auth string, n int) ([]*hubNode, error) {
	var nodes []*hubNode
	for i := range n {
		hn := &hubNode{name: fmt.Sprintf("hub%d", i+1), data: filepath.Join(dir, fmt.Sprintf("hub%d", i+1)), bin: bin, auth: auth}
		for _, p := range []*int{&hn.nats, &hn.leaf, &hn.http, &hn.clu} {
			var err error
			if *p, err = benchutil.FreePort(); err != nil {
				return nil, err
			}
		}
		nodes = append(nodes, hn)
	}
	if n > 1 {
		var r []string
		for _, hn := range nodes {
			r = append(r, fmt.Sprintf("nats-route://127.0.0.1:%d", hn.clu))
		}
		for _, hn := range nodes {
			hn.routes = strings.Join(r, ",")
		}
	}
	return nodes, nil
}

func (n *hubNode) start() error {
	args := []string{"hub", "--data", n.data, "--auth", n.auth, "--server-name", n.name,
		"--nats", fmt.Sprintf("127.0.0.1:%d", n.nats), "--leaf", fmt.Sprintf("127.0.0.1:%d", n.leaf),
		"--http", fmt.Sprintf("127.0.0.1:%d", n.http), "--log-level", "info"}
	args = append(args, n.extraFlags...)
	if n.routes != "" {
		args = append(args, "--cluster", fmt.Sprintf("127.0.0.1:%d", n.clu), "--routes", n.routes, "--cluster-wait", "3m")
	}
	if n.logf == nil {
		f, err := os.Create(n.data + ".log")
		if err != nil {
			return err
		}
		n.logf = f
	}
	n.cmd = exec.Command(n.bin, args...)
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		return err
	}
	n.started, n.exited = make(chan struct{}), make(chan struct{})
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	go func(started, exited chan struct{}, cmd *exec.Cmd) {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(n.logf, line)
			if strings.Contains(line, "hub started") {
				once.Do(func() { close(started) })
			}
		}
		_ = cmd.Wait()
		close(exited)
	}(n.started, n.exited, n.cmd)
	return nil
}

func (n *hubNode) waitStarted(within time.Duration) error {
	select {
	case <-n.started:
		return nil
	case <-n.exited:
		return fmt.Errorf("%s exited before it started (log %s.log)", n.name, n.data)
	case <-time.After(within):
		return fmt.Errorf("%s did not start within %s (log %s.log)", n.name, within, n.data)
	}
}

// stop sends sig and waits for the process to end (bounded).
func (n *hubNode) stop(sig syscall.Signal) error {
	if n.cmd == nil || n.cmd.Process == nil {
		return nil
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
		return nil
	case <-time.After(60 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
		return fmt.Errorf("%s did not stop within 60s of %s; killed", n.name, sig)
	}
}

func (n *hubNode) healthy() bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.http))
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// cpuSeconds is the process's user+system CPU time so far (/proc/PID/stat).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) in parens.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	const clkTck = 100 // sysconf(_SC_CLK_TCK) on Linux
	return (ut + st) / clkTck, nil
}

// memMiB reads VmRSS and VmHWM (peak RSS) from /proc/PID/status.
func memMiB(pid int) (rss, peak float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		for _, f := range []struct {
			p string
			v *float64
		}{{"VmRSS:", &rss}, {"VmHWM:", &peak}} {
			if v, ok := strings.CutPrefix(line, f.p); ok {
				kb, _ := strconv.Atoi(strings.Fields(v)[0])
				*f.v = float64(kb) / 1024
			}
		}
	}
	return rss, peak, nil
}

// simProc is one simulator process and what it last reported.
type simProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	hosts []string
	mu    sync.Mutex
	stat  simMsg
	ready chan struct{}
	reply chan simMsg // mark and final answers
	errs  chan string
	done  chan struct{}
}

func startSim(self string, hosts []string, hubURLs, keys, data string, reconnect time.Duration, logTo io.Writer) (*simProc, error) {
	cmd := exec.Command(self, "sim", "-hosts", strings.Join(hosts, ","), "-hub", hubURLs, "-keys", keys,
		"-data", data, "-reconnect", reconnect.String())
	cmd.Stderr = logTo
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start simulator: %w", err)
	}
	s := &simProc{cmd: cmd, in: in, hosts: hosts, ready: make(chan struct{}), reply: make(chan simMsg, 4),
		errs: make(chan string, 16), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		dec := json.NewDecoder(out)
		for {
			var m simMsg
			if err := dec.Decode(&m); err != nil {
				_ = cmd.Wait()
				return
			}
			switch m.Type {
			case "ready":
				close(s.ready)
			case "stat":
				s.mu.Lock()
				s.stat = m
				s.mu.Unlock()
			case "mark", "final":
				s.reply <- m
			case "error":
				select {
				case s.errs <- m.Err:
				default:
				}
			}
		}
	}()
	return s, nil
}

func (s *simProc) send(cmd string) error {
	_, err := fmt.Fprintln(s.in, cmd)
	return err
}

func (s *simProc) ask(cmd string, within time.Duration) (simMsg, error) {
	if err := s.send(cmd); err != nil {
		return simMsg{}, err
	}
	select {
	case m := <-s.reply:
		return m, nil
	case <-s.done:
		return simMsg{}, fmt.Errorf("simulator exited before answering %q", cmd)
	case <-time.After(within):
		return simMsg{}, fmt.Errorf("simulator did not answer %q within %s", cmd, within)
	}
}

func (s *simProc) connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stat.Connected
}

// goHeapMiB reads the hub's Go heap in use (live objects and the free
// space of their spans) from its /metrics, to tell the heap from the rest
// of the RSS.
func (n *hubNode) goHeapMiB() (float64, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", n.http))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f / (1 << 20), err
		}
	}
	return 0, fmt.Errorf("%s /metrics: no go_memstats_heap_inuse_bytes", n.name)
}
