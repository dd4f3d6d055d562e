package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/deploy/fleet"
	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
	"github.com/pinkiefleet/pinkie/streams"
)

// exitStale is last-deploy's exit code when a host is beyond --fail-after.
const exitStale = 3

type lastDeployResult struct {
	WarnAfterSeconds float64                `json:"warn_after_seconds"`
	FailAfterSeconds float64                `json:"fail_after_seconds"`
	Hosts            []fleetview.LastDeploy `json:"hosts"`
	ExitCode         int                    `json:"exit_code"`
}

func runLastDeploy(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("last-deploy", "", `
Print every host with the age of its last successful deploy, from the hub's
last-deploy record (KV bucket pinkie-last-deploy; 'nats kv get
pinkie-last-deploy HOST' shows the same record). Hosts are those the record
knows plus those declared with --flake or --hosts; a declared host that was
never deployed counts as beyond both limits. A reader key is enough.

Exit codes: 0 every host deployed within --warn-after; 1 some host beyond
--warn-after (the warnings say which and how old); 3 some host beyond
--fail-after or never deployed; 2 usage or connection errors.`)
	cf := addClientFlags(fs, a)
	warnAfter := fs.String("warn-after", "7d", "warn about hosts whose last successful deploy is older (e.g. 7d, 36h)")
	failAfter := fs.String("fail-after", "30d", "fail (exit 3) for hosts whose last successful deploy is older")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	flakeRef := fs.String("flake", "", "also list the hosts of this flake's nixosConfigurations (declared hosts)")
	var declared cli.StringList
	fs.Var(&declared, "hosts", "also list these declared `HOSTS` (comma-separated)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	warn, err := fleetview.ParseAge(*warnAfter)
	if err != nil {
		return cli.Usagef("--warn-after: %v", err)
	}
	fail, err := fleetview.ParseAge(*failAfter)
	if err != nil {
		return cli.Usagef("--fail-after: %v", err)
	}
	if fail < warn {
		return cli.Usagef("--fail-after %s is shorter than --warn-after %s", *failAfter, *warnAfter)
	}
	if *flakeRef != "" {
		fl, err := fleet.Read(ctx, nix.Nix{Run: nix.ExecRunner{}}, *flakeRef)
		if err != nil {
			return cli.Usagef("%v", err)
		}
		declared = append(declared, fl.Names()...)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := cf.connect(ctx, "pinkie last-deploy")
	if err != nil {
		return err
	}
	defer c.Close()
	recs, err := streams.ReadBucket(ctx, c.JS, lastdeploy.Bucket, "")
	if err != nil {
		return cli.UsageExit(err)
	}
	records, err := fleetview.LastDeploys(recs)
	if err != nil {
		return cli.UsageExit(err)
	}
	now := time.Now()
	res := lastDeployResult{WarnAfterSeconds: warn.Seconds(), FailAfterSeconds: fail.Seconds(), Hosts: fleetview.JudgeLastDeploys(records, declared, now, warn, fail)}
	var warnings []string
	for _, l := range res.Hosts {
		switch l.Status {
		case "never":
			warnings = append(warnings, fmt.Sprintf("%s has never been deployed successfully", l.Host))
			res.ExitCode = exitStale
		case "fail":
			warnings = append(warnings, fmt.Sprintf("%s last deployed %s ago, beyond --fail-after %s", l.Host, fleetview.HumanAge(now.Sub(l.Record.LastSuccess.Time)), *failAfter))
			res.ExitCode = exitStale
		case "warn":
			warnings = append(warnings, fmt.Sprintf("%s last deployed %s ago, beyond --warn-after %s", l.Host, fleetview.HumanAge(now.Sub(l.Record.LastSuccess.Time)), *warnAfter))
			res.ExitCode = max(res.ExitCode, cli.ExitFinding)
		}
	}
	if len(res.Hosts) == 0 {
		warnings = append(warnings, "no hosts: nothing was ever requested and none declared (--flake, --hosts)")
		res.ExitCode = cli.ExitFinding
	}
	if err := printLine(a, *asJSON, res, func() { fleetview.WriteLastDeploys(a.stdout, now, res.Hosts) }); err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(a.stderr, "warning: "+show(w))
	}
	if res.ExitCode != 0 {
		return cli.ExitError{Code: res.ExitCode, Err: errors.New("")}
	}
	return nil
}
