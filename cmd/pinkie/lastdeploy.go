package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
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

// lastDeployHost is one host's line of pinkie last-deploy.
type lastDeployHost = fleetview.LastDeploy

type lastDeployResult struct {
	WarnAfterSeconds float64          `json:"warn_after_seconds"`
	FailAfterSeconds float64          `json:"fail_after_seconds"`
	Hosts            []lastDeployHost `json:"hosts"`
	ExitCode         int              `json:"exit_code"`
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
		return cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	records, err := fleetview.LastDeploys(recs)
	if err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	res := lastDeployResult{WarnAfterSeconds: warn.Seconds(), FailAfterSeconds: fail.Seconds()}
	isDeclared := map[string]bool{}
	for _, h := range declared {
		isDeclared[h] = true
		if _, ok := records[h]; !ok {
			records[h] = nil
		}
	}
	now := time.Now()
	var warnings []string
	for _, h := range sortedHosts(records) {
		r := records[h]
		line := fleetview.NewLastDeploy(h, r, isDeclared[h], now, warn, fail)
		switch line.Status {
		case "never":
			warnings = append(warnings, fmt.Sprintf("%s has never been deployed successfully", h))
			res.ExitCode = exitStale
		case "fail":
			warnings = append(warnings, fmt.Sprintf("%s last deployed %s ago, beyond --fail-after %s", h, fleetview.HumanAge(now.Sub(r.LastSuccess.Time)), *failAfter))
			res.ExitCode = exitStale
		case "warn":
			warnings = append(warnings, fmt.Sprintf("%s last deployed %s ago, beyond --warn-after %s", h, fleetview.HumanAge(now.Sub(r.LastSuccess.Time)), *warnAfter))
			if res.ExitCode == 0 {
				res.ExitCode = cli.ExitFinding
			}
		}
		res.Hosts = append(res.Hosts, line)
	}
	if len(res.Hosts) == 0 {
		warnings = append(warnings, "no hosts: nothing was ever requested and none declared (--flake, --hosts)")
		res.ExitCode = cli.ExitFinding
	}
	if *asJSON {
		if err := json.NewEncoder(a.stdout).Encode(res); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tSTATUS\tLAST SUCCESS\tAGE\tREVISION\tLAST ATTEMPT")
		for _, l := range res.Hosts {
			when, age, rev, attempt := "-", "-", "-", "-"
			if l.Record != nil && l.Record.LastSuccess != nil {
				s := l.Record.LastSuccess
				when, age = s.Time.Local().Format("2006-01-02 15:04:05"), fleetview.HumanAge(now.Sub(s.Time))
				if s.Revision != "" {
					rev = s.Revision
					if len(rev) > 12 {
						rev = rev[:12]
					}
				}
			}
			if l.Record != nil && l.Record.LastAttempt != nil {
				at := l.Record.LastAttempt
				attempt = at.Outcome + " (" + at.Phase + ", " + fleetview.HumanAge(now.Sub(at.PhaseTime)) + " ago)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", show(l.Host), show(l.Status), when, age, show(rev), show(attempt))
		}
		_ = tw.Flush()
	}
	for _, w := range warnings {
		fmt.Fprintln(a.stderr, "warning: "+show(w))
	}
	if res.ExitCode != 0 {
		return cli.ExitError{Code: res.ExitCode, Err: errors.New("")}
	}
	return nil
}
