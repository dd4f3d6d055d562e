package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Roles. An operator may silence alerts and start deploys; a reader may
// only look.
const (
	roleReader   = "reader"
	roleOperator = "operator"
)

const (
	sessionCookie = "pinkie_session"
	loginCookie   = "pinkie_login" // OIDC state, nonce and PKCE verifier
)

// Session is a signed-in user, carried in a signed cookie.
type Session struct {
	Subject string `json:"sub"`
	Name    string `json:"name"`
	Role    string `json:"role"`
	// CSRF is the token every state-changing request must echo.
	CSRF    string `json:"csrf"`
	Expires int64  `json:"exp"`
	// Anonymous marks loopback reader access without a login.
	Anonymous bool `json:"-"`
}

// CanOperate reports whether the session may act.
func (s *Session) CanOperate() bool { return s != nil && s.Role == roleOperator }

// OIDCOptions configure login with an OpenID Connect provider.
type OIDCOptions struct {
	Issuer, ClientID, ClientSecret string
	// RedirectURL is the callback registered at the provider:
	// <public URL>/auth/callback.
	RedirectURL string
	Scopes      []string
	// GroupsClaim names the ID token (or userinfo) claim listing the
	// user's groups (default "groups").
	GroupsClaim    string
	OperatorGroups []string
	ReaderGroups   []string
}

// AuthOptions configure sign-in and sessions.
type AuthOptions struct {
	// SessionKey signs session cookies (at least 32 bytes).
	SessionKey []byte
	SessionTTL time.Duration
	// SecureCookies sets the Secure flag (the dashboard is served over
	// HTTPS, e.g. behind a proxy).
	SecureCookies bool
	// LoopbackReaders lets requests from loopback read without a login.
	LoopbackReaders bool
	// OIDC, when set, is the identity provider.
	OIDC *OIDCOptions
	// LocalLink, when set (no identity provider), is told each new
	// one-time login path for the local admin (/login/local?token=…).
	LocalLink func(path string)
	Log       *slog.Logger
	Now       func() time.Time
}

// Auth signs users in and checks every request's session, role and CSRF
// token.
type Auth struct {
	o AuthOptions

	mu         sync.Mutex
	localToken []byte // sha256 of the current one-time token
	localUntil time.Time
	provider   *oidc.Provider
}

// localLinkTTL is how long a one-time local login link is valid.
const localLinkTTL = time.Hour

