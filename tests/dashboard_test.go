package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/pinkiefleet/pinkie/events"
)

// chromiumPath is Debian's chromium (scripts/test installs it).
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts one headless chromium for a test file's test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skip("chromium is not installed (scripts/test installs Debian's chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshotDir is where page screenshots go: $PINKIE_SCREENSHOTS or a
// temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("PINKIE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// run does steps in the browser within a time limit.
func run(t *testing.T, ctx context.Context, within time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// value runs one action that returns a value.
func value[T any](t *testing.T, ctx context.Context, within time.Duration, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := value(t, ctx, 20*time.Second, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

var localLinkRE = regexp.MustCompile(`dashboard: sign in as the local admin \(operator\) once, within an hour: (\S+)`)

// localLink returns the newest one-time login link the hub printed.
func localLink(t *testing.T, hub *proc) string {
	t.Helper()
	m := localLinkRE.FindAllStringSubmatch(hub.out.String(), -1)
	if len(m) == 0 {
		t.Fatalf("the hub printed no local login link:\n%s", hub.out.String())
	}
	return m[len(m)-1][1]
}

// TestDashboardBrowser drives the dashboard in a real chromium against a
// real hub with two agents (goliath on the fixture host with failing
// drives) and the deploy test flake.
func TestDashboardBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	// Without nix the deploy step skips; everything else still runs.
	_, nixErr := exec.LookPath("nix")
	if nixErr == nil {
		t.Setenv("NIX_CONFIG", deployNixConfig)
	}
	ctx := newBrowser(t)
	shots := screenshotDir(t)
	root, config := fixtureHost(t)
	f := newFleet(t, "goliath", "koishi")
	hubCfg := filepath.Join(t.TempDir(), "hub.json")
	writeFile(t, hubCfg, `{"dashboard": {"title": "pinkie test fleet"}}`)
	if nixErr == nil {
		flake := newDeployFlake(t, map[string]deployTestHost{
			"goliath": {tags: []string{"web", "eu"}},
			"koishi":  {tags: []string{"web"}},
		})
		writeFile(t, hubCfg, fmt.Sprintf(`{"dashboard": {"flake": %q, "title": "pinkie test fleet"}}`, flake.dir))
	}
	hub := f.startHub("--config", hubCfg)
	// The fleet as declared: tower is declared but never runs an agent.
	declareFleet(t, f, map[string][]string{"goliath": {"web", "eu"}, "koishi": {"web"}, "tower": {"build"}})
	profiles := map[string]string{}
	for _, h := range []string{"goliath", "koishi"} {
		profiles[h] = filepath.Join(t.TempDir(), "profiles", "system")
		extra := []string{"--system-profile", profiles[h], "--activation", "direct"}
		if h == "goliath" {
			extra = append(extra, "--root", root, "--replay-commands", filepath.Join(root, "_commands"), "--config", config)
		} else {
			extra = append(extra, "--producers", "heartbeat,profile", "--heartbeat", "2s")
		}
		f.startAgent(h, t.TempDir(), "", extra...).waitFor("hub connected", 30*time.Second)
	}
	base := f.httpURL()

	// Signed out, a page sends the browser to the login page.
	run(t, ctx, 30*time.Second, "open signed out", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`h1`)))
	loc := value(t, ctx, 10*time.Second, "location", chromedp.Location())
	if !strings.Contains(loc, "/login") {
		t.Fatalf("signed out, / went to %s, want /login", loc)
	}
	run(t, ctx, 30*time.Second, "local login", chromedp.Navigate(localLink(t, hub)), chromedp.WaitVisible(chromedp.CSS(`.card[data-host="goliath"]`)))

	t.Run("overview", func(t *testing.T) {
		run(t, ctx, 60*time.Second, "both hosts on the overview",
			chromedp.WaitVisible(chromedp.CSS(`.card[data-host="goliath"].state-online`)), chromedp.WaitVisible(chromedp.CSS(`.card[data-host="koishi"].state-online`)))
		tower := value(t, ctx, 10*time.Second, "tower", chromedp.Text(chromedp.CSS(`.card[data-host="tower"]`)))
		if !strings.Contains(tower, "declared, never seen") {
			t.Errorf("tower's card says %q, want declared, never seen", tower)
		}
		run(t, ctx, 30*time.Second, "filter by tag", chromedp.Navigate(base+"/?tag=eu"), chromedp.WaitVisible(chromedp.CSS(`.card[data-host="goliath"]`)))
		if n := value(t, ctx, 5*time.Second, "count cards", chromedp.Evaluate[int](`document.querySelectorAll(".card").length`)); n != 1 {
			t.Errorf("tag eu shows %d hosts, want goliath only", n)
		}
		run(t, ctx, 30*time.Second, "search by name", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`#q`)), chromedp.SendKeys(chromedp.CSS(`#q`), "koi"))
		if n := value(t, ctx, 5*time.Second, "count visible cards", chromedp.Evaluate[int](`[...document.querySelectorAll(".card")].filter(c => !c.hidden).length`)); n != 1 {
			t.Errorf("search koi shows %d hosts, want koishi only", n)
		}
		run(t, ctx, 30*time.Second, "reload", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`.card[data-host="goliath"]`)))
		screenshot(t, ctx, shots, "overview")
	})

	t.Run("host page shows the failing drive", func(t *testing.T) {
		run(t, ctx, 30*time.Second, "open goliath", chromedp.Navigate(base+"/hosts/goliath"), chromedp.WaitVisible(chromedp.CSS(`h1`)))
		var row string
		deadline := time.Now().Add(60 * time.Second)
		for {
			row = value(t, ctx, 10*time.Second, "read SMART table", chromedp.Evaluate[string](`(() => { const r = [...document.querySelectorAll("#smart tr")].find(r => r.textContent.includes("/dev/sdc")); return r ? r.innerText : ""; })()`))
			if strings.Contains(row, "failing") || time.Now().After(deadline) {
				break
			}
			time.Sleep(300 * time.Millisecond) // the page itself updates live; poll its DOM
		}
		cells := strings.Split(row, "\t")
		if !strings.Contains(row, "failing") || len(cells) < 4 || strings.TrimSpace(cells[3]) == "" {
			t.Fatalf("SMART row of /dev/sdc = %q, want verdict failing with its reasons", row)
		}
		screenshot(t, ctx, shots, "host")
	})

	t.Run("a published event shows without a reload", func(t *testing.T) {
		run(t, ctx, 30*time.Second, "open alerts", chromedp.Navigate(base+"/alerts"), chromedp.WaitVisible(chromedp.CSS(`#silence-form`)),
			chromedp.WaitVisible(chromedp.CSS(`#conn.live`)))
		value(t, ctx, 5*time.Second, "mark the page", chromedp.Evaluate[int](`window.__noReload = 1`))
		// The browser notes when each silence's row appears; the test notes
		// when it published the event: the difference is event → screen.
		c := f.client()
		k, _ := events.Lookup("silence.added")
		var lat []time.Duration
		for i := range 10 {
			id := fmt.Sprintf("live%d", i)
			value(t, ctx, 5*time.Second, "watch the DOM", chromedp.Evaluate[int](fmt.Sprintf(`new MutationObserver((_, o) => {
				if (document.querySelector('tr[data-silence="%s"]')) { window.__seen = Date.now(); o.disconnect(); }
			}).observe(document.body, {childList: true, subtree: true}), 1`, id)))
			now := time.Now().UTC().Truncate(time.Second)
			sa := events.SilenceAdded{ID: id, Matchers: map[string]string{"host": "koishi"}, StartsAt: now, EndsAt: now.Add(time.Hour), Comment: "live", CreatedBy: "test"}
			ev, err := events.New(k, "test", "test", now, &sa)
			if err != nil {
				t.Fatal(err)
			}
			published := time.Now()
			if _, err := c.Publish(context.Background(), k.HubSubject(&sa), ev); err != nil {
				t.Fatal(err)
			}
			run(t, ctx, 20*time.Second, "the new silence appears", chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-silence="%s"]`, id))))
			seen := value(t, ctx, 5*time.Second, "seen at", chromedp.Evaluate[int64](`window.__seen || 0`))
			lat = append(lat, time.Duration(seen-published.UnixMilli())*time.Millisecond)
		}
		slices.Sort(lat)
		t.Logf("event published at the hub → shown in the browser, 10 events: median %v, max %v", lat[len(lat)/2], lat[len(lat)-1])
		marker := value(t, ctx, 5*time.Second, "no reload", chromedp.Evaluate[int](`window.__noReload || 0`))
		if marker != 1 {
			t.Fatal("the page reloaded instead of updating in place")
		}
	})

	t.Run("create a silence in the UI", func(t *testing.T) {
		run(t, ctx, 30*time.Second, "fill the silence form", chromedp.Navigate(base+"/alerts"), chromedp.WaitVisible(chromedp.CSS(`#silence-form`)),
			chromedp.SendKeys(chromedp.CSS(`#silence-form input[name=host]`), "goliath"), chromedp.SendKeys(chromedp.CSS(`#silence-form input[name=rule]`), "smart.*"),
			chromedp.SendKeys(chromedp.CSS(`#silence-form input[name=comment]`), "replacing sdc"), chromedp.Submit(chromedp.CSS(`#silence-form`)),
			chromedp.WaitVisible(chromedp.CSS(`.flash`)))
		out, code := runPinkie(t, "silence", "ls", "--server", f.natsURL(), "--nkey", f.operator())
		if code != 0 || !strings.Contains(out, "replacing sdc") || !strings.Contains(out, "host=goliath rule=smart.*") {
			t.Fatalf("pinkie silence ls (exit %d) does not show the UI's silence:\n%s", code, out)
		}
		screenshot(t, ctx, shots, "alerts")
	})

	t.Run("bad input", func(t *testing.T) {
		cookies := loginCookies(t, hub)
		for _, c := range []struct {
			path   string
			status int
			says   string
		}{
			{"/hosts/nosuchhost", 404, "neither declared"},
			{"/hosts/bad.name", 400, "bad.name"},
			{"/?q=" + strings.Repeat("x", 5000), 414, "too long"},
			{"/?q=" + strings.Repeat("x", 100), 400, "q is too long"},
			{"/api/hosts/nosuchhost", 404, "not in the inventory"},
		} {
			status, body := get(t, base+c.path, cookies)
			if status != c.status || !strings.Contains(body, c.says) {
				t.Errorf("GET %s: %d %q, want %d saying %q", c.path[:min(len(c.path), 40)], status, body[:min(len(body), 300)], c.status, c.says)
			}
		}
		run(t, ctx, 30*time.Second, "unknown host page", chromedp.Navigate(base+"/hosts/nosuchhost"))
		msg := value(t, ctx, 10*time.Second, "error text", chromedp.Text(chromedp.CSS(`#error`)))
		if !strings.Contains(msg, "nosuchhost") {
			t.Errorf("the page says %q", msg)
		}
		if nixErr == nil {
			run(t, ctx, 30*time.Second, "malformed selector", chromedp.Navigate(base+"/deploys"), chromedp.WaitVisible(chromedp.CSS(`#deploy-form`)),
				chromedp.SendKeys(chromedp.CSS(`#selector`), "@web&&!"), chromedp.Submit(chromedp.CSS(`#deploy-form`)), chromedp.WaitVisible(chromedp.CSS(`#error`)))
			msg = value(t, ctx, 10*time.Second, "error text", chromedp.Text(chromedp.CSS(`#error`)))
			if !strings.Contains(msg, `selector "@web&&!" has an empty part`) {
				t.Errorf("a malformed selector says %q", msg)
			}
		}
		screenshot(t, ctx, shots, "error")
		if status, body := get(t, base+"/healthz", nil); status != 200 {
			t.Errorf("after bad input /healthz = %d %s", status, body)
		}
	})

	t.Run("deploy @web from the UI", func(t *testing.T) {
		if nixErr != nil {
			t.Skip("nix is not installed (scripts/test installs Debian's nix-bin)")
		}
		run(t, ctx, 60*time.Second, "plan", chromedp.Navigate(base+"/deploys"), chromedp.WaitVisible(chromedp.CSS(`#deploy-form`)),
			chromedp.SendKeys(chromedp.CSS(`#selector`), "@web"), chromedp.Submit(chromedp.CSS(`#deploy-form`)), chromedp.WaitVisible(chromedp.CSS(`#plan`)))
		plan := value(t, ctx, 10*time.Second, "read plan", chromedp.Text(chromedp.CSS(`#plan`)))
		if !strings.Contains(plan, "goliath") || !strings.Contains(plan, "koishi") {
			t.Fatalf("plan for @web: %q", plan)
		}
		screenshot(t, ctx, shots, "deploy-plan")
		run(t, ctx, 120*time.Second, "deploy and watch it finish", chromedp.Click(chromedp.CSS(`#confirm-deploy`)),
			chromedp.WaitVisible(chromedp.CSS(`#deploy-rows tr[data-host="goliath"][data-outcome="succeeded"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#deploy-rows tr[data-host="koishi"][data-outcome="succeeded"]`)))
		screenshot(t, ctx, shots, "deploys")
		for _, h := range []string{"goliath", "koishi"} {
			if p, err := filepath.EvalSymlinks(profiles[h]); err != nil || !strings.HasPrefix(p, "/nix/store/") {
				t.Errorf("%s system profile: %q %v", h, p, err)
			}
		}
	})
	t.Run("overview after the deploy, light and dark, desktop and phone", func(t *testing.T) {
		run(t, ctx, 30*time.Second, "overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`.card[data-host="goliath"]`)))
		screenshot(t, ctx, shots, "overview")
		dark := emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, dark); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, shots, "overview-dark")
		phone := emulation.SetDeviceMetricsOverrideParams{Width: 390, Height: 844, DeviceScaleFactor: 2, Mobile: true}
		if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, phone); err != nil {
			t.Fatal(err)
		}
		run(t, ctx, 30*time.Second, "host on a phone", chromedp.Navigate(base+"/hosts/goliath"), chromedp.WaitVisible(chromedp.CSS(`#smart`)))
		width := value(t, ctx, 5*time.Second, "page width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		if width > 390 {
			wide := value(t, ctx, 5*time.Second, "widest", chromedp.Evaluate[string](`[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 391 && !e.closest(".scroll")).slice(0, 5).map(e => e.tagName + "." + e.className).join(", ")`))
			t.Errorf("on a 390 px phone the host page is %d px wide (it scrolls sideways): %s", width, wide)
		}
		screenshot(t, ctx, shots, "host-dark-phone")
	})
	if d := os.Getenv("PINKIE_SCREENSHOTS"); d != "" {
		t.Logf("screenshots in %s", d)
	}
}

