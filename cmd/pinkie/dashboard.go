package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/dashboard"
	"github.com/pinkiefleet/pinkie/deploy"
	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/streams"
)

// dashboardConfig is the "dashboard" section of the hub's --config.
type dashboardConfig struct {
	// Disabled turns the dashboard off (HTTP keeps /metrics, /healthz).
	Disabled bool   `json:"disabled,omitempty"`
	Title    string `json:"title,omitempty"`
	// PublicURL is where users reach the dashboard (OIDC redirect URL,
	// the local login link).
	PublicURL string `json:"public_url,omitempty"`
	// LoopbackReaders lets loopback clients read without signing in.
	LoopbackReaders bool `json:"loopback_readers,omitempty"`
	// SecureCookies marks cookies Secure (HTTPS in front of the hub).
	SecureCookies  bool   `json:"secure_cookies,omitempty"`
	SessionKeyFile string `json:"session_key_file,omitempty"`
	SessionTTL     string `json:"session_ttl,omitempty"`
	WarnAfter      string `json:"warn_after,omitempty"`
	FailAfter      string `json:"fail_after,omitempty"`
	// Flake is the fleet's flake: deploys can be started from the
	// dashboard only when it is set.
	Flake  string `json:"flake,omitempty"`
	PushTo string `json:"push_to,omitempty"`
	// Expires: a host that has not started a deploy after this long skips
	// it (default 24h).
	Expires string               `json:"expires,omitempty"`
	OIDC    *dashboardOIDCConfig `json:"oidc,omitempty"`
}

type dashboardOIDCConfig struct {
	Issuer           string   `json:"issuer"`
	ClientID         string   `json:"client_id"`
	ClientSecretFile string   `json:"client_secret_file,omitempty"`
	Scopes           []string `json:"scopes,omitempty"`
	GroupsClaim      string   `json:"groups_claim,omitempty"`
	OperatorGroups   []string `json:"operator_groups"`
	ReaderGroups     []string `json:"reader_groups,omitempty"`
}

