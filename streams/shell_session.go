package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/shell"
)

// A session on the agent: its process, the pumps that move its bytes
// within the operator's credit, liveness and the idle timeout, replays,
// and its audit events.

// shellSession is one session on the agent.
type shellSession struct {
	s    *ShellService
	a    *Agent
	req  shell.Open
	who  operator
	user shell.User
	// guest is how a --guest session enters its guest (zero: the host).
	guest guestTarget
	proc  *shell.Process
	rec   *recorder

	outWin    *shell.Window
	inGrant   *shell.Granter
	inQ       byteQueue
	inOff     int64
	heard     atomic.Int64 // unix nanos of the operator's last message
	active    atomic.Int64 // unix nanos of the last input or output
	bytesIn   atomic.Int64
	bytesOut  atomic.Int64
	endOnce   sync.Once
	endReason chan string
}

// inWindow is the stdin credit the agent grants: input is keystrokes or a
// pipe, and a process that stops reading holds at most this much here.
const inWindow = 256 << 10

func (ss *shellSession) subject(ch string) string {
	return events.ShellSubject(ss.a.Host(), ss.req.Session, ch)
}

func (ss *shellSession) end(reason string) {
	ss.endOnce.Do(func() { ss.endReason <- reason })
}

func (ss *shellSession) run(ctx context.Context) {
	log := ss.s.o.Log.With("host", ss.a.Host(), "session", ss.req.Session, "operator", ss.who.key, "user", ss.user.Name)
	nc := ss.a.nc
	ss.endReason = make(chan string, 1)
	ss.outWin = shell.NewWindow(ss.req.Window)
	ss.inGrant = shell.NewGranter(inWindow)
	ss.inQ.init(inWindow)
	now := time.Now()
	ss.heard.Store(now.UnixNano())
	ss.active.Store(now.UnixNano())
	// Listen before starting: the operator sends input as soon as it is told.
	inSub, err := nc.Subscribe(ss.subject(events.ShellIn), ss.onInput)
	if err != nil {
		publishControl(nc, ss.subject(events.ShellStatus), shell.Control{Type: shell.Refused, Error: "subscribe: " + err.Error()})
		return
	}
	defer inSub.Unsubscribe()
	ctlSub, err := nc.Subscribe(ss.subject(events.ShellCtl), ss.onControl)
	if err != nil {
		publishControl(nc, ss.subject(events.ShellStatus), shell.Control{Type: shell.Refused, Error: "subscribe: " + err.Error()})
		return
	}
	defer ctlSub.Unsubscribe()
	_ = inSub.SetPendingLimits(-1, 2*inWindow)
	if ss.req.Replay != "" {
		ss.runReplay(ctx, log)
		return
	}
	spec := shell.Spec{
		User: ss.user, Command: ss.req.Command, TTY: ss.req.TTY, Term: ss.req.Term,
		Rows: ss.req.Rows, Cols: ss.req.Cols, SwitchUser: os.Geteuid() == 0, Path: sessionPath(),
	}
	var proc *shell.Process
	switch {
	case ss.guest.console != "":
		proc, err = shell.DialConsole(ss.guest.console, guestTimeout)
	case ss.guest.kind == "container":
		spec.Wrap, spec.SwitchUser = ss.guest.wrap, false
		proc, err = shell.Start(spec)
	default:
		proc, err = shell.Start(spec)
	}
	if err != nil {
		log.Warn("shell session failed to start", "err", err)
		publishControl(nc, ss.subject(events.ShellStatus), shell.Control{Type: shell.Refused, Error: fmt.Sprintf("%s: %v", ss.a.Host(), err)})
		return
	}
	ss.proc = proc
	defer proc.Close()
	started := time.Now()
	if ss.s.o.Record {
		ss.rec = newRecorder(ss.a.js, ss.req.Session, ss.req, ss.user.Shell, started)
		defer func() {
			wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := ss.rec.wait(wctx); err != nil {
				log.Error("shell: recording not stored", "err", err)
			}
		}()
	}
	log.Info("shell session started", "command", ss.req.Command, "tty", spec.TTY, "from", ss.who.ip, "guest", ss.req.Guest)
	ss.audit(log, "started", started, nil, "")
	publishControl(nc, ss.subject(events.ShellStatus), shell.Control{Type: shell.Started, N: inWindow})

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var outOff, errOff atomic.Int64
	var readers sync.WaitGroup
	readers.Add(1)
	go ss.pump(sctx, &readers, proc.Stdout, events.ShellOut, &outOff)
	if proc.Stderr != nil {
		readers.Add(1)
		go ss.pump(sctx, &readers, proc.Stderr, events.ShellErr, &errOff)
	}
	go ss.writeInput(sctx)
	done := make(chan struct{})
	go func() {
		readers.Wait()
		<-proc.Done()
		close(done)
	}()
	tick := time.NewTicker(shell.PingEvery)
	defer tick.Stop()
	reason := ""
	cut := func(r string) {
		if reason != "" {
			return
		}
		reason = r
		log.Info("shell session cut", "reason", r)
		ss.outWin.Close()
		ss.inQ.close()
		go func() {
			proc.Kill(2 * time.Second)
			proc.Close() // a reader blocked on a pipe an escaped child holds
		}()
	}
loop:
	for {
		select {
		case <-done:
			break loop
		case r := <-ss.endReason:
			cut(r)
		case <-ctx.Done():
			cut("agent stopped")
		case <-tick.C:
			publishControl(nc, ss.subject(events.ShellStatus), shell.Control{Type: shell.Ping})
			n := time.Now()
			if n.Sub(time.Unix(0, ss.heard.Load())) > shell.DeadAfter {
				cut(fmt.Sprintf("link lost: no word from the operator for %s", shell.DeadAfter))
			}
			if idle := n.Sub(time.Unix(0, ss.active.Load())); idle > ss.s.o.IdleTimeout {
				cut(fmt.Sprintf("idle for %s (--shell-idle-timeout)", ss.s.o.IdleTimeout))
			}
		}
	}
	code, _ := proc.ExitCode()
	ex := shell.Control{Type: shell.Exit, Out: outOff.Load(), Err: errOff.Load()}
	var codep *int
	if reason == "" {
		codep = &code
		ex.Code = codep
	} else {
		ex.Error = reason
	}
	publishControl(nc, ss.subject(events.ShellStatus), ex)
	_ = nc.Flush()
	log.Info("shell session ended", "exit_code", code, "reason", reason, "bytes_in", ss.bytesIn.Load(), "bytes_out", ss.bytesOut.Load(), "after", time.Since(started).Round(time.Millisecond))
	ss.audit(log, "ended", started, codep, reason)
}

