package dashboard

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
)

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func quietLog() *slog.Logger         { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func key(b byte) []byte              { return []byte(strings.Repeat(string(rune('a'+b)), 32)) }

type testServer struct {
	*Server
	store *memStore
	clock *clock
	links []string
	mu    sync.Mutex
}

func (ts *testServer) link() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.links[len(ts.links)-1]
}

func newTestServer(t *testing.T, loopbackReaders bool, hosts int) *testServer {
	t.Helper()
	ts := &testServer{store: newMemStore(), clock: &clock{t: testNow}}
	synthFleet(t, ts.store, hosts, 1, 30, testNow)
	auth, err := NewAuth(AuthOptions{SessionKey: key(0), LoopbackReaders: loopbackReaders, Log: quietLog(), Now: ts.clock.now,
		LocalLink: func(p string) { ts.mu.Lock(); ts.links = append(ts.links, p); ts.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	auth.IssueLocalLink()
	s, err := New(Options{Store: ts.store, Auth: auth, Log: quietLog(), Now: ts.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = s
	return ts
}

// do serves one request from remote (default a non-loopback address).
func (ts *testServer) do(method, target string, body io.Reader, hdr map[string]string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, body)
	r.RemoteAddr = "192.0.2.7:5555"
	for k, v := range hdr {
		if k == "RemoteAddr" {
			r.RemoteAddr = v
			continue
		}
		r.Header.Set(k, v)
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	ts.ServeHTTP(w, r)
	return w
}

// session signs in with a crafted session of role (as the OIDC callback
// would) and returns its cookie and CSRF token.
func (ts *testServer) session(t *testing.T, role string) (*http.Cookie, string) {
	t.Helper()
	w := httptest.NewRecorder()
	ts.o.Auth.startSession(w, "u-"+role, role+"-user", role)
	c := w.Result().Cookies()[0]
	p, err := ts.o.Auth.verify(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	var s Session
	_ = json.Unmarshal(p, &s)
	return c, s.CSRF
}

func TestLocalLoginWorksOnce(t *testing.T) {
	ts := newTestServer(t, false, 2)
	first := ts.link()
	w := ts.do("GET", first, nil, nil)
	if w.Code != http.StatusSeeOther || len(w.Result().Cookies()) == 0 {
		t.Fatalf("local login: %d, cookies %v", w.Code, w.Result().Cookies())
	}
	c := w.Result().Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax", c)
	}
	if w := ts.do("GET", "/api/me", nil, nil, c); w.Code != 200 || !strings.Contains(w.Body.String(), `"role": "operator"`) {
		t.Errorf("/api/me: %d %s", w.Code, w.Body)
	}
	if w := ts.do("GET", first, nil, nil); w.Code != http.StatusForbidden {
		t.Errorf("second use of the link: %d, want 403", w.Code)
	}
	if ts.link() == first {
		t.Fatal("no new link after the first was used")
	}
	ts.clock.add(localLinkTTL + time.Minute)
	if w := ts.do("GET", ts.link(), nil, nil); w.Code != http.StatusForbidden {
		t.Errorf("expired link: %d, want 403", w.Code)
	}
}

func TestSessionsForgedOrExpiredAreRefused(t *testing.T) {
	ts := newTestServer(t, false, 2)
	reader, _ := ts.session(t, roleReader)
	payload, sig, _ := strings.Cut(reader.Value, ".")
	raw, _ := ts.o.Auth.verify(reader.Value)
	promoted := strings.Replace(string(raw), `"role":"reader"`, `"role":"operator"`, 1)
	other, _ := NewAuth(AuthOptions{SessionKey: key(1), Log: quietLog(), Now: ts.clock.now})
	for _, tc := range []struct {
		name  string
		value string
	}{
		{"promoted role, old signature", base64.RawURLEncoding.EncodeToString([]byte(promoted)) + "." + sig},
		{"signed with another key", other.sign(raw)},
		{"no signature", payload},
		{"garbage", "x.y.z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Cookie{Name: sessionCookie, Value: tc.value}
			if w := ts.do("GET", "/api/me", nil, nil, c); w.Code != http.StatusUnauthorized {
				t.Errorf("/api/me: %d %s, want 401", w.Code, w.Body)
			}
			if w := ts.do("GET", "/alerts", nil, nil, c); w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/login") {
				t.Errorf("/alerts: %d → %q, want a redirect to /login", w.Code, w.Header().Get("Location"))
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		if w := ts.do("GET", "/api/me", nil, nil, reader); w.Code != 200 {
			t.Fatalf("fresh session: %d", w.Code)
		}
		ts.clock.add(13 * time.Hour)
		if w := ts.do("GET", "/api/me", nil, nil, reader); w.Code != http.StatusUnauthorized {
			t.Errorf("expired session: %d, want 401", w.Code)
		}
	})
}

func TestStateChangesNeedOperatorAndCSRF(t *testing.T) {
	ts := newTestServer(t, true, 2)
	op, opTok := ts.session(t, roleOperator)
	rd, rdTok := ts.session(t, roleReader)
	body := `{"matchers":{"host":"host0001"},"for":"2h","comment":"test"}`
	json := map[string]string{"Content-Type": "application/json"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	cases := []struct {
		name   string
		hdr    map[string]string
		cookie *http.Cookie
		want   int
	}{
		{"operator without token", json, op, 403},
		{"operator with another session's token", with(json, "X-CSRF-Token", rdTok), op, 403},
		{"operator, cross-origin", with(with(json, "X-CSRF-Token", opTok), "Origin", "https://evil.example"), op, 403},
		{"reader with its token", with(json, "X-CSRF-Token", rdTok), rd, 403},
		{"loopback reader without a session", with(json, "RemoteAddr", "127.0.0.1:4000"), nil, 403},
		{"nobody", json, nil, 401},
		{"operator with token", with(with(json, "X-CSRF-Token", opTok), "Origin", "http://example.com"), op, 201},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cs []*http.Cookie
			if tc.cookie != nil {
				cs = append(cs, tc.cookie)
			}
			before := len(ts.store.published)
			w := ts.do("POST", "/api/silences", strings.NewReader(body), tc.hdr, cs...)
			if w.Code != tc.want {
				t.Fatalf("POST /api/silences: %d %s, want %d", w.Code, w.Body, tc.want)
			}
			published := len(ts.store.published) - before
			if (tc.want == 201) != (published == 1) {
				t.Errorf("%d events published", published)
			}
		})
	}
	// The form needs the token too.
	form := url.Values{"host": {"host0001"}, "for": {"1h"}}
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	if w := ts.do("POST", "/alerts/silences", strings.NewReader(form.Encode()), hdr, op); w.Code != 403 {
		t.Errorf("form without token: %d", w.Code)
	}
	form.Set("csrf", opTok)
	if w := ts.do("POST", "/alerts/silences", strings.NewReader(form.Encode()), hdr, op); w.Code != http.StatusSeeOther {
		t.Errorf("form with token: %d %s", w.Code, w.Body)
	}
	last := ts.store.published[len(ts.store.published)-1]
	if !strings.HasPrefix(last.Subject, "pinkie.silence.added.") || !strings.Contains(string(last.Event.Data()), "operator-user (dashboard)") {
		t.Errorf("published %s %s", last.Subject, last.Event.Data())
	}
	// Loopback readers read without signing in; others are sent to log in.
	if w := ts.do("GET", "/api/overview", nil, map[string]string{"RemoteAddr": "127.0.0.1:4000"}); w.Code != 200 {
		t.Errorf("loopback read: %d", w.Code)
	}
	if w := ts.do("GET", "/api/overview", nil, nil); w.Code != 401 {
		t.Errorf("remote read without session: %d", w.Code)
	}
}

func TestBadInputIsA4xxWithAMessage(t *testing.T) {
	ts := newTestServer(t, false, 3)
	op, tok := ts.session(t, roleOperator)
	post := map[string]string{"Content-Type": "application/json", "X-CSRF-Token": tok}
	for _, tc := range []struct {
		method, target, body string
		want                 int
		says                 string
	}{
		{"GET", "/hosts/nosuch", "", 404, "neither declared"},
		{"GET", "/hosts/bad.host", "", 400, "bad.host"},
		{"GET", "/api/hosts/nosuch", "", 404, "not in the inventory"},
		{"GET", "/?q=" + strings.Repeat("a", 5000), "", 414, "too long"},
		{"GET", "/?tag=" + strings.Repeat("a", 100), "", 400, "tag is too long"},
		{"POST", "/api/silences", `{"matchers":{},"for":"2h"}`, 400, "at least one matcher"},
		{"POST", "/api/silences", `{"matchers":{"host":"[x"},"for":"2h"}`, 400, "bad pattern"},
		{"POST", "/api/silences", `{"matchers":{"host":"a"},"for":"-1h"}`, 400, "positive duration"},
		{"POST", "/api/silences", `{"matchers":{"host":"a"},"for":"100d"}`, 400, "90 days"},
		{"POST", "/api/silences", `{"bogus":1}`, 400, "not valid JSON"},
		{"POST", "/api/silences", `{"matchers":{"host":"` + strings.Repeat("a", 70<<10) + `"}}`, 413, "too large"},
		{"DELETE", "/api/silences/nosuch", "", 404, "no silence"},
		{"DELETE", "/api/silences/bad$id", "", 400, "not a silence id"},
		{"POST", "/api/deploys/plan", `{"selector":"@web; rm -rf /"}`, 400, "unexpected character"},
		{"POST", "/api/deploys/plan", `{"selector":"@web","goal":"explode"}`, 400, "goal"},
		{"POST", "/api/deploys/plan", `{"selector":"@web"}`, 501, "not configured"},
	} {
		t.Run(tc.method+" "+tc.target[:min(len(tc.target), 30)]+" "+tc.body[:min(len(tc.body), 30)], func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			w := ts.do(tc.method, tc.target, body, post, op)
			if w.Code != tc.want || !strings.Contains(w.Body.String(), tc.says) {
				t.Errorf("%d %s, want %d saying %q", w.Code, w.Body.String()[:min(w.Body.Len(), 300)], tc.want, tc.says)
			}
		})
	}
}

func TestAPIUsesTheCLIShapes(t *testing.T) {
	ts := newTestServer(t, false, 3)
	op, _ := ts.session(t, roleOperator)
	w := ts.do("GET", "/api/hosts/host0001", nil, nil, op)
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var got fleetview.HostView
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("/api/hosts/host0001 is not a fleetview.HostView (pinkie hosts HOST --json): %v", err)
	}
	inv, _ := ts.store.Bucket(context.Background(), events.BucketInventory, "host0001")
	hosts, _ := fleetview.Hosts(inv)
	drec, _ := ts.store.Bucket(context.Background(), events.BucketDrives, "host0001.")
	drives, _ := fleetview.Drives(drec)
	want := fleetview.HostView{Host: hosts[0], Drives: drives}
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	var wv, gv any
	_ = json.Unmarshal(wb, &wv)
	_ = json.Unmarshal(gb, &gv)
	if d := cmp.Diff(wv, gv); d != "" {
		t.Errorf("/api/hosts/host0001 (-want +got):\n%s", d)
	}
	w = ts.do("GET", "/api/alerts", nil, nil, op)
	var alerts []map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &alerts); err != nil || len(alerts) != 1 || alerts[0]["host"] != "host0000" {
		t.Errorf("/api/alerts: %v %s", err, w.Body)
	}
}

func TestPagesRender(t *testing.T) {
	ts := newTestServer(t, false, 40)
	op, _ := ts.session(t, roleOperator)
	for _, tc := range []struct {
		path string
		says []string
	}{
		{"/", []string{`data-host="host0039"`, "40 of 40 hosts", "10 critical"[:0] + "critical", `data-topics="host:* alerts deploys fleet"`}},
		{"/?tag=eu", []string{"20 of 40 hosts"}},
		{"/hosts/host0000", []string{"<polyline", "predicted full", "Filesystem /srv", "PostgreSQL database sizes", "Drive temperatures", "Reallocated_Sector_Ct",
			"pinkie shell sessions", "systemctl status nginx", "exit 3", "UOPERATORKEY"}},
		{"/alerts", []string{"host0000: drive /dev/sdb is failing", `name="csrf"`}},
		{"/deploys", []string{"No deploys yet"}},
	} {
		w := ts.do("GET", tc.path, nil, nil, op)
		if w.Code != 200 {
			t.Errorf("GET %s: %d %s", tc.path, w.Code, w.Body)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(w.Body.String(), s) {
				t.Errorf("GET %s does not say %q", tc.path, s)
			}
		}
		if strings.Contains(w.Body.String(), string(key(0))) {
			t.Errorf("GET %s renders the session key", tc.path)
		}
	}
}

func TestTopicOf(t *testing.T) {
	for subject, want := range map[string]string{
		"$KV.pinkie-inventory.goliath":            "host:goliath",
		"$KV.pinkie-drives.goliath.smart.dev_sdc": "host:goliath",
		"$KV.pinkie-inventory._checkpoint":        "",
		"$KV.pinkie-alerts.silence.abc":           "alerts",
		"$KV.pinkie-last-deploy.goliath":          "deploys",
		"pinkie.deploy.goliath.activated":         "deploys",
		"pinkie.fleet.declared":                   "fleet",
		"pinkie.host.goliath.heartbeat":           "",
		"$KV.pinkie-guests.goliath.web":           "guests",
		"$KV.pinkie-guests._checkpoint":           "",
	} {
		if got := topicOf(subject); got != want {
			t.Errorf("topicOf(%q) = %q, want %q", subject, got, want)
		}
	}
}

func TestEventsStream(t *testing.T) {
	ts := newTestServer(t, true, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ts.Run(ctx)
	srv := httptest.NewServer(ts)
	defer srv.Close()
	defer ts.CloseStreams()
	resp, err := http.Get(srv.URL + "/events") // loopback reader
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	seen := map[string]bool{}
	published := false
	for lines.Scan() {
		l := lines.Text()
		if strings.HasPrefix(l, "event: hello") && !published {
			// Watchers register asynchronously; publish until one hears.
			go func() {
				for i := 0; i < 100 && ctx.Err() == nil; i++ {
					for _, w := range ts.store.watchersSnapshot() {
						w("$KV.pinkie-alerts.silence.x")
						w("$KV.pinkie-inventory.goliath")
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			published = true
		}
		if d, ok := strings.CutPrefix(l, "data: "); ok {
			seen[d] = true
		}
		if seen["alerts"] && seen["host:goliath"] {
			return
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Fatalf("stream ended with %v", keys)
}

func TestFitPredictsFill(t *testing.T) {
	var pts []point
	for i := range 10 {
		pts = append(pts, point{testNow.Add(time.Duration(i-9) * 30 * time.Minute), float64(50 + i)}) // +2/h
	}
	slope, last, ok := fit(pts)
	if !ok || last < 58.99 || last > 59.01 || slope*3600 < 1.99 || slope*3600 > 2.01 {
		t.Fatalf("fit = %v/h, %v, %v; want 2/h ending at 59", slope*3600, last, ok)
	}
	p := newPlot("t", "bytes", testNow, testNow.Add(-6*time.Hour), []*series{{Name: "x", Points: pts, Limit: 100}}, true)
	if p.FullAt == nil || p.FullAt.Sub(testNow).Round(time.Minute) != 20*time.Hour+30*time.Minute {
		t.Errorf("predicted full at %v, want in 20h30m", p.FullAt)
	}
	if got := len(downsample(make([]point, 1000), 10)); got > 10 {
		t.Errorf("downsample to 10 kept %d", got)
	}
}

func TestSilenceExtendAndExpireForms(t *testing.T) {
	ts := newTestServer(t, false, 1)
	op, tok := ts.session(t, roleOperator)
	old := projections.ActiveSilence{SilenceAdded: events.SilenceAdded{ID: "abc123", Matchers: map[string]string{"host": "host0000"},
		StartsAt: testNow.Add(-time.Hour), EndsAt: testNow.Add(time.Hour), Comment: "disk swap"}}
	b, _ := json.Marshal(old)
	ts.store.put(events.BucketAlerts, projections.SilenceKey("abc123"), b)
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	form := url.Values{"csrf": {tok}, "for": {"1d"}}
	if w := ts.do("POST", "/alerts/silences/abc123/extend", strings.NewReader(form.Encode()), hdr, op); w.Code != http.StatusSeeOther {
		t.Fatalf("extend: %d %s", w.Code, w.Body)
	}
	pub := ts.store.published
	if len(pub) != 2 || !strings.HasPrefix(pub[0].Subject, "pinkie.silence.added.") || pub[1].Subject != "pinkie.silence.removed.abc123" {
		t.Fatalf("extend published %v, want a new silence, then the old one removed", subjects(pub))
	}
	var added events.SilenceAdded
	if err := pub[0].Event.DataAs(&added); err != nil || added.Comment != "disk swap" || !added.EndsAt.Equal(testNow.Add(24*time.Hour)) || added.Matchers["host"] != "host0000" {
		t.Errorf("the replacement silence: %+v %v", added, err)
	}
	if w := ts.do("POST", "/alerts/silences/abc123/expire", strings.NewReader(url.Values{"csrf": {tok}}.Encode()), hdr, op); w.Code != http.StatusSeeOther {
		t.Fatalf("expire: %d %s", w.Code, w.Body)
	}
	if got := ts.store.published[2].Subject; got != "pinkie.silence.removed.abc123" {
		t.Errorf("expire published %s", got)
	}
	if w := ts.do("POST", "/alerts/silences/nosuch/expire", strings.NewReader(url.Values{"csrf": {tok}}.Encode()), hdr, op); w.Code != 404 || !strings.Contains(w.Body.String(), "no silence nosuch") {
		t.Errorf("expire an unknown silence: %d", w.Code)
	}
}

func subjects(ss []Stored) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.Subject)
	}
	return out
}

func TestOverviewCountsOnlyUnsilencedAlerts(t *testing.T) {
	ts := newTestServer(t, false, 20)
	s := projections.ActiveSilence{SilenceAdded: events.SilenceAdded{ID: "s", Matchers: map[string]string{"host": "host0010"},
		StartsAt: testNow.Add(-time.Hour), EndsAt: testNow.Add(time.Hour)}}
	b, _ := json.Marshal(s)
	ts.store.put(events.BucketAlerts, projections.SilenceKey("s"), b)
	op, _ := ts.session(t, roleOperator)
	var ov Overview
	if err := json.Unmarshal(ts.do("GET", "/api/overview", nil, nil, op).Body.Bytes(), &ov); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, h := range ov.Hosts {
		got[h.Host] = h.Alerts["critical"]
	}
	if got["host0000"] != 1 || got["host0010"] != 0 {
		t.Errorf("critical alerts: host0000 %d (want 1), host0010 %d (want 0: silenced)", got["host0000"], got["host0010"])
	}
	page := ts.do("GET", "/hosts/host0010", nil, nil, op).Body.String()
	if !strings.Contains(page, "· silenced") {
		t.Error("the host page does not mark host0010's alert silenced")
	}
}

func TestSeriesAPI(t *testing.T) {
	ts := newTestServer(t, false, 1)
	op, _ := ts.session(t, roleOperator)
	w := ts.do("GET", "/api/hosts/host0000/series", nil, nil, op)
	var plots []struct {
		Title  string     `json:"title"`
		Unit   string     `json:"unit"`
		FullAt *time.Time `json:"predicted_full_at"`
		Series []struct {
			Name   string       `json:"name"`
			Limit  float64      `json:"limit"`
			Points [][2]float64 `json:"points"`
		} `json:"series"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &plots); err != nil || len(plots) == 0 {
		t.Fatalf("%d %v %s", w.Code, err, w.Body.String()[:min(w.Body.Len(), 200)])
	}
	fs := plots[0]
	if fs.Title != "Filesystem /" || fs.Unit != "bytes" || fs.FullAt == nil || len(fs.Series) != 1 || fs.Series[0].Limit != 500<<30 {
		t.Errorf("first plot: %s %s full %v, %d series", fs.Title, fs.Unit, fs.FullAt, len(fs.Series))
	}
	if n := len(fs.Series[0].Points); n < 100 || n > maxPlotPoints {
		t.Errorf("%d points, want 30 days downsampled to at most %d", n, maxPlotPoints)
	}
}
