package agentcmd

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/consumers/deploy"
	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/nixcache"
	"github.com/pinkiefleet/pinkie/streams"
)

// deployAgentFlags are the agent's deploy settings: the activator (always
// on) and the builder role.
type deployAgentFlags struct {
	profile, push, substituter, flake, activation *string
	cacheListen, trustedKey                       *string
	builder, checkSigs                            *bool
	expiry, rollbackTimeout                       *time.Duration
}

func addDeployAgentFlags(fs *cli.FlagSet) *deployAgentFlags {
	return &deployAgentFlags{
		profile:         fs.String("system-profile", "/nix/var/nix/profiles/system", "system profile `PATH` deploys set (a temp dir in tests)"),
		builder:         fs.Bool("builder", false, "run the builder role: build other hosts' systems when a deploy names this host in --build-on"),
		push:            fs.String("deploy-push", "", "after building, copy the closure to this store `URL` (nix copy --to), e.g. file:///var/cache/pinkie"),
		substituter:     fs.String("deploy-substituter", "", "fetch closures built elsewhere from this store `URL` (nix copy --from); default: nix.conf's substituters"),
		checkSigs:       fs.Bool("deploy-check-sigs", true, "require signatures (nix.conf's trusted-public-keys) on closures fetched with --deploy-substituter; =false trusts whatever it serves, as root (logged at every fetch)"),
		flake:           fs.String("deploy-flake", "", "flake `REF` to build requests that name none (pinkie pub deploy.requested host=…)"),
		activation:      fs.String("activation", "auto", "how switch-to-configuration runs: systemd (a transient unit via systemd-run), direct, or auto (systemd when it is PID 1)"),
		expiry:          fs.Duration("deploy-expiry", deploy.DefaultExpiry, "skip requests older than this that carry no expires_at"),
		rollbackTimeout: fs.Duration("rollback-timeout", deploy.DefaultRollbackTimeout, "after a switch, roll back unless this agent reaches the hub again within this long (a host's pinkie.deployment.rollbackTimeout wins; 0 turns it off for hosts that set none)"),
		cacheListen:     fs.String("cache-listen", "127.0.0.1:0", "loopback `ADDR` of the substituter serving the hub's nix cache to this host's nix (default: a random port)"),
		trustedKey:      fs.String("nix-trusted-key", "", "the fleet's nix signing `KEY` (NAME:BASE64) to trust for closures from the hub's cache (default: learnt from the hub)"),
	}
}

// services builds the agent's deploy services: the loopback substituter
// for the hub's nix cache, the activator and the builder (which reports
// that this host is no builder unless --builder).
func (f *deployAgentFlags) services(host, dataDir string, log *slog.Logger) ([]streams.AgentService, error) {
	systemd := false
	switch *f.activation {
	case "systemd":
		systemd = true
	case "direct":
	case "auto":
		if _, err := os.Stat("/run/systemd/system"); err == nil {
			systemd = true
		}
	default:
		return nil, cli.Usagef("--activation %q: want systemd, direct or auto", *f.activation)
	}
	if *f.rollbackTimeout < 0 {
		return nil, cli.Usagef("--rollback-timeout %s: want 0 (off) or more", *f.rollbackTimeout)
	}
	if *f.profile == "" {
		return nil, cli.Usagef("--system-profile must not be empty")
	}
	fleetCache, err := streams.NewNixSubstituter(host, *f.cacheListen, *f.trustedKey, log)
	if err != nil {
		return nil, cli.Usagef("%v", err)
	}
	run := nix.ExecRunner{}
	n := nix.Nix{Run: run}
	b := &deploy.Builder{Host: host, Nix: n, Role: *f.builder, PushTo: *f.push, DefaultFlake: *f.flake, FleetCache: fleetCache, Uploader: fleetUploader{fleetCache}, Now: time.Now, Log: log}
	act := &deploy.Activator{
		Host: host, Profile: *f.profile, Nix: n, Run: run, Systemd: systemd, Substituter: *f.substituter,
		CheckSigs: *f.checkSigs, FleetCache: fleetCache, Builder: b, StateDir: filepath.Join(dataDir, "deploy"), DefaultExpiry: *f.expiry,
		Hub: fleetCache, RollbackTimeout: *f.rollbackTimeout, Now: time.Now, Log: log,
	}
	handle := func(h func(context.Context, events.Publisher, deploy.Delivery) error) func(context.Context, *streams.Agent, streams.DeployDelivery) error {
		return func(ctx context.Context, a *streams.Agent, d streams.DeployDelivery) error {
			err := h(ctx, a.Publisher(), deploy.Delivery{Event: d.Event, Kind: d.Kind.Name, Data: d.Data, LatestRequestID: d.LatestRequestID})
			if errors.Is(err, deploy.ErrNotMine) {
				log.Error("deploy inbox delivered something not for this host; dropping it", "subject", d.Subject, "err", err)
				return streams.Permanent(err)
			}
			if err != nil && ctx.Err() == nil {
				log.Error("deploy step failed; retrying", "subject", d.Subject, "err", err)
			}
			return err
		}
	}
	return []streams.AgentService{
		fleetCache,
		streams.DeployAgentConsumer{
			Durable: streams.DeployActivatorConsumer, Phases: []string{"requested", "activation.ordered"},
			Start:  func(ctx context.Context, a *streams.Agent) error { return act.Recover(ctx, a.Publisher()) },
			Handle: handle(act.Handle),
		},
		streams.DeployAgentConsumer{Durable: streams.DeployBuilderConsumer, Phases: []string{"build.ordered"}, Handle: handle(b.HandleOrder)},
	}, nil
}

// fleetUploader uploads a builder's closures through the agent's link.
type fleetUploader struct{ s *streams.NixSubstituter }

func (u fleetUploader) UploadPaths(ctx context.Context, infos []*nixcache.NarInfo) error {
	_, err := u.s.UploadPaths(ctx, infos)
	return err
}
