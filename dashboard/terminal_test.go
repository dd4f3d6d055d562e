package dashboard

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// countingTerminal counts the sessions it is asked to open.
type countingTerminal struct{ n atomic.Int64 }

func (c *countingTerminal) Shell(context.Context, TerminalRequest) (int, error) {
	c.n.Add(1)
	return 0, nil
}

// TestTerminalRefusals: only an operator's same-origin WebSocket reaches
// the terminal; everyone else is refused before any session is opened, and
// only operators' host pages offer it.
func TestTerminalRefusals(t *testing.T) {
	ws := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "http://example.com"}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{}
		for k, v := range ws {
			h[k] = v
		}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	for _, tc := range []struct {
		name     string
		role     string // "": no session
		loopback bool
		target   string
		hdr      map[string]string
		code     int
		says     string
	}{
		{"no session", "", false, "/hosts/host0000/terminal", ws, 401, "sign in first"},
		{"loopback reader without login", "", true, "/hosts/host0000/terminal", with(map[string]string{"RemoteAddr": "127.0.0.1:4000"}), 403, "only operators"},
		{"reader", roleReader, false, "/hosts/host0000/terminal", ws, 403, "only operators"},
		{"operator, another site's page", roleOperator, false, "/hosts/host0000/terminal", with(map[string]string{"Origin": "http://evil.example"}), 403, ""},
		{"operator, bad host", roleOperator, false, "/hosts/bad.host/terminal", ws, 400, "bad.host"},
		{"operator, bad guest", roleOperator, false, "/hosts/host0000/terminal?guest=..%2Fetc", ws, 400, "not a container or MicroVM name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, tc.loopback, 2)
			term := &countingTerminal{}
			ts.o.Terminal = term
			var cookies []*http.Cookie
			if tc.role != "" {
				c, _ := ts.session(t, tc.role)
				cookies = append(cookies, c)
			}
			r := ts.do("GET", "http://example.com"+tc.target, nil, tc.hdr, cookies...)
			if r.Code != tc.code || !strings.Contains(r.Body.String(), tc.says) {
				t.Errorf("HTTP %d %s, want %d saying %q", r.Code, r.Body, tc.code, tc.says)
			}
			if n := term.n.Load(); n != 0 {
				t.Errorf("%d sessions opened, want none", n)
			}
		})
	}
	t.Run("host page", func(t *testing.T) {
		ts := newTestServer(t, false, 2)
		ts.o.Terminal = &countingTerminal{}
		for role, want := range map[string]bool{roleOperator: true, roleReader: false} {
			c, _ := ts.session(t, role)
			body := ts.do("GET", "/hosts/host0000", nil, nil, c).Body.String()
			if got := strings.Contains(body, "<h2>Terminal</h2>"); got != want {
				t.Errorf("%s's host page has the terminal: %v, want %v", role, got, want)
			}
			if want && terminalBuilt() != strings.Contains(body, `id="terminal-open"`) {
				t.Errorf("assets built %v, but the page offers the terminal %v", terminalBuilt(), !terminalBuilt())
			}
			if want && !terminalBuilt() && !strings.Contains(body, "go generate ./dashboard") {
				t.Error("without its assets the page does not say how to build them")
			}
		}
	})
}
