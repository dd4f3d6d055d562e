// Package deploy is the deploy use case that `pinkie deploy` and the
// dashboard's deploy form share: read the fleet from a flake, select hosts
// and place their builds (Plan), then run the local builds and request
// one deploy per host (Send), and follow the requests to their outcomes
// (Follow). It talks to the hub only through an events.Publisher and the
// stored deploy phases it is handed: no NATS here.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/deploy/fleet"
	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
)

// ErrBadRequest marks a deploy the fleet refuses: a flake that does not
// evaluate, an unknown host, tag or goal (the user's mistake).
var ErrBadRequest = errors.New("bad request")

// BadRequest is a refused deploy, with the reason shown to the user.
type BadRequest struct{ Msg string }

func (e *BadRequest) Error() string        { return ErrBadRequest.Error() + ": " + e.Msg }
func (e *BadRequest) Is(target error) bool { return target == ErrBadRequest }

func badRequest(format string, a ...any) error {
	return &BadRequest{Msg: fmt.Sprintf(format, a...)}
}

// Request is a deploy asked for: which hosts, and (when not "") where to
// build and with which goal, overriding each host's own.
type Request struct {
	Selectors   []string `json:"selectors"`
	Goal        string   `json:"goal,omitempty"`
	BuildOn     string   `json:"build_on,omitempty"`
	RequestedBy string   `json:"-"`
}

// Plan reads the fleet from a flake, selects hosts and places their
// builds: the plan that `pinkie deploy --dry-run` prints and the
// dashboard shows before it sends anything. Its errors are *BadRequest.
func Plan(ctx context.Context, n nix.Nix, flake string, selectors []string, buildOn, goal string) (fleetview.Deploy, []fleet.Plan, error) {
	md, err := n.FlakeMetadata(ctx, flake)
	if err != nil {
		return fleetview.Deploy{}, nil, badRequest("flake %s: %v%s", flake, err, tailSuffix(err))
	}
	ref := md.URL
	if ref == "" {
		ref = flake
	}
	fl, err := fleet.Read(ctx, n, ref)
	if err != nil {
		return fleetview.Deploy{}, nil, badRequest("%v%s", err, tailSuffix(err))
	}
	hosts, err := fleet.Select(fl, selectors)
	if err != nil {
		return fleetview.Deploy{}, nil, badRequest("%v", err)
	}
	plans, err := fleet.Place(fl, hosts, buildOn, goal)
	if err != nil {
		return fleetview.Deploy{}, nil, badRequest("%v", err)
	}
	res := fleetview.Deploy{Flake: ref, Revision: md.Revision}
	for _, p := range plans {
		res.Hosts = append(res.Hosts, fleetview.DeployHost{Host: p.Host, BuildOn: p.BuildOn, Goal: p.Goal, Outcome: "planned"})
	}
	return res, plans, nil
}

// SendOptions are how Send builds and requests.
type SendOptions struct {
	PushTo string
	// Upload, when set, puts a locally built closure into the hub's Nix
	// cache (signed), where targets fetch it, and says what it sent.
	Upload      func(ctx context.Context, path string) (*fleetview.CacheUpload, error)
	Expires     time.Duration
	RequestedBy string
	// SourceHost is the requests' source host (the machine sending them).
	SourceHost string
	// Stderr gets local build failures; Lines, when set, one line per request.
	Stderr, Lines io.Writer
}

