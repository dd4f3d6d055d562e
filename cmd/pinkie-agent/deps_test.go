package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// hubOnly are packages and modules the agent never runs: the hub's
// consumers and projections, the dashboard and its login, the alert
// expressions. A prefix ending in "/" matches a module's packages.
var hubOnly = []string{
	"github.com/pinkiefleet/pinkie/dashboard",
	"github.com/pinkiefleet/pinkie/consumers/alerter",
	"github.com/pinkiefleet/pinkie/consumers/notifier",
	"github.com/pinkiefleet/pinkie/consumers/ingest",
	"github.com/pinkiefleet/pinkie/cmd/pinkie/notifyhub",
	"github.com/pinkiefleet/pinkie/projections",
	"github.com/pinkiefleet/pinkie/fleetview",
	"github.com/pinkiefleet/pinkie/fleetmetrics",
	"github.com/pinkiefleet/pinkie/deploy",
	"github.com/pinkiefleet/pinkie/deploy/fleet",
	"github.com/pinkiefleet/pinkie/nixos",
	"github.com/expr-lang/expr/",
	"github.com/coreos/go-oidc/",
	"github.com/go-jose/go-jose/",
	"golang.org/x/oauth2/",
	"github.com/coder/websocket/",
	"github.com/chromedp/",
}

// TestAgentLinksNoHubCode keeps pinkie-agent the agent alone: a package
// of the hub's that creeps into its imports (through streams, producers or
// cmd/internal) is mapped and initialised on every host (issue 17).
func TestAgentLinksNoHubCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	// The list is the agent's: it runs the agent command.
	for _, want := range []string{"github.com/pinkiefleet/pinkie/cmd/internal/agentcmd", "github.com/pinkiefleet/pinkie/streams", "github.com/pinkiefleet/pinkie/producers"} {
		if !slices.Contains(deps, want) {
			t.Fatalf("go list -deps lacks %s; got %d packages", want, len(deps))
		}
	}
	for _, d := range deps {
		for _, h := range hubOnly {
			if d == h || d == strings.TrimSuffix(h, "/") || (strings.HasSuffix(h, "/") && strings.HasPrefix(d, h)) {
				t.Errorf("pinkie-agent links %s (hub only); go mod why -m or go list -deps shows the path", d)
			}
		}
	}
}