// dashboardSetup builds the dashboard from its config section: the HTTP
// handler, and the hub service that binds it to the hub's JetStream and
// feeds its live updates. nil handler: the dashboard is disabled.
func dashboardSetup(raw json.RawMessage, httpAddr string, log *slog.Logger, stderr io.Writer) (*dashboard.Server, streams.HubService, error) {
	var c dashboardConfig
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, nil, errConfig("dashboard", err)
		}
	}
	if c.Disabled {
		return nil, nil, nil
	}
	dur := func(name, v string, def time.Duration) (time.Duration, error) {
		if v == "" {
			return def, nil
		}
		d, err := fleetview.ParseAge(v)
		if err != nil || d <= 0 {
			return 0, errConfig("dashboard", fmt.Errorf("%s: want a duration such as 12h or 7d, got %q", name, v))
		}
		return d, nil
	}
	ttl, err := dur("session_ttl", c.SessionTTL, 12*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	warn, err := dur("warn_after", c.WarnAfter, 7*24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	fail, err := dur("fail_after", c.FailAfter, 30*24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	expires, err := dur("expires", c.Expires, 24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	key := dashboard.NewSessionKey()
	if c.SessionKeyFile != "" {
		b, err := bounded.ReadPath(c.SessionKeyFile, maxSecretFile)
		if err != nil {
			return nil, nil, errConfig("dashboard", fmt.Errorf("session_key_file: %w", err))
		}
		if key = bytes.TrimSpace(b); len(key) < 32 {
			return nil, nil, errConfig("dashboard", fmt.Errorf("session_key_file %s: want at least 32 bytes", c.SessionKeyFile))
		}
	}
	public := strings.TrimSuffix(c.PublicURL, "/")
	svc := dashboardService{store: streams.NewHubStore(), publicURL: public}
	if public == "" {
		public = "http://" + httpAddr
	}
	ao := dashboard.AuthOptions{SessionKey: key, SessionTTL: ttl, SecureCookies: c.SecureCookies || strings.HasPrefix(public, "https://"),
		LoopbackReaders: c.LoopbackReaders, Log: log}
	if o := c.OIDC; o != nil {
		secret := ""
		if o.ClientSecretFile != "" {
			b, err := bounded.ReadPath(o.ClientSecretFile, maxSecretFile)
			if err != nil {
				return nil, nil, errConfig("dashboard", fmt.Errorf("oidc.client_secret_file: %w", err))
			}
			secret = strings.TrimSpace(string(b))
		}
		if len(o.OperatorGroups) == 0 && len(o.ReaderGroups) == 0 {
			return nil, nil, errConfig("dashboard", errors.New("oidc: name operator_groups and/or reader_groups, or nobody may sign in"))
		}
		ao.OIDC = &dashboard.OIDCOptions{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret, RedirectURL: public + "/auth/callback",
			Scopes: o.Scopes, GroupsClaim: o.GroupsClaim, OperatorGroups: o.OperatorGroups, ReaderGroups: o.ReaderGroups}
	} else {
		// The link is printed, not logged: it is a credential. Its address
		// is known once the hub listens (--http may pick a port).
		ao.LocalLink = func(path string) {
			fmt.Fprintf(stderr, "dashboard: sign in as the local admin (operator) once, within an hour: %s%s\n", svc.baseURL(), path)
		}
	}
	auth, err := dashboard.NewAuth(ao)
	if err != nil {
		return nil, nil, errConfig("dashboard", err)
	}
	store := svc.store
	o := dashboard.Options{Store: store, Auth: auth, Log: log, Title: c.Title, WarnAfter: warn, FailAfter: fail}
	if c.Flake != "" {
		o.Deployer = &deploy.Deployer{Nix: nix.Nix{Run: nix.ExecRunner{}}, Flake: c.Flake, PushTo: c.PushTo, Expires: expires, SourceHost: cliSourceHost(),
			Publisher: store.Publisher()}
	}
	o.Terminal = hubTerminal{store: store}
	srv, err := dashboard.New(o)
	if err != nil {
		return nil, nil, err
	}
	svc.srv, svc.auth = srv, auth
	return srv, &svc, nil
}

// dashboardService binds the dashboard to the running hub.
type dashboardService struct {
	srv       *dashboard.Server
	auth      *dashboard.Auth
	store     *streams.HubStore
	publicURL string // configured; else the hub's HTTP address
	httpAddr  string
	started   sync.Once
}

func (*dashboardService) Name() string { return "dashboard" }

// EveryNode makes a clustered hub serve the dashboard on every node.
func (*dashboardService) EveryNode() bool { return true }

func (d *dashboardService) baseURL() string {
	if d.publicURL != "" {
		return d.publicURL
	}
	return "http://" + d.httpAddr
}

// Run binds the store and prints the first local login link once, then
// feeds live updates (restarted by the hub if it fails).
func (d *dashboardService) Run(ctx context.Context, h *streams.Hub) error {
	d.started.Do(func() {
		d.httpAddr = h.HTTPAddr()
		d.store.Bind(h)
		d.auth.IssueLocalLink()
	})
	return d.srv.Run(ctx)
}

// hubTerminal runs the dashboard's web terminal sessions with pinkie
// shell's own client (streams.Client.Shell), each on its own in-process
// connection named for the signed-in user (the agent's audit event shows
// it).
type hubTerminal struct{ store *streams.HubStore }

func (t hubTerminal) Shell(ctx context.Context, r dashboard.TerminalRequest) (int, error) {
	h, err := t.store.Hub(ctx)
	if err != nil {
		return -1, err
	}
	return h.ShellAs(ctx, r.Who, streams.ShellRequest{Host: r.Host, Guest: r.Guest, TTY: true, Term: r.Term, Rows: r.Rows, Cols: r.Cols,
		Stdin: r.Stdin, Stdout: r.Stdout, Resize: r.Resize, Started: r.Started})
}
