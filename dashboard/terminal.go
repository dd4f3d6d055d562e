package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/pinkiefleet/pinkie/events"
)

// Terminal opens shell sessions on hosts for the web terminal, with the
// same client code, flow control and limits as pinkie shell.
type Terminal interface {
	// Shell runs an interactive login shell on r.Host until it ends and
	// returns its exit code; errors are as streams.Client.Shell's, and
	// their text is shown to the user.
	Shell(ctx context.Context, r TerminalRequest) (int, error)
}

// TerminalRequest is one web terminal session.
type TerminalRequest struct {
	Host string
	// Guest opens the session in this NixOS container or MicroVM of Host
	// (the host page's guests panel); empty: the host.
	Guest string
	// Who names the signed-in user and where from, for the agent's
	// shell.session audit event.
	Who        string
	Term       string
	Rows, Cols uint16
	Stdin      io.Reader
	Stdout     io.Writer
	Resize     <-chan [2]uint16
	Started    func()
}

// termAssets is where `go generate ./dashboard` puts the bundled xterm.js.
const termAssets = "assets/static/term/terminal.js"

// terminalBuilt reports whether the web terminal's assets are embedded.
func terminalBuilt() bool {
	_, err := fs.Stat(assets, termAssets)
	return err == nil
}

// terminalView is the host page's terminal panel.
type terminalView struct {
	Host string
	// Built: the xterm.js bundle is embedded; else the page says how to
	// build it.
	Built bool
}

// terminalCSP is the host page's policy when it carries the terminal:
// xterm.js sizes and colours its screen with <style> elements it makes.
const terminalCSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"

// termMsg is a text frame of the terminal's WebSocket: the browser sends
// resize; the hub sends started, exit (with the code) and error. Bytes
// travel as binary frames both ways.
type termMsg struct {
	T     string `json:"t"`
	Rows  uint16 `json:"rows,omitempty"`
	Cols  uint16 `json:"cols,omitempty"`
	Code  *int   `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// termPingEvery is how often the hub pings the browser (within the 60s
// idle timeout of common reverse proxies), and how long it waits for the
// pong.
const termPingEvery = 25 * time.Second

// maxTermFrame bounds a frame from the browser (typed or pasted input).
const maxTermFrame = 64 << 10

// terminalWS is GET /hosts/{host}/terminal: a WebSocket carrying one login
// shell on the host. Only operators reach it (require): anyone else gets
// 403 before the upgrade and no session is opened. The WebSocket accepts
// only this very origin, so another site cannot open one with the user's
// cookie.
func (s *Server) terminalWS(w http.ResponseWriter, r *http.Request, sess *Session) error {
	host := r.PathValue("host")
	if err := events.ValidHost(host); err != nil {
		return httpError{http.StatusBadRequest, err.Error()}
	}
	if s.o.Terminal == nil {
		return httpError{http.StatusNotFound, "this dashboard has no terminal"}
	}
	size := func(k string) uint16 {
		n, err := strconv.ParseUint(r.URL.Query().Get(k), 10, 16)
		if err != nil || n == 0 || n > 1000 {
			return 0
		}
		return uint16(n)
	}
	rows, cols := size("rows"), size("cols")
	guest := r.URL.Query().Get("guest")
	if !validGuest(guest) {
		return httpError{http.StatusBadRequest, fmt.Sprintf("guest %q: not a container or MicroVM name", guest)}
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		s.log.Warn("dashboard: terminal websocket refused", "host", host, "user", sess.Name, "err", err)
		return nil // Accept has answered
	}
	defer c.CloseNow()
	c.SetReadLimit(maxTermFrame)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var inputWaits atomic.Bool
	go func() {
		select {
		case <-s.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		// A ping now and then keeps proxies in front of the hub from
		// closing an idle terminal, and notices a browser that is gone.
		// The pong is read with the browser's frames: while input waits
		// for the agent's credit (a paste into a busy program) none is,
		// and that is no reason to end the session.
		tick := time.NewTicker(termPingEvery)
		defer tick.Stop()
		missed := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				pctx, pcancel := context.WithTimeout(ctx, termPingEvery)
				err := c.Ping(pctx)
				pcancel()
				if err == nil || inputWaits.Load() {
					missed = 0
					continue
				}
				if missed++; missed >= 2 {
					s.log.Warn("dashboard: terminal browser gone", "host", host, "user", sess.Name, "err", err)
					cancel()
					return
				}
			}
		}
	}()
	send := func(m termMsg) {
		b, _ := json.Marshal(m)
		_ = c.Write(ctx, websocket.MessageText, b)
	}
	inR, inW := io.Pipe()
	resize := make(chan [2]uint16, 1)
	go func() {
		// What the browser sends: typed bytes, resizes; its end closes the
		// session (the client sends close, the agent hangs up the shell).
		defer cancel()
		defer inW.Close()
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			if typ == websocket.MessageBinary {
				inputWaits.Store(true)
				_, err := inW.Write(b)
				inputWaits.Store(false)
				if err != nil {
					return
				}
				continue
			}
			var m termMsg
			if json.Unmarshal(b, &m) == nil && m.T == "resize" && m.Rows > 0 && m.Cols > 0 {
				select {
				case resize <- [2]uint16{m.Rows, m.Cols}:
				default: // the previous one is not sent yet: keep the newest
					select {
					case <-resize:
					default:
					}
					resize <- [2]uint16{m.Rows, m.Cols}
				}
			}
		}
	}()
	who := fmt.Sprintf("%s (%s) from %s", sess.Name, sess.Subject, remoteIP(r))
	s.log.Info("dashboard: terminal opened", "host", host, "guest", guest, "user", sess.Name, "sub", sess.Subject, "from", remoteIP(r))
	code, err := s.o.Terminal.Shell(ctx, TerminalRequest{Host: host, Guest: guest, Who: who, Term: "xterm-256color", Rows: rows, Cols: cols,
		Stdin: inR, Stdout: wsWriter{ctx: ctx, c: c}, Resize: resize, Started: func() { send(termMsg{T: "started"}) }})
	_ = inR.Close()
	switch {
	case err == nil:
		send(termMsg{T: "exit", Code: &code})
		_ = c.Close(websocket.StatusNormalClosure, "")
	case errors.Is(err, context.Canceled):
		// the browser left, or the hub stops
		_ = c.Close(websocket.StatusGoingAway, "closed")
	default:
		s.log.Warn("dashboard: terminal ended", "host", host, "user", sess.Name, "err", err)
		send(termMsg{T: "error", Error: err.Error()})
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
	return nil
}

// wsWriter sends the session's output as binary frames. A slow browser
// blocks the write, which holds back the credit to the agent: the same
// flow control as a slow local terminal.
type wsWriter struct {
	ctx context.Context
	c   *websocket.Conn
}

func (w wsWriter) Write(p []byte) (int, error) {
	if err := w.c.Write(w.ctx, websocket.MessageBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func remoteIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// validGuest: empty (the host), or a guest name as the guest producer
// reports them (a file name under /etc/nixos-containers or
// /var/lib/microvms): the agent matches it against its own guests.
func validGuest(g string) bool {
	if len(g) > 255 || g == "." || g == ".." {
		return false
	}
	for _, r := range g {
		if r <= ' ' || r == '/' || r == 0x7f {
			return false
		}
	}
	return true
}
