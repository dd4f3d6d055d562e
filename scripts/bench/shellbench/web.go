package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"time"

	"github.com/coder/websocket"

	"github.com/pinkiefleet/pinkie/dashboard"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// emptyStore is a dashboard store with nothing in it: the bench needs
// only the terminal.
type emptyStore struct{}

func (emptyStore) Bucket(context.Context, string, string) (map[string][]byte, error) {
	return map[string][]byte{}, nil
}
func (emptyStore) History(context.Context, string, []string, time.Time, int) ([]dashboard.Stored, error) {
	return nil, nil
}
func (emptyStore) Last(context.Context, string, string) (*dashboard.Stored, error) { return nil, nil }
func (emptyStore) Publish(context.Context, string, events.Event) error             { return nil }
func (emptyStore) Watch(ctx context.Context, _ func(string)) error                 { <-ctx.Done(); return nil }

// hubTerminal is cmd/pinkie's: a session through the hub as the
// dashboard's terminal user.
type hubTerminal struct{ hub *streams.Hub }

func (t hubTerminal) Shell(ctx context.Context, r dashboard.TerminalRequest) (int, error) {
	return t.hub.ShellAs(ctx, r.Who, streams.ShellRequest{Host: r.Host, TTY: true, Term: r.Term, Rows: r.Rows, Cols: r.Cols,
		Stdin: r.Stdin, Stdout: r.Stdout, Resize: r.Resize, Started: r.Started})
}

// wsInput sends what is written as binary frames, as the browser does.
type wsInput struct {
	ctx context.Context
	c   *websocket.Conn
}

func (w wsInput) Write(p []byte) (int, error) {
	return len(p), w.c.Write(w.ctx, websocket.MessageBinary, p)
}

// measureWeb serves the dashboard, signs in with its local link, opens
// the host's terminal over its WebSocket and times keystrokes into
// `cat > /dev/null` (the pty's line discipline echoes them), as the CLI's.
func measureWeb(ctx context.Context, hub *streams.Hub, keys int, log *slog.Logger) (*result, error) {
	links := make(chan string, 4)
	auth, err := dashboard.NewAuth(dashboard.AuthOptions{SessionKey: dashboard.NewSessionKey(), SessionTTL: time.Hour, Log: log,
		LocalLink: func(p string) { links <- p }})
	if err != nil {
		return nil, err
	}
	srv, err := dashboard.New(dashboard.Options{Store: emptyStore{}, Auth: auth, Log: log, Terminal: hubTerminal{hub}})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	defer srv.CloseStreams()
	base := "http://" + ln.Addr().String()
	auth.IssueLocalLink()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := client.Get(base + <-links)
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	resp.Body.Close()
	c, _, err := websocket.Dial(ctx, "ws"+base[len("http"):]+"/hosts/bench/terminal?rows=24&cols=80",
		&websocket.DialOptions{HTTPClient: client, HTTPHeader: http.Header{"Origin": {base}}})
	if err != nil {
		return nil, fmt.Errorf("open the terminal: %w", err)
	}
	defer c.CloseNow()
	echo := make(chan byte, 1<<16)
	started := make(chan struct{})
	ended := make(chan string, 1)
	go func() {
		defer close(echo)
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				ended <- err.Error()
				return
			}
			if typ == websocket.MessageBinary {
				for _, x := range b {
					echo <- x
				}
				continue
			}
			var m struct{ T, Error string }
			_ = json.Unmarshal(b, &m)
			switch m.T {
			case "started":
				close(started)
			case "error":
				ended <- m.Error
			}
		}
	}()
	select {
	case <-started:
	case why := <-ended:
		return nil, fmt.Errorf("the terminal did not start: %s", why)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("the terminal did not start within 30s")
	}
	in := wsInput{ctx: ctx, c: c}
	if _, err := io.WriteString(in, "exec cat > /dev/null\r"); err != nil {
		return nil, err
	}
	for b := range echo { // the command line's echo ends with its newline
		if b == '\n' {
			break
		}
	}
	var r result
	if r.RoundTripP50, r.RoundTripP99, r.RoundTripMax, err = keystrokes(keys, in, echo); err != nil {
		return nil, err
	}
	r.Keys = keys
	_, _ = in.Write([]byte{4, 4}) // ^D ends cat, and with it the session
	return &r, nil
}
