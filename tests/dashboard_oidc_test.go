package tests

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// groupsStorage is zitadel's example OpenID provider storage plus a
// "groups" claim, as Authentik sends it (in the ID token and userinfo).
type groupsStorage struct {
	*storage.Storage
	mu     *sync.Mutex
	groups map[string][]string // by user id
}

func (s groupsStorage) groupsOf(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groups[id]
}

func (s groupsStorage) setGroups(id string, g []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = g
}

func (s groupsStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	ui.AppendClaims("groups", s.groupsOf(req.GetSubject()))
	return nil
}

func (s groupsStorage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	ui.AppendClaims("groups", s.groupsOf(ui.Subject))
	return nil
}

// startProvider runs zitadel/oidc's example OpenID provider in the test
// process; redirect is the dashboard's callback it accepts.
func startProvider(t *testing.T, redirect string) (issuer string, st groupsStorage) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer = fmt.Sprintf("http://%s/", ln.Addr())
	storage.RegisterClients(storage.WebClient("pinkie", "s3cret-client", redirect))
	st = groupsStorage{Storage: storage.NewStorage(storage.NewUserStore(issuer)), mu: &sync.Mutex{},
		groups: map[string][]string{"id1": {"pinkie-operators"}, "id2": {"pinkie-readers", "staff"}}}
	srv := &http.Server{Handler: exampleop.SetupServer(issuer, st, nil, false), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return issuer, st
}

// oidcHubConfig writes a hub config whose dashboard signs in at issuer
// (startProvider's client), group pinkie-operators as operators and
// pinkie-readers as readers; extra goes into the dashboard section.
func oidcHubConfig(t *testing.T, base, issuer, extra string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "secret"), "s3cret-client\n")
	cfg := filepath.Join(dir, "hub.json")
	writeFile(t, cfg, fmt.Sprintf(`{"dashboard": {"public_url": %q, %s"oidc": {
		"issuer": %q, "client_id": "pinkie", "client_secret_file": %q,
		"operator_groups": ["pinkie-operators"], "reader_groups": ["pinkie-readers"]}}}`, base, extra, issuer, filepath.Join(dir, "secret")))
	return cfg
}

var providerFormID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// oidcLogin signs in at the dashboard through the provider's login form, as
// a browser does (following redirects, keeping cookies), and returns the
// client holding the session.
func oidcLogin(t *testing.T, base, user, password string) (*http.Client, int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	resp, err := c.Get(base + "/login/oidc?next=/alerts")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := providerFormID.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no login form at the provider (%s):\n%s", resp.Request.URL, page)
	}
	form := url.Values{"id": {string(m[1])}, "username": {user}, "password": {password}}
	resp, err = c.PostForm(resp.Request.URL.Scheme+"://"+resp.Request.URL.Host+"/login/username", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return c, resp.StatusCode, resp.Request.URL.Path + "\n" + string(body)
}

// TestDashboardOIDC signs in through a real OpenID provider: an operator
// may create a silence, a reader may look but gets 403 on creating one,
// a forged or expired session and a request without the CSRF token are
// refused.
func TestDashboardOIDC(t *testing.T) {
	f := newFleet(t, "goliath")
	base := f.httpURL()
	issuer, provider := startProvider(t, base+"/auth/callback")
	cfg := oidcHubConfig(t, base, issuer, `"session_ttl": "3s", `)
	hub := f.startHub("--config", cfg)
	if strings.Contains(hub.out.String(), "sign in as the local admin") {
		t.Error("with an identity provider the hub still prints a local login link")
	}

	op, status, landed := oidcLogin(t, base, "test-user@127.0.0.1", "verysecure")
	if status != 200 || !strings.HasPrefix(landed, "/alerts") || !strings.Contains(landed, "test-user@127.0.0.1 · operator") {
		t.Fatalf("operator login ended at %d %s", status, landed[strings.Index(landed, "class=\"who\""):][:300])
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(landed)
	if csrf == nil {
		t.Fatal("no CSRF token on the alerts page")
	}
	silence := func(c *http.Client, token string) (int, string) {
		req, _ := http.NewRequest("POST", base+"/api/silences", strings.NewReader(`{"matchers":{"host":"goliath"},"for":"1h","comment":"oidc"}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("X-CSRF-Token", token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := silence(op, ""); code != 403 || !strings.Contains(body, "CSRF") {
		t.Errorf("operator without CSRF token: %d %s, want 403", code, body)
	}
	if code, body := silence(op, csrf[1]); code != 201 {
		t.Errorf("operator with token: %d %s, want 201", code, body)
	}
	if out, _ := runPinkie(t, "silence", "ls", "--server", f.natsURL(), "--nkey", f.operator()); !strings.Contains(out, "test-user@127.0.0.1 (dashboard)") {
		t.Errorf("silence ls does not show the operator's silence:\n%s", out)
	}

	reader, status, landed := oidcLogin(t, base, "test-user2", "verysecure")
	if status != 200 || !strings.Contains(landed, "test-user2 · reader") {
		t.Fatalf("reader login ended at %d %s", status, landed[:min(len(landed), 400)])
	}
	rtoken := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(landed)
	if rtoken == nil {
		t.Fatal("no CSRF token for the reader (sign out form)")
	}
	if code, body := silence(reader, rtoken[1]); code != 403 || !strings.Contains(body, "only operators") {
		t.Errorf("reader creating a silence: %d %s, want 403", code, body)
	}
	if strings.Contains(landed, `id="silence-form"`) {
		t.Error("the reader is offered the silence form")
	}

	// A forged session: the reader's cookie with the role rewritten.
	u, _ := url.Parse(base)
	var cookie *http.Cookie
	for _, c := range reader.Jar.Cookies(u) {
		if c.Name == "pinkie_session" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("no session cookie")
	}
	forged := forgeRole(t, cookie.Value)
	req, _ := http.NewRequest("GET", base+"/api/me", nil)
	req.AddCookie(&http.Cookie{Name: "pinkie_session", Value: forged})
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("forged session: %v %v, want 401", resp.Status, err)
	}
	if strings.Contains(hub.out.String(), "s3cret-client") || strings.Contains(hub.out.String(), cookie.Value) {
		t.Error("the hub logged the client secret or a session")
	}
	// A user in no mapped group is refused, and told why.
	provider.setGroups("id2", []string{"staff"})
	if _, status, landed := oidcLogin(t, base, "test-user2", "verysecure"); status != 403 || !strings.Contains(landed, "in no group with access") {
		t.Errorf("a user in no mapped group: %d %s", status, landed[:min(len(landed), 300)])
	}
	// Expired: session_ttl is 3s.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := reader.Get(base + "/api/me")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session still works after its 3s lifetime: %s", resp.Status)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// forgeRole rewrites a session cookie's role to operator, keeping the
// original signature.
func forgeRole(t *testing.T, v string) string {
	t.Helper()
	p, sig, ok := strings.Cut(v, ".")
	if !ok {
		t.Fatalf("session cookie %q has no signature", v)
	}
	raw, err := base64RawURL(p)
	if err != nil {
		t.Fatal(err)
	}
	return base64RawURLEncode(strings.Replace(raw, `"role":"reader"`, `"role":"operator"`, 1)) + "." + sig
}

func base64RawURL(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return string(b), err
}

func base64RawURLEncode(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
