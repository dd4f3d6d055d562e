package tests

import (
	"context"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/coder/websocket"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// termBundle is the web terminal's xterm.js bundle, built by
// `go generate ./dashboard` (scripts/test does) and embedded in pinkie.
const termBundle = "../dashboard/assets/static/term/terminal.js"

// xtermText is everything on the web terminal's screen and scrollback, a
// line each, as xterm.js holds it.
const xtermText = `(() => { const b = window.pinkieTerminal.buffer.active; const out = [];
	for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
	return out.join("\n"); })()`

// TestWebTerminal: an operator signed in through a real OpenID provider
// opens the terminal on a host page in a real chromium, types echo hi and
// sees hi, over a real agent started with --shell; the session is audited
// under the OIDC user's name, from the dashboard. A reader (OIDC reader
// group) and a browser without a session are refused before any session is
// opened: 403 and 401, no shell.session event.
func TestWebTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	if _, err := os.Stat(termBundle); err != nil {
		t.Skip("the web terminal's assets are not built: run go generate ./dashboard (scripts/test does) before the tests build pinkie")
	}
	ctx := newBrowser(t)
	f := newFleet(t, "alpha")
	base := f.httpURL()
	issuer, _ := startProvider(t, base+"/auth/callback")
	cfg := oidcHubConfig(t, base, issuer, "")
	f.startHub("--config", cfg)
	agent := f.startAgent("alpha", t.TempDir(), "", "--shell", "--shell-user", "root")
	agent.waitFor("hub connected", 30*time.Second)
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/hosts/alpha/terminal?rows=24&cols=80"

	// Refusals first: had any of them opened a session, its shell.session
	// event would come before the operator's below.
	dial := func(c *http.Client) int {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, resp, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: c, HTTPHeader: http.Header{"Origin": {base}}})
		if err == nil {
			conn.CloseNow()
			return 101
		}
		if resp == nil {
			t.Fatalf("dial the terminal: %v", err)
		}
		return resp.StatusCode
	}
	if code := dial(http.DefaultClient); code != http.StatusUnauthorized {
		t.Errorf("terminal without a session: HTTP %d, want 401", code)
	}
	reader, status, landed := oidcLogin(t, base, "test-user2", "verysecure")
	if status != 200 || !strings.Contains(landed, "test-user2 · reader") {
		t.Fatalf("reader login ended at %d %s", status, landed[:min(len(landed), 400)])
	}
	if code := dial(reader); code != http.StatusForbidden {
		t.Errorf("terminal for a reader: HTTP %d, want 403", code)
	}
	// The host page exists once the agent's first events are in.
	var page []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := reader.Get(base + "/hosts/alpha")
		if err != nil {
			t.Fatal(err)
		}
		page, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host page: HTTP %d within 30s:\n%s", resp.StatusCode, page)
		}
	}
	if strings.Contains(string(page), "terminal-open") || strings.Contains(string(page), "<h2>Terminal</h2>") {
		t.Errorf("the reader's host page offers the terminal:\n%s", page)
	}

	// The operator, in chromium, through the provider's login form.
	operatorOpensHostPage(t, ctx, base)
	run(t, ctx, 30*time.Second, "open the terminal",
		chromedp.Click(chromedp.CSS(`#terminal-open`)),
		chromedp.WaitVisible(chromedp.CSS(`#terminal-state.live`)))
	run(t, ctx, 10*time.Second, "type echo hi", chromedp.Focus(chromedp.CSS(`.xterm-helper-textarea`)), typeKeys("echo hi"+kb.Enter))
	screen := pageWait(t, ctx, "a line hi in the terminal", 20*time.Second, xtermText, func(s string) bool {
		for _, l := range strings.Split(s, "\n") {
			if strings.TrimSpace(l) == "hi" {
				return true
			}
		}
		return false
	})
	if rows := value(t, ctx, 5*time.Second, "the rendered rows", chromedp.Evaluate[string](`document.querySelector(".xterm-rows").innerText`)); !strings.Contains(rows, "hi") {
		t.Errorf("xterm.js has hi in its buffer but does not show it:\n%s\nbuffer:\n%s", rows, screen)
	}
	screenshot(t, ctx, screenshotDir(t), "webterm")

	// The window's size reaches the remote pty, at the start and on resizes.
	hasLine := func(want string) func(string) bool {
		return func(s string) bool { return slices.Contains(strings.Split(s, "\n"), want) }
	}
	const size = `pinkieTerminal.rows + " " + pinkieTerminal.cols`
	first := value(t, ctx, 5*time.Second, "the terminal's size", chromedp.Evaluate[string](size))
	run(t, ctx, 10*time.Second, "type stty size", typeKeys("stty size"+kb.Enter))
	pageWait(t, ctx, "stty size "+first, 20*time.Second, xtermText, hasLine(first))
	narrow := emulation.SetDeviceMetricsOverrideParams{Width: 700, Height: 700, DeviceScaleFactor: 1}
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, narrow); err != nil {
		t.Fatal(err)
	}
	second := pageWait(t, ctx, "a resized terminal", 10*time.Second, size, func(s string) bool { return s != first })
	run(t, ctx, 10*time.Second, "type stty size", typeKeys("stty size"+kb.Enter))
	pageWait(t, ctx, "stty size "+second+" after the resize", 20*time.Second, xtermText, hasLine(second))
	run(t, ctx, 10*time.Second, "type exit", chromedp.Focus(chromedp.CSS(`.xterm-helper-textarea`)), typeKeys("exit 3"+kb.Enter))
	pageWait(t, ctx, "the session's end on the page", 20*time.Second, `document.getElementById("terminal-state").textContent`,
		func(s string) bool { return s == "ended: exit code 3" })

	started := waitShellEvent(t, f, "alpha", "started", 30*time.Second)
	ended := waitShellEvent(t, f, "alpha", "ended", 30*time.Second)
	if started.Session != ended.Session {
		t.Errorf("the first session events are of two sessions (%s started, %s ended): a refused request opened one", started.Session, ended.Session)
	}
	want := streams.ShellConnNamePrefix + "test-user@127.0.0.1"
	if !strings.HasPrefix(started.ClientName, want) || !strings.Contains(started.ClientName, "from 127.0.0.1") || !started.TTY || started.Command != "" {
		t.Errorf("started event: client %q tty %v command %q; want an interactive session by %q from 127.0.0.1", started.ClientName, started.TTY, started.Command, want)
	}
	if ended.ExitCode == nil || *ended.ExitCode != 3 || !strings.HasPrefix(ended.ClientName, want) {
		t.Errorf("ended event: exit %v by %q, want exit 3 by %q", ended.ExitCode, ended.ClientName, want)
	}
	if n := countSubjects(t, f.client().JS, streams.HostsStream, events.HostSubject("alpha", "shell.session", "")); n != 2 {
		t.Errorf("%d shell.session events, want 2 (the operator's session started and ended; the refusals none)", n)
	}

	// Leaving the page ends its session cleanly: the agent hangs up the
	// shell and records why.
	run(t, ctx, 30*time.Second, "open another terminal",
		chromedp.Click(chromedp.CSS(`#terminal-open`)),
		chromedp.WaitVisible(chromedp.CSS(`#terminal-state.live`)))
	again := waitShellEvent(t, f, "alpha", "started", 30*time.Second)
	run(t, ctx, 30*time.Second, "leave the page", chromedp.Navigate(base+"/"))
	left := waitShellEvent(t, f, "alpha", "ended", 30*time.Second)
	if left.Session != again.Session || left.ExitCode != nil || left.Reason != "closed by the operator" {
		t.Errorf("after leaving the page: session %s ended with exit %v, reason %q; want %s closed by the operator", left.Session, left.ExitCode, left.Reason, again.Session)
	}
}

