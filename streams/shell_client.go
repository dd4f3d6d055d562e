package streams

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/shell"
)

// ShellRequest is a session an operator opens on a host.
type ShellRequest struct {
	Host string
	// Command runs with the remote user's shell -c; empty: a login shell
	// on a pty.
	Command string
	// TTY asks for a pty for Command too.
	TTY        bool
	Term       string
	Rows, Cols uint16
	// Stdin is sent to the process (nil: none, end of input at once).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Resize carries the local terminal's new size (rows, cols).
	Resize <-chan [2]uint16
	// OpenTimeout bounds the wait for the agent's answer (default 5s).
	OpenTimeout time.Duration
	// Started is called once the session runs (optional).
	Started func()
	// Replay asks for the recording of an earlier session (asciicast v2
	// on Stdout) instead of running anything.
	Replay string
	// Guest opens the session in this NixOS container or MicroVM of Host.
	Guest string
}

// ErrShellNoAgent: no agent answered an open request in time.
var ErrShellNoAgent = errors.New("no agent answered")

// ErrShellLinkLost: the session's link broke before it ended.
var ErrShellLinkLost = errors.New("lost the link to the host")

// ShellRefusedError is an agent's refusal to open a session.
type ShellRefusedError struct{ Host, Reason string }

func (e *ShellRefusedError) Error() string {
	return fmt.Sprintf("%s refused the session: %s", e.Host, e.Reason)
}

// ShellEndedError is a session the agent cut (idle timeout, link lost on
// its side, agent stopped, closed) rather than ended by the command's exit.
type ShellEndedError struct{ Host, Reason string }

func (e *ShellEndedError) Error() string {
	return fmt.Sprintf("the session on %s ended without an exit code: %s", e.Host, e.Reason)
}

// NewShellSession is a new random session id.
func NewShellSession() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// shellClient is one session at the operator's end.
type shellClient struct {
	c     *Client
	req   ShellRequest
	sid   string
	heard atomic.Int64
	fail  chan error
	once  sync.Once

	status chan shell.Control
	mu     sync.Mutex
	got    [2]int64 // bytes received on out, err
	gotCh  chan struct{}
}

func (sc *shellClient) subject(ch string) string { return events.ShellSubject(sc.req.Host, sc.sid, ch) }

func (sc *shellClient) failWith(err error) {
	sc.once.Do(func() { sc.fail <- err })
}

// Shell runs a session on req.Host through the hub and returns the remote
// command's exit code. Errors are pinkie's own: the hub refused the key
// (ErrNotPermitted), no agent answered (ErrShellNoAgent), the agent
// refused (*ShellRefusedError), the link broke (ErrShellLinkLost), or the
// agent cut the session (*ShellEndedError).
func (c *Client) Shell(ctx context.Context, req ShellRequest) (int, error) {
	if err := events.ValidHost(req.Host); err != nil {
		return -1, err
	}
	if req.OpenTimeout <= 0 {
		req.OpenTimeout = 5 * time.Second
	}
	sc := &shellClient{c: c, req: req, sid: NewShellSession(), fail: make(chan error, 1), status: make(chan shell.Control, 64), gotCh: make(chan struct{}, 1)}
	sc.heard.Store(time.Now().UnixNano())
	nc := c.Conn
	nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		sc.failWith(fmt.Errorf("%w: the connection to the hub dropped: %v", ErrShellLinkLost, err))
	})
	nc.SetClosedHandler(func(*nats.Conn) {
		sc.failWith(fmt.Errorf("%w: the connection to the hub closed", ErrShellLinkLost))
	})
	outGrant := shell.NewGranter(shell.DefaultWindow)
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	for i, ch := range []string{events.ShellOut, events.ShellErr} {
		w := req.Stdout
		if i == 1 {
			w = req.Stderr
		}
		sub, err := nc.Subscribe(sc.subject(ch), sc.onData(i, ch, w, outGrant))
		if err != nil {
			return -1, fmt.Errorf("subscribe %s: %w", sc.subject(ch), err)
		}
		_ = sub.SetPendingLimits(-1, 2*shell.MaxWindow)
		subs = append(subs, sub)
	}
	sub, err := nc.Subscribe(sc.subject(events.ShellStatus), func(m *nats.Msg) {
		sc.heard.Store(time.Now().UnixNano())
		var ctl shell.Control
		if json.Unmarshal(m.Data, &ctl) != nil {
			return
		}
		select {
		case sc.status <- ctl:
		default: // only pings and grants come fast; a full queue drops a ping
			if ctl.Type != shell.Ping {
				sc.status <- ctl
			}
		}
	})
	if err != nil {
		return -1, fmt.Errorf("subscribe %s: %w", sc.subject(events.ShellStatus), err)
	}
	subs = append(subs, sub)
	open, _ := json.Marshal(shell.Open{Session: sc.sid, Command: req.Command, TTY: req.TTY, Term: req.Term, Rows: req.Rows, Cols: req.Cols, Window: shell.DefaultWindow, Replay: req.Replay, Guest: req.Guest})
	inCredit, err := sc.waitStarted(ctx, open)
	if err != nil {
		return -1, err
	}
	if req.Started != nil {
		req.Started()
	}
	return sc.run(ctx, inCredit)
}

