// Package tests holds pinkie's end-to-end tests: real pinkie processes (hub
// and agents), real NATS connections on 127.0.0.1 with random ports, auth on.
package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

var pinkieBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pinkie-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pinkieBin = filepath.Join(dir, "pinkie")
	out, err := exec.Command("go", "build", "-o", pinkieBin, "../cmd/pinkie").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build pinkie: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output for the test to search.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running pinkie process.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startCommand(t, name, exec.Command(pinkieBin, args...))
}

// startCommand starts cmd (pinkie under a wrapper such as unshare) as a
// test process.
func startCommand(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, name: name, out: &syncBuffer{}, done: make(chan struct{}), cmd: cmd}
	var w io.Writer = p.out
	if os.Getenv("PINKIE_TEST_LOG") != "" {
		w = io.MultiWriter(p.out, prefixWriter{name, os.Stderr})
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

type prefixWriter struct {
	name string
	w    io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprintf(p.w, "[%s] %s", p.name, line)
		}
	}
	return len(b), nil
}

// waitFor waits until the process's output contains s.
func (p *proc) waitFor(s string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if strings.Contains(p.out.String(), s) {
			return
		}
		select {
		case <-p.done:
			if strings.Contains(p.out.String(), s) {
				return
			}
			p.t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, s, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("%s did not print %q within %s:\n%s", p.name, s, within, p.out.String())
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// count returns how often the output contains s.
func (p *proc) count(s string) int { return strings.Count(p.out.String(), s) }

// stop sends sig and waits for the process to exit.
func (p *proc) stop(sig syscall.Signal) {
	p.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not exit after %v:\n%s", p.name, sig, p.out.String())
	}
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// freePort is a port free on 127.0.0.1 now, below Linux's ephemeral range
// (32768 and up): a port the kernel picked for :0 can be taken again by
// any outgoing connection before the process it is meant for listens on
// it. Each test binary starts at its own place in [20000, 32000).
func freePort(t *testing.T) int {
	t.Helper()
	portOnce.Do(func() { portNext.Store(int32(os.Getpid() * 131 % portSpan)) })
	for range portSpan {
		p := portBase + int(portNext.Add(1)%portSpan)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatalf("no free port in [%d, %d)", portBase, portBase+portSpan)
	return 0
}

const portBase, portSpan = 20000, 12000

var (
	portOnce sync.Once
	portNext atomic.Int32
)

// fleet is a test fleet: an auth dir and the hub's fixed ports, so the hub
// can be restarted on the same addresses and data.
type fleet struct {
	t                           *testing.T
	auth, hubData               string
	natsPort, leafPort, httpPor int
}

func newFleet(t *testing.T, hosts ...string) *fleet {
	t.Helper()
	f := &fleet{t: t, auth: t.TempDir(), hubData: t.TempDir(), natsPort: freePort(t), leafPort: freePort(t), httpPor: freePort(t)}
	out, err := exec.Command(pinkieBin, "keys", "init", f.auth, "--hosts", strings.Join(hosts, ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("keys init: %v\n%s", err, out)
	}
	return f
}

func (f *fleet) natsURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", f.natsPort) }
func (f *fleet) leafURL() string { return fmt.Sprintf("nats-leaf://127.0.0.1:%d", f.leafPort) }
func (f *fleet) operator() string {
	return streams.OperatorSeedFile(f.auth)
}

func (f *fleet) startHub(extra ...string) *proc {
	f.t.Helper()
	args := append([]string{"hub", "--data", f.hubData, "--auth", f.auth,
		"--nats", fmt.Sprintf("127.0.0.1:%d", f.natsPort),
		"--leaf", fmt.Sprintf("127.0.0.1:%d", f.leafPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", f.httpPor)}, extra...)
	p := startProc(f.t, "hub", args...)
	p.waitFor("hub started", 30*time.Second)
	return p
}

// emptyHomes mounts an empty tmpfs over /root and /home (in a mount
// namespace of its own): a test's shell session runs a login shell, and
// it must not run this machine's dotfiles. CI's /root/.bashrc runs
// `pyenv init`, whose rehash lock, left behind by one session killed
// during it, hung every later login shell for 60 s.
const emptyHomes = `mount -t tmpfs -o mode=0755 pinkie-test-home /root && mount -t tmpfs -o mode=0755 pinkie-test-home /home`

// startAgent starts host's agent (one serving shells as root with empty
// homes, see emptyHomes); hubURL overrides the hub's leaf URL
// (a proxy in link-cut tests).
func (f *fleet) startAgent(host, dataDir, hubURL string, extra ...string) *proc {
	f.t.Helper()
	if hubURL == "" {
		hubURL = f.leafURL()
	}
	args := append([]string{"agent", "--name", host, "--hub", hubURL, "--data", dataDir,
		"--nkey", streams.HostSeedFile(f.auth, host), "--reconnect", "200ms"}, extra...)
	var p *proc
	if slices.Contains(extra, "--shell") && os.Geteuid() == 0 {
		p = startCommand(f.t, "agent-"+host, exec.Command("unshare", append([]string{"--mount", "--propagation", "private",
			"sh", "-c", emptyHomes + ` && exec "$0" "$@"`, pinkieBin}, args...)...))
	} else {
		p = startProc(f.t, "agent-"+host, args...)
	}
	p.waitFor("agent started", 30*time.Second)
	return p
}

func (f *fleet) client() *streams.Client {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := streams.Connect(ctx, f.natsURL(), f.operator(), "e2e test")
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(c.Close)
	return c
}

// storedEvent is one message read back from a hub stream.
type storedEvent struct {
	subject string
	seq     uint64
	event   events.Event
	kind    events.Kind
}

// readStream reads every message of stream matching filter, in order.
func readStream(t *testing.T, js jetstream.JetStream, stream, filter string) []storedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var out []storedEvent
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, _ := m.Metadata()
			e, k, err := events.Decode(m.Data())
			if err != nil {
				t.Fatalf("%s seq %d: %v", stream, md.Sequence.Stream, err)
			}
			out = append(out, storedEvent{subject: m.Subject(), seq: md.Sequence.Stream, event: e, kind: k})
			if md.NumPending == 0 {
				return out
			}
		}
		if n == 0 {
			// No more messages for this filter right now.
			return out
		}
	}
}

// countSubjects returns how many messages stream holds on filter.
func countSubjects(t *testing.T, js jetstream.JetStream, stream, filter string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// waitCount waits until stream holds at least want messages on filter and
// returns the count.
func waitCount(t *testing.T, js jetstream.JetStream, stream, filter string, want uint64, within time.Duration) uint64 {
	t.Helper()
	deadline := time.Now().Add(within)
	var n uint64
	for time.Now().Before(deadline) {
		if n = countSubjects(t, js, stream, filter); n >= want {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s holds %d messages on %s after %s, want %d\n%s", stream, n, filter, within, want, diagnose(js))
	return n
}

// diagnose describes the hub's ingest path, for failure messages.
func diagnose(js jetstream.JetStream) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var b strings.Builder
	if st, err := js.Stream(ctx, streams.IngestStream); err == nil {
		info := st.CachedInfo()
		fmt.Fprintf(&b, "INGEST: msgs=%d first=%d last=%d\n", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
		for _, src := range info.Sources {
			errText := ""
			if src.Error != nil {
				errText = src.Error.Description
			}
			fmt.Fprintf(&b, "  source %s lag=%d active=%s err=%q\n", src.External.APIPrefix, src.Lag, src.Active, errText)
		}
		if c, err := js.Consumer(ctx, streams.IngestStream, streams.IngestConsumer); err == nil {
			ci := c.CachedInfo()
			fmt.Fprintf(&b, "  ingest consumer: delivered=%d ackfloor=%d pending=%d ackpending=%d redelivered=%d waiting=%d\n",
				ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting)
		} else {
			fmt.Fprintf(&b, "  ingest consumer: %v\n", err)
		}
	} else {
		fmt.Fprintf(&b, "INGEST: %v\n", err)
	}
	// Where acknowledged events went when HOSTS lacks them.
	for _, name := range []string{streams.HostsStream, streams.DeadLetterStream} {
		if st, err := js.Stream(ctx, name); err == nil {
			info := st.CachedInfo()
			fmt.Fprintf(&b, "%s: msgs=%d first=%d last=%d\n", name, info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
		} else {
			fmt.Fprintf(&b, "%s: %v\n", name, err)
		}
	}
	b.WriteString(compareIngestHosts(js))
	return b.String()
}

// compareIngestHosts reads INGEST and HOSTS whole and says which events
// INGEST holds that HOSTS lacks (with their INGEST seq and stream source),
// and which OUTBOX sequences INGEST lacks (streams.IngestGapReport):
// where a shortfall was lost.
func compareIngestHosts(js jetstream.JetStream) string {
	type seen struct {
		seq    uint64
		source string
	}
	read := func(stream string) (map[string]seen, int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return nil, 0, err
		}
		info, err := js.Stream(ctx, stream)
		if err != nil {
			return nil, 0, err
		}
		last := info.CachedInfo().State.LastSeq
		ids := map[string]seen{}
		n := 0
		for n < 100000 && ctx.Err() == nil {
			batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				return ids, n, err
			}
			var seq uint64
			for m := range batch.Messages() {
				md, _ := m.Metadata()
				seq = md.Sequence.Stream
				n++
				e, _, err := events.Decode(m.Data())
				if err != nil {
					continue
				}
				ids[e.ID()] = seen{seq: seq, source: m.Headers().Get(events.HeaderStreamSource)}
			}
			if seq >= last || seq == 0 {
				break
			}
		}
		return ids, n, nil
	}
	var b strings.Builder
	in, nIn, err := read(streams.IngestStream)
	if err != nil {
		fmt.Fprintf(&b, "read INGEST: %v\n", err)
	}
	hosts, nHosts, err := read(streams.HostsStream)
	if err != nil {
		fmt.Fprintf(&b, "read HOSTS: %v\n", err)
	}
	fmt.Fprintf(&b, "INGEST read %d messages, %d distinct ids; HOSTS read %d, %d distinct ids\n", nIn, len(in), nHosts, len(hosts))
	var lost []string
	for id, s := range in {
		if _, ok := hosts[id]; !ok {
			lost = append(lost, fmt.Sprintf("INGEST seq %d (%s)", s.seq, s.source))
		}
	}
	sort.Strings(lost)
	if len(lost) > 30 {
		lost = append(lost[:30], "…")
	}
	fmt.Fprintf(&b, "in INGEST, not in HOSTS: %d: %s\n", len(lost), strings.Join(lost, "; "))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.WriteString(streams.IngestGapReport(ctx, js))
	return b.String()
}

func (f *fleet) httpURL() string { return fmt.Sprintf("http://127.0.0.1:%d", f.httpPor) }

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func errors_As(err error, target any) bool { return errors.As(err, target) }

// putInStore writes a KV record into the stopped hub's store, through an
// embedded nats-server of its own on the hub's data directory: what no
// client key of a running hub may do.
func (f *fleet) putInStore(t *testing.T, bucket, key, value string) {
	t.Helper()
	withHubStore(t, f, func(ctx context.Context, js jetstream.JetStream) {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("open %s in the hub's store: %v", bucket, err)
		}
		if _, err := kv.Put(ctx, key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	})
}

// withHubStore runs fn on the stopped hub's JetStream store, through an
// embedded nats-server of its own on the hub's data directory: what no
// client key of a running hub may do (an attacker with the hub's disk).
func withHubStore(t *testing.T, f *fleet, fn func(ctx context.Context, js jetstream.JetStream)) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, JetStreamDomain: events.HubDomain,
		StoreDir: filepath.Join(f.hubData, "jetstream"), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("store server did not start")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fn(ctx, js)
}
