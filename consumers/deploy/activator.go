package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
)

// Activator deploys this host: it takes the host's requests (and the
// planner's activation orders) from the inbox, in order, one at a time.
type Activator struct {
	// Host is this host's name; requests for others are refused.
	Host string
	// Profile is the system profile (/nix/var/nix/profiles/system).
	Profile string
	Nix     nix.Nix
	// Run runs switch-to-configuration, systemd-run and health checks.
	Run nix.Runner
	// Systemd runs switch-to-configuration in a transient systemd unit
	// (systemd-run --wait), so the switch survives the agent's restart.
	Systemd bool
	// Substituter is where closures built elsewhere are fetched from
	// (nix copy --from); "" relies on nix.conf's substituters.
	Substituter string
	// CheckSigs requires signatures on what is fetched from Substituter.
	CheckSigs bool
	// FleetCache is the hub's binary cache, as the agent serves it on
	// loopback: where closures are fetched from, with signature checks
	// on, when no Substituter is set.
	FleetCache FleetCache
	// Builder builds requests placed on the target.
	Builder *Builder
	// StateDir holds activator.json.
	StateDir      string
	DefaultExpiry time.Duration
	// HealthTimeout bounds each health check (default 2m).
	HealthTimeout time.Duration
	// Hub proves this agent can still reach the hub after a switch (one
	// round trip over its leaf link). Nil turns magic rollback off.
	Hub HubLink
	// RollbackTimeout is how long the agent has after a switch (and its
	// health checks) to reach the hub before it restores the previous
	// generation; a request's rollback_timeout_seconds wins. 0 turns
	// magic rollback off for requests that set none.
	RollbackTimeout time.Duration
	Now             func() time.Time
	Log             *slog.Logger
}

