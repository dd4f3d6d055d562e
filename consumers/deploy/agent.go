// Package deploy is the deploy work done on hosts and at the hub: the
// activator on each target's agent (take only its own requests, skip the
// superseded and the expired, fetch, set the system profile, switch, check
// health, roll back on failure), the builder (build a host's system, push
// it where the target can fetch it) and the hub's planner, which hands
// build orders to builder hosts and their results to the targets. Every
// step is reported as a deploy phase event. Nothing here talks NATS: the
// caller passes an events.Publisher and what the inbox delivered.
package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/atomicfile"
	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/nixcache"
)

// Delivery is one request or order from the host's deploy inbox.
type Delivery struct {
	Event events.Event
	Kind  string
	// Data is *events.DeployRequested or *events.DeployPhase.
	Data any
	// LatestRequestID is the newest request for this host the inbox holds.
	LatestRequestID string
}

// ErrNotMine marks a delivery for another host: it is refused for good.
var ErrNotMine = errors.New("not for this host")

// DefaultExpiry is how long a request without expires_at stays valid.
const DefaultExpiry = 24 * time.Hour

// job is a request with its defaults applied, as every phase carries it.
func jobFromRequest(e events.Event, r *events.DeployRequested, defaultExpiry time.Duration) events.DeployPhase {
	at := e.Time().UTC()
	exp := at.Add(defaultExpiry)
	if r.ExpiresAt != nil {
		exp = r.ExpiresAt.UTC()
	}
	goal := r.Goal
	if goal == "" {
		goal = "switch"
	}
	buildOn := r.BuildOn
	if buildOn == "" {
		buildOn = "target"
		if r.StorePath != "" {
			buildOn = "local"
		}
	}
	return events.DeployPhase{
		RequestID: e.ID(), Host: r.Host, RequestedBy: r.RequestedBy, Flake: r.Flake, Revision: r.Revision,
		BuildOn: buildOn, Goal: goal, StorePath: r.StorePath, RequestedAt: &at, ExpiresAt: &exp,
		HealthChecks: r.HealthChecks, RollbackTimeoutSeconds: r.RollbackTimeoutSeconds,
	}
}

// phaseEvent builds the event of one phase, published by host. Its id is
// derived from the request, the phase and the publisher, so a phase
// re-sent after a crash is dropped as a duplicate.
func phaseEvent(host, phase string, now time.Time, d events.DeployPhase) (events.Event, error) {
	k, ok := events.Lookup("deploy." + phase)
	if !ok {
		return events.Event{}, fmt.Errorf("no deploy phase %q", phase)
	}
	return events.New(k, host, "deploy", now, d, events.WithSubject(d.Host),
		events.WithID(events.DeterministicID("deploy", d.RequestID, phase, host)))
}

func publishPhase(ctx context.Context, pub events.Publisher, host, phase string, now time.Time, d events.DeployPhase, log *slog.Logger) error {
	e, err := phaseEvent(host, phase, now, d)
	if err != nil {
		return err
	}
	if _, err := pub.Publish(ctx, events.LocalSubject("deploy."+phase, ""), e); err != nil {
		return fmt.Errorf("publish deploy.%s for request %s: %w", phase, d.RequestID, err)
	}
	log.Info("deploy "+phase, "host", d.Host, "request", d.RequestID, "store_path", d.StorePath, "reason", d.Reason)
	return nil
}

// state is what the activator keeps on disk: the request it is activating
// (so an agent that died mid-activation reports it when it is back) and
// the requests it has finished (so a redelivered one is not run twice).
type state struct {
	InProgress *events.DeployPhase `json:"in_progress,omitempty"`
	// ConfirmBy is set once the in-progress request switched and passed
	// its health checks: the agent must reach the hub by then, or roll
	// back (magic rollback), also after a restart.
	ConfirmBy *time.Time `json:"confirm_by,omitempty"`
	Done      []string   `json:"done"`
}

func loadState(dir string) (state, error) {
	var s state
	b, err := bounded.ReadPath(filepath.Join(dir, "activator.json"), bounded.MiB)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read activator state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("parse activator state %s: %w", filepath.Join(dir, "activator.json"), err)
	}
	return s, nil
}

func saveState(dir string, s state) error {
	if len(s.Done) > 256 {
		s.Done = s.Done[len(s.Done)-256:]
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create activator state dir: %w", err)
	}
	p := filepath.Join(dir, "activator.json")
	if err := atomicfile.Write(p, b, 0o600); err != nil {
		return fmt.Errorf("write activator state: %w", err)
	}
	return nil
}

func (s state) done(id string) bool { return slices.Contains(s.Done, id) }

// Builder builds hosts' systems on this host.
type Builder struct {
	// Host is this host's name.
	Host string
	Nix  nix.Nix
	// Role says this agent builds for other hosts (--builder).
	Role bool
	// PushTo is where built closures are copied (nix copy --to), e.g. a
	// file:// binary cache directory the targets use as a substituter.
	PushTo string
	// DefaultFlake builds requests that name no flake.
	DefaultFlake string
	// FleetCache, when set, is where a flake source shipped through the
	// hub (path:/nix/store/…-source?narHash=…) is fetched from before the
	// build, trusting the fleet key only.
	FleetCache FleetCache
	// Uploader, when set and PushTo is not, takes closures built for other
	// hosts into the hub's cache (unsigned: the hub signs them), where
	// their targets fetch them.
	Uploader FleetUploader
	Now      func() time.Time
	Log      *slog.Logger
}