// pageWait evaluates expr in the page until ok says so.
func pageWait(t *testing.T, ctx context.Context, what string, within time.Duration, expr string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := value(t, ctx, 5*time.Second, "read the page", chromedp.Evaluate[string](expr))
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s:\n%s", what, within, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// typeKeys presses each key as a keyboard does, which Chrome reports as one
// keyDown carrying its text (keydown, keypress and input in the page).
// chromedp's KeyEvent sends the text in a separate char event, which
// xterm.js takes as a second keystroke.
func typeKeys(keys string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, r := range keys {
			var down *input.DispatchKeyEventParams
			for _, k := range kb.Encode(r) {
				switch k.Type {
				case kb.KeyDown:
					down = k
					continue
				case kb.KeyChar:
					down.Text, down.UnmodifiedText = k.Text, k.UnmodifiedText
					continue
				}
				if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, *down); err != nil {
					return err
				}
				if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, *k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// TestWebTerminalGuest: on the host page, the guests panel's terminal
// button of the container web opens a session inside it (a real
// namespace, guestFixture): hostname there is the container's, and the
// audit event names the guest and the OIDC user.
func TestWebTerminalGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	if _, err := os.Stat(termBundle); err != nil {
		t.Skip("the web terminal's assets are not built: run go generate ./dashboard (scripts/test does) before the tests build pinkie")
	}
	needGuests(t)
	flags := append(guestFixture(t), "--shell-user", "root", "--producers", "guest")
	ctx := newBrowser(t)
	f := newFleet(t, "alpha")
	base := f.httpURL()
	issuer, _ := startProvider(t, base+"/auth/callback")
	f.startHub("--config", oidcHubConfig(t, base, issuer, ""))
	f.startAgent("alpha", t.TempDir(), "", flags...).waitFor("hub connected", 30*time.Second)
	waitInventory(t, f, "alpha") // its host page exists

	operatorOpensHostPage(t, ctx, base)
	// The guests panel fills once the guest producer has reported. The
	// button works once the page's terminal script has run (a page just
	// reloaded may show it before): the page must be complete.
	webButton := `.terminal-guest[data-guest="web"]`
	pageWait(t, ctx, "web's terminal button", 30*time.Second, `(() => {
		if (document.readyState !== "complete") return "loading";
		if (document.querySelector('`+webButton+`')) return "yes";
		location.reload(); return "no"; })()`,
		func(s string) bool { return s == "yes" })
	// The page refreshes its live regions by replacing their HTML, buttons
	// included (as every new event of the host does): the button must work
	// after that too.
	value(t, ctx, 5*time.Second, "a live refresh of the guests panel", chromedp.Evaluate[string](`(() => {
		const live = document.querySelector('`+webButton+`').closest("[data-live]");
		live.innerHTML = live.innerHTML; return live.id; })()`))
	run(t, ctx, 30*time.Second, "open web's terminal",
		chromedp.Click(chromedp.CSS(webButton)),
		chromedp.WaitVisible(chromedp.CSS(`#terminal-state.live`)))
	if state := value(t, ctx, 5*time.Second, "the terminal's state", chromedp.Evaluate[string](`document.getElementById("terminal-state").textContent`)); state != "connected to web" {
		t.Errorf("the terminal says %q, want connected to web", state)
	}
	run(t, ctx, 10*time.Second, "type hostname", chromedp.Focus(chromedp.CSS(`.xterm-helper-textarea`)), typeKeys("hostname"+kb.Enter))
	pageWait(t, ctx, "the container's hostname in the terminal", 20*time.Second, xtermText, func(s string) bool {
		return slices.Contains(strings.Split(s, "\n"), guestNSHost)
	})
	ev := waitShellEvent(t, f, "alpha", "started", 30*time.Second)
	if ev.Guest != "web" || !strings.HasPrefix(ev.ClientName, streams.ShellConnNamePrefix+"test-user@127.0.0.1") {
		t.Errorf("started event: guest %q by %q, want web by the OIDC user", ev.Guest, ev.ClientName)
	}
}

// operatorOpensHostPage signs the operator (OIDC test-user) in at the
// provider in chromium and waits for alpha's host page with its terminal.
func operatorOpensHostPage(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	run(t, ctx, 30*time.Second, "sign in at the provider",
		chromedp.Navigate(base+"/login/oidc?next=/hosts/alpha"),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), "test-user@127.0.0.1"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "verysecure"),
		chromedp.Submit(chromedp.CSS(`#username`)),
		chromedp.WaitVisible(chromedp.CSS(`#terminal-open`)))
}