// NewAuth checks the options.
func NewAuth(o AuthOptions) (*Auth, error) {
	if len(o.SessionKey) < 32 {
		return nil, errors.New("dashboard: the session key must be at least 32 bytes")
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OIDC != nil {
		oc := o.OIDC
		if oc.Issuer == "" || oc.ClientID == "" || oc.RedirectURL == "" {
			return nil, errors.New("dashboard: oidc needs issuer, client_id and the dashboard's public_url")
		}
		if oc.GroupsClaim == "" {
			oc.GroupsClaim = "groups"
		}
		if len(oc.Scopes) == 0 {
			oc.Scopes = []string{oidc.ScopeOpenID, "profile", "email"}
		}
		if !slices.Contains(oc.Scopes, oidc.ScopeOpenID) {
			oc.Scopes = append([]string{oidc.ScopeOpenID}, oc.Scopes...)
		}
	}
	return &Auth{o: o}, nil
}

// IssueLocalLink makes the first one-time local login link (without an
// identity provider; later ones follow each use) and tells LocalLink.
func (a *Auth) IssueLocalLink() {
	if a.o.OIDC == nil {
		a.newLocalLink()
	}
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newLocalLink replaces the one-time local login token and announces it.
func (a *Auth) newLocalLink() {
	tok := randomToken(24)
	sum := sha256.Sum256([]byte(tok))
	a.mu.Lock()
	a.localToken, a.localUntil = sum[:], a.o.Now().Add(localLinkTTL)
	a.mu.Unlock()
	if a.o.LocalLink != nil {
		a.o.LocalLink("/login/local?token=" + tok)
	}
}

// useLocalToken consumes the one-time token if tok is it.
func (a *Auth) useLocalToken(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.localToken == nil || a.o.Now().After(a.localUntil) || subtle.ConstantTimeCompare(sum[:], a.localToken) != 1 {
		return false
	}
	a.localToken = nil
	return true
}

func (a *Auth) sign(payload []byte) string {
	m := hmac.New(sha256.New, a.o.SessionKey)
	m.Write(payload)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verify returns the payload of a value made by sign, or an error if it was
// altered.
func (a *Auth) verify(v string) ([]byte, error) {
	p64, s64, ok := strings.Cut(v, ".")
	if !ok {
		return nil, errors.New("malformed")
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	sig, err2 := base64.RawURLEncoding.DecodeString(s64)
	if err1 != nil || err2 != nil {
		return nil, errors.New("malformed")
	}
	m := hmac.New(sha256.New, a.o.SessionKey)
	m.Write(payload)
	if !hmac.Equal(sig, m.Sum(nil)) {
		return nil, errors.New("bad signature")
	}
	return payload, nil
}

func (a *Auth) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: a.o.SecureCookies,
		SameSite: http.SameSiteLaxMode, MaxAge: int(maxAge.Seconds())})
}

func (a *Auth) startSession(w http.ResponseWriter, sub, name, role string) {
	s := Session{Subject: sub, Name: name, Role: role, CSRF: randomToken(24), Expires: a.o.Now().Add(a.o.SessionTTL).Unix()}
	b, _ := json.Marshal(s)
	a.setCookie(w, sessionCookie, a.sign(b), a.o.SessionTTL)
	a.o.Log.Info("dashboard login", "user", name, "role", role)
}

// session reads the request's session; nil when there is none or it is
// forged or expired.
func (a *Auth) session(r *http.Request) *Session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	payload, err := a.verify(c.Value)
	if err != nil {
		a.o.Log.Warn("dashboard: session cookie refused", "err", err, "remote", r.RemoteAddr)
		return nil
	}
	var s Session
	if err := json.Unmarshal(payload, &s); err != nil || s.Role == "" {
		return nil
	}
	if a.o.Now().Unix() >= s.Expires {
		return nil
	}
	return &s
}

func isLoopbackAddr(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, sess *Session) error

// require wraps h: a session with at least role, and for state-changing
// requests a matching CSRF token and a same-origin Origin header.
func (srv *Server) require(role string, h handlerFunc) http.Handler {
	a := srv.o.Auth
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess := a.session(r)
		if sess == nil && a.o.LoopbackReaders && isLoopbackAddr(r.RemoteAddr) {
			sess = &Session{Subject: "loopback", Name: "loopback reader", Role: roleReader, Anonymous: true}
		}
		if sess == nil {
			if wantsHTML(r) && r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			srv.fail(w, r, httpError{http.StatusUnauthorized, "sign in first (your session is missing, expired or not valid)"})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := checkCSRF(r, sess); err != nil {
				a.o.Log.Warn("dashboard: request refused", "err", err, "user", sess.Name, "path", r.URL.Path)
				srv.fail(w, r, httpError{http.StatusForbidden, err.Error()})
				return
			}
		}
		if role == roleOperator && !sess.CanOperate() {
			srv.fail(w, r, httpError{http.StatusForbidden, fmt.Sprintf("%s is a %s: only operators may do this", sess.Name, sess.Role)})
			return
		}
		if err := h(w, r, sess); err != nil {
			srv.fail(w, r, err)
		}
	})
}