// Send runs the plan's local builds, then publishes one deploy.requested
// per host whose build did not fail, filling in res. It returns the
// stream sequence of the first request.
func Send(ctx context.Context, n nix.Nix, pub events.Publisher, res *fleetview.Deploy, plans []fleet.Plan, o SendOptions) (uint64, error) {
	ref := res.Flake
	// Local builds first; a host whose build fails is not requested.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range res.Hosts {
		h := &res.Hosts[i]
		if h.BuildOn != "local" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			path, err := n.Build(ctx, nix.Toplevel(ref, h.Host))
			if err == nil && o.PushTo != "" {
				err = n.CopyTo(ctx, o.PushTo, path)
			}
			if err == nil && o.Upload != nil {
				h.Upload, err = o.Upload(ctx, path)
			}
			h.BuildSeconds = time.Since(start).Seconds()
			if err != nil {
				h.Outcome, h.Reason = "build.failed", fmt.Sprintf("local build: %v", err)
				if o.Stderr != nil {
					fmt.Fprintf(o.Stderr, "pinkie deploy: %s: local build failed: %v\n%s", h.Host, err, IndentLines(nix.LogTail(err)))
				}
				return
			}
			h.StorePath = path
		}()
	}
	wg.Wait()
	now := time.Now()
	exp := now.Add(o.Expires).UTC()
	k, _ := events.Lookup("deploy.requested")
	var firstSeq uint64
	for i := range res.Hosts {
		h := &res.Hosts[i]
		if h.Outcome == "build.failed" {
			continue
		}
		p := plans[i]
		data := &events.DeployRequested{Host: h.Host, Flake: ref, Revision: res.Revision, BuildOn: h.BuildOn, Goal: h.Goal,
			StorePath: h.StorePath, RequestedBy: o.RequestedBy, ExpiresAt: &exp, HealthChecks: p.HealthChecks, RollbackTimeoutSeconds: p.RollbackTimeout, BuildSeconds: h.BuildSeconds}
		e, err := events.New(k, o.SourceHost, "cli", now, data, events.WithSubject(h.Host))
		if err != nil {
			return firstSeq, err
		}
		ack, err := pub.Publish(ctx, k.HubSubject(data), e)
		if err != nil {
			return firstSeq, fmt.Errorf("request deploy of %s: %w", h.Host, err)
		}
		h.RequestID, h.Seq, h.Outcome = e.ID(), ack.Seq, "requested"
		h.Phases = append(h.Phases, "requested")
		if firstSeq == 0 {
			firstSeq = ack.Seq
		}
		if o.Lines != nil {
			up := ""
			if h.Upload != nil {
				up = fmt.Sprintf(", uploaded %d of %d paths (%d bytes) to the hub's cache", len(h.Upload.UploadedPaths), h.Upload.Paths, h.Upload.UploadedBytes)
			}
			fmt.Fprintf(o.Lines, "%-16s requested  build on %s, goal %s, request %s%s\n", events.Escape(h.Host), events.Escape(h.BuildOn), events.Escape(h.Goal), events.Escape(h.RequestID), up)
		}
	}
	return firstSeq, nil
}

// Deployer plans and sends deploys of one flake's fleet, as the dashboard
// starts them.
type Deployer struct {
	Nix     nix.Nix
	Flake   string
	PushTo  string
	Expires time.Duration
	// SourceHost is the requests' source host.
	SourceHost string
	Publisher  events.Publisher
}

// Plan selects and places hosts: nothing is sent.
func (d *Deployer) Plan(ctx context.Context, r Request) (fleetview.Deploy, error) {
	res, _, err := Plan(ctx, d.Nix, d.Flake, r.Selectors, r.BuildOn, r.Goal)
	return res, err
}

// Start plans again and sends the requests (local builds first).
func (d *Deployer) Start(ctx context.Context, r Request) (fleetview.Deploy, error) {
	res, plans, err := Plan(ctx, d.Nix, d.Flake, r.Selectors, r.BuildOn, r.Goal)
	if err != nil {
		return res, err
	}
	_, err = Send(ctx, d.Nix, d.Publisher, &res, plans, SendOptions{PushTo: d.PushTo, Expires: d.Expires, RequestedBy: r.RequestedBy, SourceHost: d.SourceHost})
	return res, err
}

func tailSuffix(err error) string {
	t := nix.LogTail(err)
	if len(t) <= 1 {
		return ""
	}
	return "\n" + IndentLines(t)
}

// IndentLines indents each line by two spaces, each ending in a newline
// (a failed command's output under its error).
func IndentLines(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