// Recover reports a deploy that the agent's death interrupted: the agent
// cannot know whether the switch finished, so it is a failure. Run it
// before taking new requests.
func (a *Activator) Recover(ctx context.Context, pub events.Publisher) error {
	s, err := loadState(a.StateDir)
	if err != nil {
		return err
	}
	if s.InProgress == nil {
		return nil
	}
	job := *s.InProgress
	if s.ConfirmBy != nil {
		// The agent stopped (the switch may have restarted it) after the
		// switch: the new configuration still has to prove the hub link.
		a.Log.Info("deploy switched before the agent stopped; confirming the hub link", "host", a.Host, "request", job.RequestID, "by", s.ConfirmBy.Format(time.RFC3339))
		prev := job.PreviousPath
		if prev == "" {
			prev = job.StorePath // whatever it was, not nothing: keep the profile
		}
		return a.confirm(ctx, pub, job, *s.ConfirmBy, a.Now(), prev)
	}
	job.Reason = fmt.Sprintf("interrupted: the agent stopped during activation; the system profile now points at %s", orNone(nix.CurrentPath(a.Profile)))
	if err := publishPhase(ctx, pub, a.Host, "failed", a.Now(), job, a.Log); err != nil {
		return err
	}
	s.InProgress, s.ConfirmBy = nil, nil
	s.Done = append(s.Done, job.RequestID)
	return saveState(a.StateDir, s)
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// Handle decides about one delivery. It returns once the outcome is
// published (so the caller may ack), ErrNotMine (wrapped) for a delivery
// about another host, or another error to be retried.
func (a *Activator) Handle(ctx context.Context, pub events.Publisher, d Delivery) error {
	s, err := loadState(a.StateDir)
	if err != nil {
		return err
	}
	var job events.DeployPhase
	switch data := d.Data.(type) {
	case *events.DeployRequested:
		if data.Host != a.Host {
			return fmt.Errorf("%w: request for %s", ErrNotMine, data.Host)
		}
		job = jobFromRequest(d.Event, data, a.expiry())
	case *events.DeployPhase:
		if d.Kind != "deploy.activation.ordered" || data.Host != a.Host {
			return fmt.Errorf("%w: %s for %s", ErrNotMine, d.Kind, data.Host)
		}
		job = *data
		job.Reason, job.Log, job.DurationSeconds = "", nil, 0
	default:
		return fmt.Errorf("%w: unexpected %s", ErrNotMine, d.Kind)
	}
	if s.done(job.RequestID) {
		return nil
	}
	now := a.Now()
	switch {
	case d.LatestRequestID != "" && d.LatestRequestID != job.RequestID:
		job.Reason = "superseded by request " + d.LatestRequestID
		return a.finish(ctx, pub, "skipped", job)
	case job.ExpiresAt != nil && now.After(*job.ExpiresAt):
		job.Reason = fmt.Sprintf("expired at %s, before this host took it", job.ExpiresAt.Format(time.RFC3339))
		return a.finish(ctx, pub, "skipped", job)
	}
	if d.Kind == "deploy.requested" && job.StorePath == "" {
		switch job.BuildOn {
		case "target", a.Host:
			path, err := a.Builder.Build(ctx, pub, job)
			if err != nil {
				return err
			}
			if path == "" {
				return a.markDone(job.RequestID)
			}
			job.StorePath, job.Builder = path, a.Host
		case "local":
			job.Reason = "the request says build_on local but carries no store path"
			return a.finish(ctx, pub, "failed", job)
		default:
			// Built on a builder host: the planner orders the build and
			// hands the result over as an activation order.
			a.Log.Info("deploy waits for its builder", "host", a.Host, "request", job.RequestID, "builder", job.BuildOn)
			return nil
		}
	}
	return a.activate(ctx, pub, job)
}

func (a *Activator) expiry() time.Duration {
	if a.DefaultExpiry > 0 {
		return a.DefaultExpiry
	}
	return DefaultExpiry
}

func (a *Activator) finish(ctx context.Context, pub events.Publisher, phase string, job events.DeployPhase) error {
	if err := publishPhase(ctx, pub, a.Host, phase, a.Now(), job, a.Log); err != nil {
		return err
	}
	return a.markDone(job.RequestID)
}

func (a *Activator) markDone(id string) error {
	s, err := loadState(a.StateDir)
	if err != nil {
		return err
	}
	s.InProgress, s.ConfirmBy = nil, nil
	s.Done = append(s.Done, id)
	return saveState(a.StateDir, s)
}

// activate fetches, switches, checks health and rolls back on failure.
func (a *Activator) activate(ctx context.Context, pub events.Publisher, job events.DeployPhase) error {
	prev := nix.CurrentPath(a.Profile)
	job.PreviousPath = ""
	if prev != "" && prev != job.StorePath {
		job.PreviousPath = prev
	}
	s, err := loadState(a.StateDir)
	if err != nil {
		return err
	}
	s.InProgress, s.ConfirmBy = &job, nil
	if err := saveState(a.StateDir, s); err != nil {
		return err
	}
	if err := publishPhase(ctx, pub, a.Host, "activation.started", a.Now(), job, a.Log); err != nil {
		return err
	}
	start := a.Now()
	fail := func(step string, err error) error {
		if ctx.Err() != nil {
			return ctx.Err() // shutting down: the state file reports it at the next start
		}
		job.DurationSeconds = a.Now().Sub(start).Seconds()
		job.Reason = step + ": " + err.Error()
		job.Log = nix.LogTail(err)
		return a.finish(ctx, pub, "failed", job)
	}
	if !a.Nix.Valid(ctx, job.StorePath) {
		err := a.fetch(ctx, &job)
		if err != nil {
			return fail("fetch "+job.StorePath, err)
		}
	}
	setsProfile := job.Goal == "switch" || job.Goal == "boot"
	if setsProfile {
		if err := a.Nix.SetProfile(ctx, a.Profile, job.StorePath); err != nil {
			return fail("set the system profile", err)
		}
	}
	err = a.switchTo(ctx, job.StorePath, job.Goal, job.RequestID)
	step := "switch-to-configuration " + job.Goal
	if err == nil && job.Goal != "dry-activate" && job.Goal != "boot" {
		for _, hc := range job.HealthChecks {
			if err = a.healthCheck(ctx, hc); err != nil {
				step = "health check " + fmt.Sprintf("%q", hc)
				break
			}
		}
	}
	if err == nil {
		if t := a.rollbackTimeout(job); t > 0 && (job.Goal == "switch" || job.Goal == "test") {
			by := a.Now().Add(t)
			s.ConfirmBy = &by
			if err := saveState(a.StateDir, s); err != nil {
				return err
			}
			return a.confirm(ctx, pub, job, by, start, prev)
		}
		job.DurationSeconds = a.Now().Sub(start).Seconds()
		return a.finish(ctx, pub, "activated", job)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	job.Log = nix.LogTail(err)
	return a.rollback(ctx, pub, job, step+": "+err.Error(), prev, start)
}

// rollback restores job's previous generation after reason (a failed
// switch or health check, or a lost hub link) and reports rolledback, or
// failed when there is nothing to restore or restoring fails. prev is
// what the profile pointed at before the deploy.
func (a *Activator) rollback(ctx context.Context, pub events.Publisher, job events.DeployPhase, reason, prev string, start time.Time) error {
	setsProfile := job.Goal == "switch" || job.Goal == "boot"
	if job.Goal == "dry-activate" || job.PreviousPath == "" {
		if job.PreviousPath == "" && job.Goal != "dry-activate" {
			reason += "; no previous generation to restore"
			if setsProfile && prev == "" {
				// Leave no profile pointing at the failed system.
				_ = os.Remove(a.Profile)
			}
		}
		job.DurationSeconds = a.Now().Sub(start).Seconds()
		job.Reason = reason
		return a.finish(ctx, pub, "failed", job)
	}
	// Restore the previous generation.
	var rerr error
	if setsProfile {
		rerr = a.Nix.SetProfile(ctx, a.Profile, job.PreviousPath)
	}
	if rerr == nil {
		rerr = a.switchTo(ctx, job.PreviousPath, job.Goal, job.RequestID+"-rollback")
	}
	job.DurationSeconds = a.Now().Sub(start).Seconds()
	if rerr != nil {
		job.Reason = reason + "; restoring " + job.PreviousPath + " failed too: " + rerr.Error()
		job.Log = append(job.Log, nix.LogTail(rerr)...)
		return a.finish(ctx, pub, "failed", job)
	}
	job.Reason = reason + "; restored the previous generation " + job.PreviousPath
	return a.finish(ctx, pub, "rolledback", job)
}

// HubLink is the agent's way to the hub.
type HubLink interface {
	// Reach makes one round trip to the hub over the agent's link: nil
	// once the hub answered.
	Reach(ctx context.Context) error
}

// DefaultRollbackTimeout is how long an agent has after a switch to reach
// the hub again (the agent's --rollback-timeout default).
const DefaultRollbackTimeout = 90 * time.Second

// rollbackTimeout is job's time to reach the hub after the switch; 0 when
// magic rollback is off.
func (a *Activator) rollbackTimeout(job events.DeployPhase) time.Duration {
	switch {
	case a.Hub == nil:
		return 0
	case job.RollbackTimeoutSeconds > 0:
		return time.Duration(job.RollbackTimeoutSeconds) * time.Second
	}
	return a.RollbackTimeout
}

// confirm is magic rollback: the switched host's agent must make a round
// trip to the hub by the deadline, proving the new configuration left it
// its link; then job is activated. If it cannot, the new configuration
// cut it off, and it restores the previous generation: that report waits
// in the OUTBOX until the link is back.
func (a *Activator) confirm(ctx context.Context, pub events.Publisher, job events.DeployPhase, by, start time.Time, prev string) error {
	const attempt, pause = 5 * time.Second, 250 * time.Millisecond
	tries := 0
	var last error
	for left := by.Sub(a.Now()); left > 0; left = by.Sub(a.Now()) {
		rctx, cancel := context.WithTimeout(ctx, min(left, attempt))
		last = a.Hub.Reach(rctx)
		cancel()
		tries++
		if last == nil {
			a.Log.Info("deploy confirmed: the switched host reaches the hub", "host", a.Host, "request", job.RequestID, "attempts", tries)
			job.DurationSeconds = a.Now().Sub(start).Seconds()
			return a.finish(ctx, pub, "activated", job)
		}
		if ctx.Err() != nil {
			return ctx.Err() // shutting down: Recover confirms at the next start
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(by.Sub(a.Now()), pause)):
		}
	}
	t := a.rollbackTimeout(job)
	reason := fmt.Sprintf("the new configuration cut the agent off from the hub: no round trip to the hub for %s after the switch (rollback timeout; %d attempts, last: %v)", t, tries, last)
	a.Log.Warn("deploy lost the hub link; rolling back", "host", a.Host, "request", job.RequestID, "timeout", t, "last_err", last)
	return a.rollback(ctx, pub, job, reason, prev, start)
}

// FleetCache is the hub's binary cache as this host's agent serves it.
type FleetCache interface {
	// Has reports whether the cache holds storePath.
	Has(ctx context.Context, storePath string) (bool, error)
	// Source returns the substituter's URL for nix and the fleet public
	// key to trust (pinned on the agent, or learnt from the hub).
	Source(ctx context.Context) (url, trustedKey string, err error)
}

// ServedCounter is a FleetCache that counts what it served to nix: whole
// NAR files and bytes, since it started.
type ServedCounter interface {
	Served() (nars int, bytes int64)
}

// Prefetcher is a FleetCache that readies a closure before nix copies it:
// the narinfos of every path at once, the NARs the local store lacks
// (invalid says which) pulled several at a time. local, when set, is a
// binary cache URL holding all nix needs, to copy from instead of the
// substituter; release drops what it holds, once nix is done.
type Prefetcher interface {
	Prefetch(ctx context.Context, storePath string, invalid func(context.Context, []string) ([]string, error)) (local string, release func(), err error)
}

// fetch realises job's closure: from Substituter when one is set (without
// signature checks only if CheckSigs is off, and logged); else from the
// hub's cache when it holds the path, trusting the fleet key only, and
// then job's FetchedPaths and FetchedBytes say what came from the hub;
// else with nix.conf's substituters.
func (a *Activator) fetch(ctx context.Context, job *events.DeployPhase) error {
	path := job.StorePath
	switch {
	case a.Substituter != "":
		if !a.CheckSigs {
			a.Log.Warn("fetching without signature checks (--deploy-check-sigs=false): whatever the substituter serves is trusted", "host", a.Host, "substituter", a.Substituter, "path", path)
		}
		return nixRefusal(a.Nix.CopyFrom(ctx, a.Substituter, path, a.CheckSigs))
	case a.FleetCache != nil:
		counter, counts := a.FleetCache.(ServedCounter)
		var nars0 int
		var bytes0 int64
		if counts {
			nars0, bytes0 = counter.Served()
		}
		found, err := fetchFromFleetCache(ctx, a.FleetCache, a.Nix, path, func(key string) {
			a.Log.Info("fetching the closure from the hub's cache", "host", a.Host, "path", path, "trusted_key", key)
		})
		err = nixRefusal(err)
		if counts && found {
			// What the substituter served meanwhile: this fetch's, as the
			// activator fetches one closure at a time (a builder's fetch of
			// a flake source at the same moment would count too).
			nars, bytes := counter.Served()
			job.FetchedPaths, job.FetchedBytes = nars-nars0, bytes-bytes0
			a.Log.Info("fetched from the hub's cache", "host", a.Host, "path", path, "fetched_paths", job.FetchedPaths, "fetched_bytes", job.FetchedBytes, "err", err)
		}
		if found || err != nil {
			return err
		}
		a.Log.Info("the hub's cache lacks the closure; fetching it with nix.conf's substituters", "host", a.Host, "path", path)
	}
	return a.runChecked(ctx, "nix-store", "--realise", path)
}

// nixRefusal names why nix refused what a cache served, when its output
// says (nix 2.8: "cannot add path … because it lacks a valid signature";
// "hash mismatch importing path …" followed by the hashes on lines of
// their own, so the last line alone would not say it).
func nixRefusal(err error) error {
	if err == nil {
		return nil
	}
	tail := strings.Join(nix.LogTail(err), "\n")
	switch {
	case strings.Contains(tail, "lacks a valid signature") || strings.Contains(tail, "lacks a signature"):
		return fmt.Errorf("refused by nix: a path from the cache has no valid signature by a trusted key (unsigned, or its narinfo altered after signing): %w", err)
	case strings.Contains(tail, "hash mismatch"):
		return fmt.Errorf("refused by nix: a NAR from the cache does not match the hash its signed narinfo names (altered): %w", err)
	}
	return err
}

// fetchFromFleetCache fetches path's closure from the hub's cache, trusting
// the fleet key only; found is false (and nothing fetched) when the cache
// lacks path. fetching, when set, hears the key just before the fetch.
func fetchFromFleetCache(ctx context.Context, fc FleetCache, n nix.Nix, path string, fetching func(key string)) (found bool, err error) {
	has, err := fc.Has(ctx, path)
	if err != nil {
		return false, fmt.Errorf("ask the hub's cache: %w", err)
	}
	if !has {
		return false, nil
	}
	url, key, err := fc.Source(ctx)
	if err != nil {
		return true, err
	}
	if fetching != nil {
		fetching(key)
	}
	if p, ok := fc.(Prefetcher); ok {
		// A prefetch that fails leaves nix asking the hub path by path
		// (the substituter logs why).
		local, release, _ := p.Prefetch(ctx, path, n.Invalid)
		defer release()
		if local != "" {
			url = local
		}
	}
	return true, n.CopyFromTrusting(ctx, url, path, key)
}

// switchTo runs path/bin/switch-to-configuration goal, in a transient
// systemd unit when systemd runs the host (the unit outlives the agent if
// the switch restarts it), directly otherwise.
func (a *Activator) switchTo(ctx context.Context, path, goal, id string) error {
	stc := filepath.Join(path, "bin", "switch-to-configuration")
	if a.Systemd {
		// The switch writes to a file, not to a pipe into the agent: if the
		// switch restarts or kills the agent, a pipe would break and the
		// switch die of SIGPIPE halfway. The transient unit outlives us.
		logFile := filepath.Join(a.StateDir, "switch-"+shortID(id)+".log")
		_ = os.Remove(logFile)
		err := a.runChecked(ctx, "systemd-run", "--wait", "--quiet", "--collect", "--no-ask-password",
			"--service-type=exec", "--unit=pinkie-deploy-"+shortID(id),
			"--property=StandardOutput=append:"+logFile, "--property=StandardError=append:"+logFile,
			"-E", "LOCALE_ARCHIVE", "-E", "NIXOS_INSTALL_BOOTLOADER", "--", stc, goal)
		var ne *nix.Error
		if errors.As(err, &ne) {
			if out, rerr := bounded.ReadTail(logFile, 64*bounded.KiB); rerr == nil {
				ne.Tail = nix.TailLines(out, 20)
			}
		}
		return err
	}
	return a.runChecked(ctx, stc, goal)
}

func (a *Activator) healthCheck(ctx context.Context, cmd string) error {
	t := a.HealthTimeout
	if t <= 0 {
		t = 2 * time.Minute
	}
	hctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	return a.runChecked(hctx, "/bin/sh", "-c", cmd)
}

func (a *Activator) runChecked(ctx context.Context, name string, args ...string) error {
	res, err := a.Run.Run(ctx, nil, name, args...)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return &nix.Error{Command: filepath.Base(name), ExitCode: res.ExitCode, Tail: nix.TailLines(append(res.Stdout, res.Stderr...), 20)}
	}
	return nil
}