// checkCSRF accepts a state-changing request only with the session's
// token (form field csrf or header X-CSRF-Token) and, when the browser
// sends one, an Origin of this very host.
func checkCSRF(r *http.Request, sess *Session) error {
	if sess.Anonymous {
		return errors.New("sign in to change anything")
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("cross-origin request from %q refused", o)
		}
	}
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" && isForm(r) {
		tok = r.PostFormValue("csrf")
	}
	if tok == "" {
		return errors.New("missing CSRF token: reload the page and try again")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(sess.CSRF)) != 1 {
		return errors.New("CSRF token does not match this session: reload the page and try again")
	}
	return nil
}

func isForm(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/x-www-form-urlencoded") || strings.HasPrefix(ct, "multipart/form-data")
}

func wantsHTML(r *http.Request) bool {
	return !strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/events" && r.Header.Get("Upgrade") == ""
}

// safeNext keeps a post-login redirect on this site: anything but a
// plain same-origin path (with query) becomes "/".
func safeNext(n string) string {
	if !isLocalPath(n) {
		return "/"
	}
	return n
}

// isLocalPath reports whether n is a path on this site, as a browser
// reads a Location. Browsers drop tabs and newlines ("/\t/evil.com" is
// "//evil.com" to them) and read a backslash as a slash, so neither may
// appear anywhere, nor whitespace or any control character. The path is
// also checked after percent-decoding (repeatedly: "%252F" is "%2F" one
// proxy later), and the query after decoding may hold no control
// character either.
func isLocalPath(n string) bool {
	if len(n) > 4096 || !pathShape(n) {
		return false
	}
	u, err := url.Parse(n)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	path, query, _ := strings.Cut(n, "?")
	for range 4 {
		d, err := url.PathUnescape(path)
		if err != nil || !pathShape(d) {
			return false
		}
		if d == path {
			q, err := url.QueryUnescape(query)
			return err == nil && !strings.ContainsFunc(q, unicode.IsControl)
		}
		path = d
	}
	return false // still percent-encoded after four rounds: nobody means that
}

// pathShape: starts with one slash; no backslash, whitespace, control or
// invisible formatting character, or invalid UTF-8 anywhere.
func pathShape(s string) bool {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r == '\\' || unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
	})
}

func (a *Auth) loginPage(s *Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusOK, "login.html", page{Title: "Sign in", Data: map[string]any{
			"OIDC": a.o.OIDC != nil, "Next": safeNext(r.URL.Query().Get("next")), "Error": r.URL.Query().Get("error"),
		}})
	}
}

func (a *Auth) localLogin(s *Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.o.OIDC != nil || !a.useLocalToken(r.URL.Query().Get("token")) {
			s.fail(w, r, httpError{http.StatusForbidden, "this login link is not valid (it works once and for an hour; the hub prints a new one)"})
			return
		}
		a.startSession(w, "local-admin", "local admin", roleOperator)
		a.newLocalLink()
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ *Session) error {
	s.o.Auth.setCookie(w, sessionCookie, "", -time.Second)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

func (a *Auth) oidcProvider(ctx context.Context) (*oidc.Provider, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.provider != nil {
		return a.provider, nil
	}
	p, err := oidc.NewProvider(ctx, a.o.OIDC.Issuer)
	if err != nil {
		return nil, fmt.Errorf("identity provider %s: %w", a.o.OIDC.Issuer, err)
	}
	a.provider = p
	return p, nil
}

func (a *Auth) oauthConfig(p *oidc.Provider) *oauth2.Config {
	oc := a.o.OIDC
	return &oauth2.Config{ClientID: oc.ClientID, ClientSecret: oc.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: oc.RedirectURL, Scopes: oc.Scopes}
}

type loginState struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"`
}

func (a *Auth) oidcStart(s *Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.o.OIDC == nil {
			s.fail(w, r, httpError{http.StatusNotFound, "no identity provider is configured"})
			return
		}
		p, err := a.oidcProvider(r.Context())
		if err != nil {
			s.log.Error("dashboard: oidc discovery", "err", err)
			s.fail(w, r, httpError{http.StatusBadGateway, "the identity provider cannot be reached; try again later"})
			return
		}
		st := loginState{State: randomToken(16), Nonce: randomToken(16), Verifier: oauth2.GenerateVerifier(),
			Next: safeNext(r.URL.Query().Get("next")), Expires: a.o.Now().Add(10 * time.Minute).Unix()}
		b, _ := json.Marshal(st)
		a.setCookie(w, loginCookie, a.sign(b), 10*time.Minute)
		u := a.oauthConfig(p).AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier))
		http.Redirect(w, r, u, http.StatusFound)
	}
}

