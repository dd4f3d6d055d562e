package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/deploy"
	"github.com/pinkiefleet/pinkie/deploy/fleet"
	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/nixcache"
	"github.com/pinkiefleet/pinkie/streams"
)

func runDeploy(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("deploy", "SELECTOR...", `
Deploy hosts of a flake's nixosConfigurations. The fleet (each host's
config.pinkie.deployment: tags, buildOn, requireExplicit, goal, healthChecks)
is read with one nix eval; selectors choose hosts:

  goliath        a host            edge-*        a glob over names
  @web           a tag             @web&@eu      an intersection
  !koishi        an exclusion      all           all but requireExplicit hosts
  a,b or a b     a union

Each host is built where --build-on says, else where its buildOn says, else
locally: "local" builds here and the request carries the store path;
"target" has the host's agent build it; HOST has that host's agent (run with
--builder) build it and push it where the target fetches it. One
deploy.requested event per host is published on pinkie.deploy.<host>.requested;
the host's agent takes it when it is connected (at once, or when it is back),
activates it and reports every phase. 'pinkie pub deploy.requested host=…'
publishes the same request by hand.

  pinkie deploy @web --flake git+https://git.example.org/infra --wait
  pinkie deploy all '!koishi' --build-on target --goal boot --dry-run

Exit codes: 0 requested (with --wait: every host activated); 1 a local build
failed or (with --wait) a host failed, rolled back, was skipped or timed out;
2 bad input (a flake that does not evaluate, an unknown host, tag or goal) or
no connection to the hub, and then nothing is published.`)
	cf := addClientFlags(fs, a)
	flake := fs.String("flake", ".", "flake `REF` holding nixosConfigurations")
	buildOn := fs.String("build-on", "", "where to build: local, target or a builder `HOST` (default: each host's buildOn, else local)")
	goal := fs.String("goal", "", "switch, boot, test or dry-activate (default: each host's goal, else switch)")
	wait := fs.Bool("wait", false, "follow the deploys until every host has an outcome; exit 1 if any failed")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dryRun := fs.Bool("dry-run", false, "print the plan (host, build location, goal) and do nothing")
	expires := fs.Duration("expires", 24*time.Hour, "a host that has not started the deploy after this long skips it")
	timeout := fs.Duration("timeout", 30*time.Minute, "with --wait, give up after this long")
	pushTo := fs.String("push-to", "", "after a local build, copy closures to this store `URL` (nix copy --to) where targets fetch them")
	nixKey := fs.String("nix-key", os.Getenv("PINKIE_NIX_KEY"), "after a local build, sign the closure with this Nix secret key `FILE` and upload what the hub's cache lacks (default: nix-signing.sec next to --nkey, when it exists; env PINKIE_NIX_KEY)")
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	selectors := fs.Positional()
	if len(selectors) == 0 {
		return cli.Usagef("missing SELECTOR: name hosts, @tags, globs or all")
	}
	if *goal != "" {
		if err := fleet.CheckGoal(*goal); err != nil {
			return cli.Usagef("--goal: %v", err)
		}
	}
	if *expires <= 0 {
		return cli.Usagef("--expires must be positive")
	}
	n := nix.Nix{Run: nix.ExecRunner{}}
	res, plans, err := deploy.Plan(ctx, n, *flake, selectors, *buildOn, *goal)
	var bad *deploy.BadRequest
	if errors.As(err, &bad) {
		return cli.Usagef("%s", bad.Msg)
	}
	if err != nil {
		return err
	}
	res.DryRun = *dryRun
	if *dryRun {
		return printLine(a, *asJSON, res, func() { fleetview.WriteDeployPlan(a.stdout, res) })
	}
	c, err := cf.connect(ctx, "pinkie deploy")
	if err != nil {
		return err
	}
	defer c.Close()
	var lines io.Writer
	if !*asJSON {
		lines = a.stdout
	}
	opts := deploy.SendOptions{PushTo: *pushTo, Expires: *expires, RequestedBy: requester(), SourceHost: cliSourceHost(), Stderr: a.stderr, Lines: lines}
	if key := deployNixKey(*nixKey, *cf.nkey); key != "" && *pushTo == "" {
		upload := hubCacheUpload(c)
		opts.Upload = func(ctx context.Context, path string) (*fleetview.CacheUpload, error) {
			return deploy.UploadClosure(ctx, n, upload, key, path)
		}
		// Builders and targets build exactly what was evaluated here,
		// from the hub's cache: the flake's source (inputs included,
		// uncommitted changes included) goes there too.
		src, up, err := deploy.ShipFlakeSource(ctx, n, upload, key, res.Flake)
		if err != nil {
			return err
		}
		res.Flake, res.SourceUpload = src, up
	}
	firstSeq, err := deploy.Send(ctx, n, c.Publisher(), &res, plans, opts)
	if err != nil {
		return err
	}
	if *wait && firstSeq > 0 {
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		next, err := c.FollowDeploys(wctx, firstSeq)
		if err != nil {
			err = cli.UsageExit(err)
		} else {
			err = deploy.Follow(wctx, next, res.Hosts, lines)
		}
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	failed := deploy.Failed(res.Hosts, *wait)
	if *asJSON || *wait {
		if err := printLine(a, *asJSON, res, func() { fleetview.WriteDeployOutcomes(a.stdout, res) }); err != nil {
			return err
		}
	}
	if failed > 0 {
		return cli.Finding("%d of %d hosts did not deploy", failed, len(res.Hosts))
	}
	return nil
}

// deployNixKey is the Nix secret key a deploy signs local builds with: the
// flag (or PINKIE_NIX_KEY), else nix-signing.sec beside the nkey file (as
// pinkie keys init lays an auth directory out), else none.
func deployNixKey(flag, nkeyFile string) string {
	if flag != "" {
		return flag
	}
	if nkeyFile == "" {
		return ""
	}
	p := streams.NixSecretKeyFile(filepath.Dir(nkeyFile))
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// hubCacheUpload uploads signed paths to the hub's Nix cache over c.
func hubCacheUpload(c streams.Requester) deploy.UploadFunc {
	return func(ctx context.Context, infos []*nixcache.NarInfo) (deploy.Uploaded, error) {
		st, err := streams.UploadNixPaths(ctx, c, streams.NixCachePutOperator, streams.NixStorePaths(infos))
		return deploy.Uploaded{Paths: st.Paths, SentHashes: st.MissingHashes, BytesSent: st.BytesSent}, err
	}
}