// loginCookies signs in with the hub's current one-time link outside the
// browser (the hub prints a new link after each use).
func loginCookies(t *testing.T, hub *proc) []*http.Cookie {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(localLink(t, hub))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.Cookies()) == 0 {
		t.Fatalf("local login: %s, no cookie", resp.Status)
	}
	return resp.Cookies()
}

func get(t *testing.T, url string, cookies []*http.Cookie) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// declareFleet publishes a fleet declaration (as pinkie fleet sync does).
func declareFleet(t *testing.T, f *fleet, tags map[string][]string) {
	t.Helper()
	d := events.FleetDeclared{Flake: "path:/test-fleet"}
	for _, h := range []string{"goliath", "koishi", "tower"} {
		if tg, ok := tags[h]; ok {
			d.Hosts = append(d.Hosts, events.DeclaredHost{Name: h, Deployment: events.DeclaredDeployment{Tags: tg, Goal: "switch", HealthChecks: []string{}},
				Roles: []string{"agent"}, Services: []string{}, Domains: []events.DeclaredDomain{}})
		}
	}
	publishDeclared(t, f, d)
}

// publishDeclared publishes a fleet declaration at the hub.
func publishDeclared(t *testing.T, f *fleet, d events.FleetDeclared) {
	t.Helper()
	k, _ := events.Lookup("fleet.declared")
	ev, err := events.New(k, "test", "fleet", time.Now(), &d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client().Publish(context.Background(), k.HubSubject(&d), ev); err != nil {
		t.Fatal(err)
	}
}