func (a *Auth) oidcCallback(s *Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := a.finishOIDC(w, r); err != nil {
			s.log.Warn("dashboard: oidc login failed", "err", err)
			s.fail(w, r, err)
		}
	}
}

func (a *Auth) finishOIDC(w http.ResponseWriter, r *http.Request) error {
	if a.o.OIDC == nil {
		return httpError{http.StatusNotFound, "no identity provider is configured"}
	}
	c, err := r.Cookie(loginCookie)
	if err != nil {
		return httpError{http.StatusBadRequest, "login expired or started elsewhere: sign in again"}
	}
	payload, err := a.verify(c.Value)
	var st loginState
	if err != nil || json.Unmarshal(payload, &st) != nil || a.o.Now().Unix() > st.Expires {
		return httpError{http.StatusBadRequest, "login expired or not valid: sign in again"}
	}
	a.setCookie(w, loginCookie, "", -time.Second)
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return httpError{http.StatusForbidden, "the identity provider refused the login: " + e}
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		return httpError{http.StatusBadRequest, "login state does not match: sign in again"}
	}
	p, err := a.oidcProvider(r.Context())
	if err != nil {
		return httpError{http.StatusBadGateway, "the identity provider cannot be reached"}
	}
	cfg := a.oauthConfig(p)
	tok, err := cfg.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return httpError{http.StatusBadGateway, "the identity provider did not accept the login code"}
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return httpError{http.StatusBadGateway, "the identity provider returned no ID token"}
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: a.o.OIDC.ClientID}).Verify(r.Context(), raw)
	if err != nil {
		return httpError{http.StatusForbidden, "the ID token is not valid"}
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return httpError{http.StatusForbidden, "the ID token's nonce does not match"}
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return httpError{http.StatusBadGateway, "the ID token's claims cannot be read"}
	}
	_, haveGroups := claims[a.o.OIDC.GroupsClaim]
	if !haveGroups || firstString(claims, "preferred_username", "email", "name") == "unknown" {
		// Some providers put groups or names only in userinfo.
		if ui, err := p.UserInfo(r.Context(), oauth2.StaticTokenSource(tok)); err == nil {
			uc := map[string]any{}
			if ui.Claims(&uc) == nil {
				for k, v := range uc {
					if _, have := claims[k]; !have {
						claims[k] = v
					}
				}
			}
		}
	}
	name := firstString(claims, "preferred_username", "email", "name", "sub")
	role := a.roleOf(claimStrings(claims[a.o.OIDC.GroupsClaim]))
	if role == "" {
		return httpError{http.StatusForbidden, fmt.Sprintf("%s is in no group with access to this dashboard (claim %q)", name, a.o.OIDC.GroupsClaim)}
	}
	a.startSession(w, idt.Subject, name, role)
	http.Redirect(w, r, st.Next, http.StatusSeeOther)
	return nil
}

func (a *Auth) roleOf(groups []string) string {
	for _, g := range groups {
		if slices.Contains(a.o.OIDC.OperatorGroups, g) {
			return roleOperator
		}
	}
	for _, g := range groups {
		if slices.Contains(a.o.OIDC.ReaderGroups, g) {
			return roleReader
		}
	}
	return ""
}

func claimStrings(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, x := range t {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func firstString(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := m[k].(string); ok && s != "" {
			return s
		}
	}
	return "unknown"
}

// NewSessionKey returns a random key for signing sessions, for hubs
// without a session_key_file (sessions then end when the hub restarts).
func NewSessionKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}