// FleetUploader puts local store paths (their narinfos unsigned) into the
// hub's cache, sending only those it lacks.
type FleetUploader interface {
	UploadPaths(ctx context.Context, infos []*nixcache.NarInfo) error
}

// Build builds job's host from its flake, pushes the closure and reports
// build.started and built or build.failed. It returns the store path, or
// "" when the build failed (already reported).
func (b *Builder) Build(ctx context.Context, pub events.Publisher, job events.DeployPhase) (string, error) {
	job.Builder = b.Host
	flake := job.Flake
	if flake == "" {
		flake = b.DefaultFlake
	}
	if flake == "" {
		job.Reason = "the request names no flake and this agent has no --deploy-flake"
		return "", publishPhase(ctx, pub, b.Host, "build.failed", b.Now(), job, b.Log)
	}
	job.Flake = flake
	if err := publishPhase(ctx, pub, b.Host, "build.started", b.Now(), job, b.Log); err != nil {
		return "", err
	}
	if err := b.fetchSource(ctx, flake); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		job.Reason = fmt.Sprintf("fetch the flake source %s: %v", flake, err)
		job.Log = nix.LogTail(err)
		return "", publishPhase(ctx, pub, b.Host, "build.failed", b.Now(), job, b.Log)
	}
	start := b.Now()
	path, err := b.Nix.Build(ctx, nix.Toplevel(flake, job.Host))
	if err == nil && b.PushTo != "" {
		if cerr := b.Nix.CopyTo(ctx, b.PushTo, path); cerr != nil {
			err = fmt.Errorf("push to %s: %w", b.PushTo, cerr)
		}
		job.Cache = b.PushTo
	}
	if err == nil && b.PushTo == "" && b.Uploader != nil && job.Host != b.Host {
		if uerr := b.upload(ctx, path); uerr != nil {
			err = fmt.Errorf("push %s to the hub's cache: %w", path, uerr)
		}
	}
	job.DurationSeconds = b.Now().Sub(start).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		job.Reason = fmt.Sprintf("build %s: %v", nix.Toplevel(flake, job.Host), err)
		job.Log = nix.LogTail(err)
		return "", publishPhase(ctx, pub, b.Host, "build.failed", b.Now(), job, b.Log)
	}
	job.StorePath = path
	return path, publishPhase(ctx, pub, b.Host, "built", b.Now(), job, b.Log)
}

// upload hands path's closure to the Uploader (which sends only what the
// hub's cache lacks, each NAR read straight from the store).
func (b *Builder) upload(ctx context.Context, path string) error {
	closure, err := b.Nix.Closure(ctx, path)
	if err != nil {
		return err
	}
	infos := make([]*nixcache.NarInfo, 0, len(closure))
	for _, p := range closure {
		ni, err := p.NarInfo()
		if err != nil {
			return err
		}
		infos = append(infos, ni)
	}
	b.Log.Info("uploading the closure to the hub's cache", "host", b.Host, "path", path, "paths", len(infos))
	return b.Uploader.UploadPaths(ctx, infos)
}

// HandleOrder builds for another host when the planner orders it.
func (b *Builder) HandleOrder(ctx context.Context, pub events.Publisher, d Delivery) error {
	job, ok := d.Data.(*events.DeployPhase)
	if !ok || d.Kind != "deploy.build.ordered" {
		return fmt.Errorf("%w: builder got a %s", ErrNotMine, d.Kind)
	}
	if job.Builder != b.Host {
		return fmt.Errorf("%w: build order for builder %s", ErrNotMine, job.Builder)
	}
	j := *job
	j.Cache, j.StorePath, j.Reason, j.Log, j.DurationSeconds = "", "", "", nil, 0
	if !b.Role {
		j.Reason = fmt.Sprintf("host %s does not run the builder role (start its agent with --builder)", b.Host)
		return publishPhase(ctx, pub, b.Host, "build.failed", b.Now(), j, b.Log)
	}
	if j.ExpiresAt != nil && b.Now().After(*j.ExpiresAt) {
		j.Reason = fmt.Sprintf("the request expired at %s before the build started", j.ExpiresAt.Format(time.RFC3339))
		return publishPhase(ctx, pub, b.Host, "build.failed", b.Now(), j, b.Log)
	}
	_, err := b.Build(ctx, pub, j)
	return err
}

// shortID is the start of a request id, for unit names.
func shortID(id string) string {
	id = strings.ReplaceAll(id, "-", "")
	if len(id) > 12 {
		id = id[len(id)-12:]
	}
	return id
}

// fetchSource makes sure a flake shipped through the hub's cache
// (path:/nix/store/…?narHash=…) is in the local store before the build:
// fetched from the hub's cache, trusting the fleet key only. Other flake
// references are left to nix.
func (b *Builder) fetchSource(ctx context.Context, flake string) error {
	p, ok := strings.CutPrefix(flake, "path:")
	if !ok || b.FleetCache == nil {
		return nil
	}
	p, _, _ = strings.Cut(p, "?")
	if !strings.HasPrefix(p, "/nix/store/") || b.Nix.Valid(ctx, p) {
		return nil
	}
	found, err := fetchFromFleetCache(ctx, b.FleetCache, b.Nix, p, func(string) {
		b.Log.Info("fetching the flake source from the hub's cache", "host", b.Host, "path", p)
	})
	if err == nil && !found {
		return fmt.Errorf("the hub's cache does not hold %s", p)
	}
	return err
}
