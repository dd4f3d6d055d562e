package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/dashboard"
	"github.com/pinkiefleet/pinkie/deploy"
	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/streams"
)

// dashboardSetup builds the dashboard from its config section: the HTTP
// handler, and the hub service that binds it to the hub's JetStream and
// feeds its live updates. nil handler: the dashboard is disabled.
func dashboardSetup(raw json.RawMessage, httpAddr string, log *slog.Logger, stderr io.Writer) (*dashboard.Server, streams.HubService, error) {
	set, err := dashboard.LoadConfig(raw, maxSecretFile)
	if err != nil {
		return nil, nil, errConfig("dashboard", err)
	}
	c := set.Config
	if c.Disabled {
		return nil, nil, nil
	}
	public := set.PublicURL
	svc := dashboardService{store: streams.NewHubStore(), publicURL: public}
	if public == "" {
		public = "http://" + httpAddr
	}
	ao := dashboard.AuthOptions{SessionKey: set.SessionKey, SessionTTL: set.SessionTTL, SecureCookies: c.SecureCookies || strings.HasPrefix(public, "https://"),
		LoopbackReaders: c.LoopbackReaders, Log: log}
	if set.OIDC != nil {
		ao.OIDC = set.OIDC
		ao.OIDC.RedirectURL = public + "/auth/callback"
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
	o := dashboard.Options{Store: store, Auth: auth, Log: log, Title: c.Title, WarnAfter: set.WarnAfter, FailAfter: set.FailAfter}
	if c.Flake != "" {
		o.Deployer = &deploy.Deployer{Nix: nix.Nix{Run: nix.ExecRunner{}}, Flake: c.Flake, PushTo: c.PushTo, Expires: set.Expires, SourceHost: cliSourceHost(),
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

// maxSecretFile bounds the secrets the dashboard reads whole (session
// keys, client secrets: bytes).
const maxSecretFile = 64 * bounded.KiB
