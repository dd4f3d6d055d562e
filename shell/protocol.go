package shell

import (
	"context"
	"regexp"
	"sync"
	"time"
)

// Open is an operator's request for a session, sent to the host's open
// subject. The operator picks the session id and listens on the session's
// out, err and status subjects before sending it.
type Open struct {
	Session string `json:"session"`
	// Command is run with the user's shell -c; empty: a login shell.
	Command string `json:"command,omitempty"`
	TTY     bool   `json:"tty,omitempty"`
	Term    string `json:"term,omitempty"`
	Rows    uint16 `json:"rows,omitempty"`
	Cols    uint16 `json:"cols,omitempty"`
	// Window is how many bytes of output the agent may send before the
	// operator grants more.
	Window int64 `json:"window"`
	// Replay asks for the recording of this earlier session (asciicast v2)
	// as the output, instead of running anything.
	Replay string `json:"replay,omitempty"`
	// Guest names a NixOS container or MicroVM of the host to open the
	// session in, instead of the host itself.
	Guest string `json:"guest,omitempty"`
}

// SessionRE is what a session id looks like: 128 random bits in hex, one
// subject token.
var SessionRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Control message types. Operator → agent on ctl: Grant, EOF, Resize, Ping,
// Close. Agent → operator on status: Started, Refused, Grant, Ping, Exit.
const (
	Started = "started"
	Refused = "refused"
	Grant   = "grant"
	EOF     = "eof"
	Resize  = "resize"
	Ping    = "ping"
	Close   = "close"
	Exit    = "exit"
)

// Control is one control message.
type Control struct {
	Type string `json:"t"`
	// N is the credit a Grant gives, in bytes; Started's is the first
	// stdin window.
	N    int64  `json:"n,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// Code is Exit's exit code; absent when the session was cut.
	Code *int `json:"code,omitempty"`
	// Error is why a session was refused or cut.
	Error string `json:"error,omitempty"`
	// Out and Err are how many bytes Exit's session sent on out and err,
	// so the operator knows when it has them all.
	Out int64 `json:"out,omitempty"`
	Err int64 `json:"err,omitempty"`
}

// HeaderOffset is the header of a data message (in, out, err) with the
// offset of its first byte in its stream, so a lost or repeated message
// is noticed rather than corrupting the stream.
const HeaderOffset = "Pinkie-Offset"

// Flow control and liveness, the same at both ends.
const (
	// Chunk is the largest data message.
	Chunk = 32 << 10
	// DefaultWindow is the credit each receiver grants up front.
	DefaultWindow = 1 << 20
	// MaxWindow bounds what an operator may ask for.
	MaxWindow = 8 << 20
	// PingEvery is how often each end says it is alive when it has
	// nothing else to say; after DeadAfter of silence the other end is
	// gone.
	PingEvery = 1 * time.Second
	DeadAfter = 5 * time.Second
)

// Window is a sender's credit: bytes it may send before the receiver
// grants more. The sender never has more than the window outstanding.
type Window struct {
	mu     sync.Mutex
	credit int64
	wake   chan struct{}
	closed bool
}

// NewWindow starts with credit bytes.
func NewWindow(credit int64) *Window { return &Window{credit: credit, wake: make(chan struct{})} }

// Take waits for credit and takes up to max bytes of it.
func (w *Window) Take(ctx context.Context, max int64) (int64, error) {
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return 0, context.Canceled
		}
		if w.credit > 0 {
			n := min(max, w.credit)
			w.credit -= n
			w.mu.Unlock()
			return n, nil
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-wake:
		}
	}
}

// Give adds n bytes of credit (a grant, or an unused part of a Take).
func (w *Window) Give(n int64) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.credit += n
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

// Close wakes and fails every Take.
func (w *Window) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.wake)
	}
	w.mu.Unlock()
}

// Granter batches a receiver's grants: it returns credit to the sender
// once a quarter of the window has been consumed, not for every byte.
type Granter struct {
	mu      sync.Mutex
	window  int64
	pending int64
}

// NewGranter is for a receiver that granted window bytes up front.
func NewGranter(window int64) *Granter { return &Granter{window: window} }

// Consumed records n bytes written out and returns the credit to grant
// now (0: wait for more).
func (g *Granter) Consumed(n int64) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending += n
	if g.pending*4 < g.window {
		return 0
	}
	out := g.pending
	g.pending = 0
	return out
}
