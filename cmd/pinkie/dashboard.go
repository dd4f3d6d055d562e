package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"

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
	// The base URL of the local login link is known once the hub listens
	// (--http may pick a port), unless one is configured.
	public, baseURL := set.PublicURL, set.PublicURL
	if public == "" {
		public = "http://" + httpAddr
	}
	ao := dashboard.AuthOptions{SessionKey: set.SessionKey, SessionTTL: set.SessionTTL, SecureCookies: c.SecureCookies || strings.HasPrefix(public, "https://"),
		LoopbackReaders: c.LoopbackReaders, Log: log}
	if set.OIDC != nil {
		ao.OIDC = set.OIDC
		ao.OIDC.RedirectURL = public + "/auth/callback"
	} else {
		// The link is printed, not logged: it is a credential.
		ao.LocalLink = func(path string) {
			fmt.Fprintf(stderr, "dashboard: sign in as the local admin (operator) once, within an hour: %s%s\n", baseURL, path)
		}
	}
	auth, err := dashboard.NewAuth(ao)
	if err != nil {
		return nil, nil, errConfig("dashboard", err)
	}
	store := streams.NewHubStore()
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
	// Bound to the hub, it prints the first local login link once, then
	// feeds live updates.
	return srv, &storeService{name: "dashboard", store: store, run: srv.Run, bound: func(h *streams.Hub) {
		if baseURL == "" {
			baseURL = "http://" + h.HTTPAddr()
		}
		auth.IssueLocalLink()
	}}, nil
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