// runReplay answers a replay request: the recording as the output, then
// exit 0, or the reason there is none.
func (ss *shellSession) runReplay(ctx context.Context, log *slog.Logger) {
	nc := ss.a.nc
	if !shell.SessionRE.MatchString(ss.req.Replay) {
		publishControl(nc, ss.subject(events.ShellStatus), shell.Control{Type: shell.Refused, Error: fmt.Sprintf("replay %q: not a session id", ss.req.Replay)})
		return
	}
	publishControl(nc, ss.subject(events.ShellStatus), shell.Control{Type: shell.Started, N: inWindow})
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		tick := time.NewTicker(shell.PingEvery)
		defer tick.Stop()
		for {
			select {
			case r := <-ss.endReason:
				log.Info("shell replay cut", "reason", r)
				ss.outWin.Close()
				return
			case <-tick.C:
				publishControl(nc, ss.subject(events.ShellStatus), shell.Control{Type: shell.Ping})
				if time.Since(time.Unix(0, ss.heard.Load())) > shell.DeadAfter {
					ss.end("link lost")
				}
			case <-sctx.Done():
				return
			}
		}
	}()
	started := time.Now()
	n, err := ss.replay(sctx, ss.req.Replay)
	ss.bytesOut.Store(n)
	ex := shell.Control{Type: shell.Exit, Out: n}
	if err != nil {
		ex.Error = err.Error()
	} else {
		zero := 0
		ex.Code = &zero
	}
	defer ss.audit(log, "replayed", started, ex.Code, ex.Error)
	publishControl(nc, ss.subject(events.ShellStatus), ex)
	log.Info("shell session replayed", "replay", ss.req.Replay, "bytes", n, "err", err)
}

// sessionPath is the PATH sessions start with: the system's profile on
// NixOS, then the agent's own.
func sessionPath() string {
	p := "/run/wrappers/bin:/run/current-system/sw/bin"
	if own := os.Getenv("PATH"); own != "" {
		return p + ":" + own
	}
	return p + ":/usr/local/bin:/usr/bin:/bin"
}

// pump sends what r gives on channel ch, never more than the operator's
// credit. It reads before it takes credit: a reader waiting for output
// (stderr, mostly) must not hold credit the other one needs.
func (ss *shellSession) pump(ctx context.Context, wg *sync.WaitGroup, r io.Reader, ch string, off *atomic.Int64) {
	defer wg.Done()
	buf := make([]byte, shell.Chunk)
	subject := ss.subject(ch)
	for {
		got, rerr := r.Read(buf)
		for sent := 0; sent < got; {
			n, err := ss.outWin.Take(ctx, int64(got-sent))
			if err != nil {
				return
			}
			m := nats.NewMsg(subject)
			m.Header.Set(shell.HeaderOffset, strconv.FormatInt(off.Load(), 10))
			m.Data = append([]byte(nil), buf[sent:sent+int(n)]...)
			if err := ss.a.nc.PublishMsg(m); err != nil {
				ss.end("publish output: " + err.Error())
				return
			}
			if ss.rec != nil {
				ss.rec.output(m.Data)
			}
			sent += int(n)
			off.Add(n)
			ss.bytesOut.Add(n)
			ss.active.Store(time.Now().UnixNano())
		}
		if rerr != nil {
			return
		}
	}
}