// waitStarted sends the open request, again every second until the
// agent answers (an agent whose subscription had not reached the hub yet
// gets the next one; it ignores repeats of a session it has seen).
func (sc *shellClient) waitStarted(ctx context.Context, open []byte) (int64, error) {
	timer := time.NewTimer(sc.req.OpenTimeout)
	defer timer.Stop()
	again := time.NewTicker(time.Second)
	defer again.Stop()
	send := func() error {
		if err := sc.c.Conn.Publish(events.ShellOpenSubject(sc.req.Host), open); err != nil {
			return fmt.Errorf("send the open request: %w", err)
		}
		return nil
	}
	if err := send(); err != nil {
		return 0, err
	}
	for {
		select {
		case <-again.C:
			if err := send(); err != nil {
				return 0, err
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		case err := <-sc.fail:
			return 0, err
		case perr := <-sc.c.denied:
			return 0, sc.c.Refused("open a shell on "+sc.req.Host, perr)
		case <-timer.C:
			return 0, fmt.Errorf("%w for host %s within %s; is it online and started with --shell?", ErrShellNoAgent, sc.req.Host, sc.req.OpenTimeout)
		case ctl := <-sc.status:
			switch ctl.Type {
			case shell.Started:
				return ctl.N, nil
			case shell.Refused:
				return 0, &ShellRefusedError{Host: sc.req.Host, Reason: ctl.Error}
			}
		}
	}
}

// onData writes a session's output as it arrives and grants the agent
// credit for what was written.
func (sc *shellClient) onData(i int, ch string, w io.Writer, g *shell.Granter) nats.MsgHandler {
	return func(m *nats.Msg) {
		sc.heard.Store(time.Now().UnixNano())
		off, err := strconv.ParseInt(m.Header.Get(shell.HeaderOffset), 10, 64)
		sc.mu.Lock()
		want := sc.got[i]
		sc.mu.Unlock()
		if err != nil || off != want {
			sc.failWith(fmt.Errorf("%w: %s bytes out of order (offset %q, expected %d)", ErrShellLinkLost, ch, m.Header.Get(shell.HeaderOffset), want))
			return
		}
		if w != nil {
			if _, err := w.Write(m.Data); err != nil {
				sc.failWith(fmt.Errorf("write %s: %w", ch, err))
				return
			}
		}
		sc.mu.Lock()
		sc.got[i] += int64(len(m.Data))
		sc.mu.Unlock()
		select {
		case sc.gotCh <- struct{}{}:
		default:
		}
		if n := g.Consumed(int64(len(m.Data))); n > 0 {
			sc.control(shell.Control{Type: shell.Grant, N: n})
		}
	}
}

func (sc *shellClient) control(c shell.Control) {
	b, _ := json.Marshal(c)
	_ = sc.c.Conn.Publish(sc.subject(events.ShellCtl), b)
}

func (sc *shellClient) run(ctx context.Context, inCredit int64) (int, error) {
	inWin := shell.NewWindow(inCredit)
	defer inWin.Close()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go sc.pumpInput(rctx, inWin)
	tick := time.NewTicker(shell.PingEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			sc.control(shell.Control{Type: shell.Close})
			_ = sc.c.Conn.Flush()
			return -1, ctx.Err()
		case err := <-sc.fail:
			sc.control(shell.Control{Type: shell.Close})
			return -1, err
		case sz := <-sc.req.Resize:
			sc.control(shell.Control{Type: shell.Resize, Rows: sz[0], Cols: sz[1]})
		case <-tick.C:
			sc.control(shell.Control{Type: shell.Ping})
			if time.Since(time.Unix(0, sc.heard.Load())) > shell.DeadAfter {
				return -1, fmt.Errorf("%w: no word from %s for %s", ErrShellLinkLost, sc.req.Host, shell.DeadAfter)
			}
		case ctl := <-sc.status:
			switch ctl.Type {
			case shell.Grant:
				inWin.Give(ctl.N)
			case shell.Exit:
				if err := sc.waitBytes(ctl.Out, ctl.Err); err != nil {
					return -1, err
				}
				if ctl.Code == nil {
					return -1, &ShellEndedError{Host: sc.req.Host, Reason: ctl.Error}
				}
				return *ctl.Code, nil
			}
		}
	}
}

// waitBytes waits until everything the agent sent has been written out:
// the exit status may overtake the last bytes (they travel on other
// subjects).
func (sc *shellClient) waitBytes(out, errb int64) error {
	deadline := time.NewTimer(shell.DeadAfter)
	defer deadline.Stop()
	for {
		sc.mu.Lock()
		got := sc.got
		sc.mu.Unlock()
		if got[0] >= out && got[1] >= errb {
			return nil
		}
		select {
		case <-sc.gotCh:
		case err := <-sc.fail:
			return err
		case <-deadline.C:
			return fmt.Errorf("%w: the session ended but %d of %d output bytes and %d of %d error bytes arrived", ErrShellLinkLost, got[0], out, got[1], errb)
		}
	}
}

// pumpInput sends stdin to the agent, never more than its credit, then
// the end of input.
func (sc *shellClient) pumpInput(ctx context.Context, win *shell.Window) {
	if sc.req.Stdin == nil {
		sc.control(shell.Control{Type: shell.EOF})
		return
	}
	buf := make([]byte, shell.Chunk)
	var off int64
	for {
		got, rerr := sc.req.Stdin.Read(buf)
		for sent := 0; sent < got; {
			n, err := win.Take(ctx, int64(got-sent))
			if err != nil {
				return
			}
			m := nats.NewMsg(sc.subject(events.ShellIn))
			m.Header.Set(shell.HeaderOffset, strconv.FormatInt(off, 10))
			m.Data = append([]byte(nil), buf[sent:sent+int(n)]...)
			if err := sc.c.Conn.PublishMsg(m); err != nil {
				sc.failWith(fmt.Errorf("send input: %w", err))
				return
			}
			sent += int(n)
			off += n
		}
		if ctx.Err() != nil {
			return
		}
		if rerr != nil {
			sc.control(shell.Control{Type: shell.EOF, N: off})
			return
		}
	}
}
