// Package dashboard is the hub's web dashboard: server-rendered pages
// (fleet overview, host pages, alerts and silences, deploys) with inline
// SVG plots, a JSON API under /api/ using the CLI's --json shapes, live
// updates over server-sent events, and login (OIDC or a one-time local
// link) with signed session cookies, roles and CSRF tokens.
//
// It talks to the hub only through the Store and Deployer interfaces,
// which cmd/pinkie implements over the hub's JetStream; tests and
// benchmarks use in-memory ones.
package dashboard

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/deploy"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
)

//go:embed assets
var assets embed.FS

// Stored is one message of a hub stream.
type Stored = events.Stored

// Store is the dashboard's view of the hub.
type Store interface {
	// Bucket returns records of a KV bucket without projection
	// checkpoints: all for an empty prefix, the keys below a prefix that
	// ends in ".", else the one key named.
	Bucket(ctx context.Context, bucket, prefix string) (map[string][]byte, error)
	// History returns up to max messages of stream on subjects matching
	// any of filters, stored since since, oldest first (the newest max
	// when there are more).
	History(ctx context.Context, stream string, filters []string, since time.Time, max int) ([]Stored, error)
	// Last returns the newest message on subject, or nil.
	Last(ctx context.Context, stream, subject string) (*Stored, error)
	// Publish stores an event on the hub.
	Publish(ctx context.Context, subject string, e events.Event) error
	// Watch calls fn with the subject of every change the hub stores
	// (projection updates, deploy phases, fleet declarations) until ctx
	// ends.
	Watch(ctx context.Context, fn func(subject string)) error
}

// Deployer plans and starts deploys with the same code as `pinkie deploy`.
type Deployer interface {
	// Plan selects and places hosts: nothing is sent.
	Plan(ctx context.Context, r DeployRequest) (fleetview.Deploy, error)
	// Start plans again and sends the requests (local builds first).
	Start(ctx context.Context, r DeployRequest) (fleetview.Deploy, error)
}

// DeployRequest is what the deploy form asks for.
type DeployRequest = deploy.Request

// ErrBadRequest marks a deploy request the fleet refuses (unknown host or
// tag, malformed selector): the user's mistake, shown as a 4xx.
var ErrBadRequest = deploy.ErrBadRequest

// Options configure the dashboard.
type Options struct {
	Store    Store
	Deployer Deployer // nil: deploys cannot be started from the dashboard
	Terminal Terminal // nil: no web terminal on the host pages
	Auth     *Auth
	Log      *slog.Logger
	Title    string
	// WarnAfter and FailAfter colour the last successful deploy's age.
	WarnAfter, FailAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server is the dashboard's HTTP handler.
type Server struct {
	o    Options
	log  *slog.Logger
	tmpl *template.Template
	mux  *http.ServeMux
	live *broadcaster
	// closed ends the event streams when the HTTP server shuts down.
	closeOnce sync.Once
	closed    chan struct{}
}

// CloseStreams ends every server-sent event stream (the HTTP server calls
// it on shutdown, which would otherwise wait for them).
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closed) }) }

// New builds the dashboard; Run feeds its live updates.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Auth == nil {
		return nil, errors.New("dashboard: Store and Auth are required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Title == "" {
		o.Title = "pinkie"
	}
	if o.WarnAfter <= 0 {
		o.WarnAfter = 7 * 24 * time.Hour
	}
	if o.FailAfter <= 0 {
		o.FailAfter = 30 * 24 * time.Hour
	}
	t, err := template.New("").Funcs(funcs(o.Now)).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	s := &Server{o: o, log: o.Log, tmpl: t, mux: http.NewServeMux(), live: newBroadcaster(), closed: make(chan struct{})}
	s.routes()
	return s, nil
}

// Run watches the hub for changes and tells connected browsers, until ctx
// ends.
func (s *Server) Run(ctx context.Context) error {
	return s.o.Store.Watch(ctx, func(subject string) { s.live.publish(topicOf(subject)) })
}

func (s *Server) routes() {
	static, _ := fs.Sub(assets, "assets/static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", cacheForever(http.FileServerFS(static))))
	a := s.o.Auth
	s.mux.HandleFunc("GET /login", a.loginPage(s))
	s.mux.HandleFunc("GET /login/local", a.localLogin(s))
	s.mux.HandleFunc("GET /login/oidc", a.oidcStart(s))
	s.mux.HandleFunc("GET /auth/callback", a.oidcCallback(s))
	s.mux.Handle("POST /logout", s.require(roleReader, s.logout))

	read := func(pattern string, h handlerFunc) { s.mux.Handle(pattern, s.require(roleReader, h)) }
	act := func(pattern string, h handlerFunc) { s.mux.Handle(pattern, s.require(roleOperator, h)) }

	read("GET /{$}", s.overviewPage)
	read("GET /hosts/{host}", s.hostPage)
	read("GET /guests", s.guestsPage)
	read("GET /guests/{host}/{guest}", s.guestPage)
	read("GET /alerts", s.alertsPage)
	read("GET /deploys", s.deploysPage)
	read("GET /events", s.events)
	act("POST /alerts/silences", s.silenceCreateForm)
	act("POST /alerts/silences/{id}/extend", s.silenceExtendForm)
	act("POST /alerts/silences/{id}/expire", s.silenceExpireForm)
	act("POST /deploys/plan", s.deployPlanForm)
	act("POST /deploys", s.deployStartForm)
	act("GET /hosts/{host}/terminal", s.terminalWS)

	read("GET /api/overview", s.apiOverview)
	read("GET /api/hosts", s.apiHosts)
	read("GET /api/hosts/{host}", s.apiHost)
	read("GET /api/hosts/{host}/series", s.apiSeries)
	read("GET /api/guests", s.apiGuests)
	read("GET /api/guests/{host}/{guest}", s.apiGuest)
	read("GET /api/alerts", s.apiAlerts)
	read("GET /api/silences", s.apiSilences)
	read("GET /api/last-deploy", s.apiLastDeploy)
	read("GET /api/deploys", s.apiDeploys)
	read("GET /api/me", s.apiMe)
	act("POST /api/silences", s.apiSilenceCreate)
	act("DELETE /api/silences/{id}", s.apiSilenceDelete)
	act("POST /api/deploys/plan", s.apiDeployPlan)
	act("POST /api/deploys", s.apiDeployStart)
}

// maxQuery bounds a request's query string and form: a "huge query" is
// refused before anything reads it.
const maxQuery = 4 << 10

// ServeHTTP serves the dashboard.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	if len(r.URL.RawQuery) > maxQuery || len(r.URL.Path) > maxQuery {
		s.fail(w, r, httpError{http.StatusRequestURITooLong, fmt.Sprintf("the address is too long (%d bytes; at most %d)", len(r.URL.RawQuery)+len(r.URL.Path), maxQuery)})
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	}
	if r.Header.Get("Upgrade") != "" {
		s.mux.ServeHTTP(w, r) // the web terminal's WebSocket takes the connection over
		return
	}
	withGzip(w, r, func(w http.ResponseWriter) { s.mux.ServeHTTP(w, r) })
}

func cacheForever(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}