func (ss *shellSession) onInput(m *nats.Msg) {
	ss.heard.Store(time.Now().UnixNano())
	off, err := strconv.ParseInt(m.Header.Get(shell.HeaderOffset), 10, 64)
	if err != nil || off != ss.inOff {
		ss.end(fmt.Sprintf("input out of order: offset %q, expected %d", m.Header.Get(shell.HeaderOffset), ss.inOff))
		return
	}
	ss.inOff += int64(len(m.Data))
	if !ss.inQ.push(m.Data) {
		ss.end("the operator sent more input than its window")
		return
	}
	ss.bytesIn.Add(int64(len(m.Data)))
	ss.active.Store(time.Now().UnixNano())
}

func (ss *shellSession) onControl(m *nats.Msg) {
	ss.heard.Store(time.Now().UnixNano())
	var c shell.Control
	if json.Unmarshal(m.Data, &c) != nil {
		return
	}
	switch c.Type {
	case shell.Grant:
		ss.outWin.Give(c.N)
	case shell.EOF:
		ss.inQ.endAt(c.N)
	case shell.Resize:
		if ss.proc != nil {
			_ = ss.proc.Resize(c.Rows, c.Cols)
		}
		if ss.rec != nil {
			ss.rec.event("r", fmt.Sprintf("%dx%d", c.Cols, c.Rows))
		}
	case shell.Close:
		ss.end("closed by the operator")
	}
}

// writeInput writes the queued input to the process and grants the
// operator credit for what it wrote; a nil chunk is the end of input.
func (ss *shellSession) writeInput(ctx context.Context) {
	for {
		b, ok := ss.inQ.pop(ctx)
		if !ok {
			return
		}
		if b == nil {
			if ss.proc.Stderr != nil { // on a pty, end of input is the terminal's business
				ss.proc.Stdin.Close()
			}
			return
		}
		if _, err := ss.proc.Stdin.Write(b); err != nil {
			return // the process closed its input; its exit ends the session
		}
		if n := ss.inGrant.Consumed(int64(len(b))); n > 0 {
			publishControl(ss.a.nc, ss.subject(events.ShellStatus), shell.Control{Type: shell.Grant, N: n})
		}
	}
}

// audit publishes the session's audit event through the OUTBOX: the hub
// checks it on ingest and stores it in HOSTS as
// pinkie.host.<host>.shell.session, even when the link is down now.
func (ss *shellSession) audit(log *slog.Logger, phase string, started time.Time, code *int, reason string) {
	k, _ := events.Lookup("shell.session")
	now := time.Now()
	d := events.ShellSession{
		Session: ss.req.Session, Phase: phase, Operator: ss.who.key, ClientName: ss.who.name, RemoteIP: ss.who.ip,
		User: ss.user.Name, Command: ss.req.Command, TTY: ss.req.TTY, StartedAt: started.UTC(), Guest: ss.req.Guest,
	}
	if ss.guest.console != "" {
		d.User = "" // whoever is logged in on the console
	}
	if phase == "replayed" {
		d.ReplayOf, d.TTY = ss.req.Replay, false
	}
	if phase != "started" {
		t := now.UTC()
		d.EndedAt, d.ExitCode, d.Reason = &t, code, reason
		d.BytesIn, d.BytesOut = ss.bytesIn.Load(), ss.bytesOut.Load()
		if code != nil && (*code < 0 || *code > 255) {
			d.ExitCode = nil
		}
	}
	if len(d.Command) > 4096 {
		d.Command = d.Command[:4096]
	}
	if len(d.Reason) > 256 {
		d.Reason = d.Reason[:256]
	}
	e, err := events.New(k, ss.a.Host(), "shell", now, d, events.WithSubject(ss.req.Session))
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = ss.a.Publish(ctx, e, "")
	}
	if err != nil {
		log.Error("shell: audit event not stored", "phase", phase, "err", err)
	}
}

// byteQueue is the input waiting for the process, bounded by the window
// the agent granted. Its end is an offset: the end of input travels on
// ctl, which may overtake the last bytes on in.
type byteQueue struct {
	mu     sync.Mutex
	q      [][]byte
	n, max int
	pushed int64
	end    int64 // -1 until the operator's input ends
	wake   chan struct{}
	closed bool
}

func (q *byteQueue) endAt(n int64) {
	q.mu.Lock()
	q.end = n
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *byteQueue) init(max int) { q.max, q.end, q.wake = max, -1, make(chan struct{}, 1) }

func (q *byteQueue) push(b []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n+len(b) > q.max {
		return false
	}
	q.q = append(q.q, b)
	q.n += len(b)
	q.pushed += int64(len(b))
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

func (q *byteQueue) pop(ctx context.Context) ([]byte, bool) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, false
		}
		if len(q.q) > 0 {
			b := q.q[0]
			q.q = q.q[1:]
			q.n -= len(b)
			q.mu.Unlock()
			return b, true
		}
		if q.end >= 0 && q.pushed >= q.end {
			q.mu.Unlock()
			return nil, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-q.wake:
		}
	}
}

func (q *byteQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
