package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/streams"
)

const cacheDoc = `
Look after the hub's Nix binary cache (the closures deploys carry).

  pinkie cache ls [--json]          every path: NAR size, upload time, why it is kept
  pinkie cache stats [--json]       paths and bytes against the budget
  pinkie cache gc [--dry-run] [--json]

The cache is held to the hub's --cache-budget. Retention keeps the whole
closure of each host's current and previous deploy, of deploys under way
and of paths uploaded within the hub's --cache-grace (an hour), and drops
the rest oldest upload first until the cache is under budget: after
uploads push it over, every ten minutes, and on 'pinkie cache gc'. Kept because: current:HOST, previous:HOST,
pending:HOST (a deploy under way), recent (a fresh upload); '-' is
collectable.

ls and stats need a reader key; gc needs an operator key.

Exit codes: 0 ok; 1 failure, or gc left the cache over budget because what
retention must keep is larger (raise --cache-budget); 2 usage, connection
or a key whose role does not allow the call.`

func runCache(ctx context.Context, a *app, args []string) error {
	if ok, err := needSubcommand(args, "cache", "ls|stats|gc …", cacheDoc, "ls, stats or gc"); !ok {
		return err
	}
	sub := args[0]
	switch sub {
	case "ls", "list", "stats", "gc":
	default:
		return cli.Usagef("unknown subcommand %q: want ls, stats or gc", sub)
	}
	fs := cli.NewFlagSet("cache "+sub, "", cacheDoc)
	cf := addClientFlags(fs, a)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	var dryRun *bool
	if sub == "gc" {
		dryRun = fs.Bool("dry-run", false, "say what would be dropped, drop nothing")
	}
	if err := fs.ParseNoArgs(args[1:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := cf.connect(ctx, "pinkie cache "+sub)
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "ls", "list":
		entries, err := streams.NixCacheList(ctx, c)
		if err != nil {
			return err
		}
		if entries == nil {
			entries = []streams.NixCacheEntry{}
		}
		return printLine(a, *asJSON, entries, func() {
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STORE PATH\tNAR SIZE\tCACHED\tUPLOADED\tKEPT BECAUSE")
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.StorePath, fleetview.ByteSize(int64(e.NarSize)), fleetview.ByteSize(e.FileSize), e.Uploaded.Local().Format(time.DateTime), orDash(strings.Join(e.KeptBecause, ",")))
			}
			tw.Flush()
		})
	case "stats":
		st, err := streams.NixCacheStatsOf(ctx, c)
		if err != nil {
			return err
		}
		return printLine(a, *asJSON, st, func() {
			fmt.Fprintf(a.stdout, "paths        %d\nbytes        %s of a budget of %s\nkept         %d paths, %s\ncollectable  %d paths, %s", st.Paths, fleetview.ByteSize(st.Bytes), fleetview.ByteSize(st.BudgetBytes), st.KeptPaths, fleetview.ByteSize(st.KeptBytes), st.CollectablePaths, fleetview.ByteSize(st.CollectableBytes))
			if st.OrphanNARs > 0 {
				fmt.Fprintf(a.stdout, " (with %d NARs no path names)", st.OrphanNARs)
			}
			fmt.Fprintln(a.stdout)
		})
	}
	res, err := streams.NixCacheCollect(ctx, c, *dryRun)
	if err != nil {
		return err
	}
	if res.Dropped == nil {
		res.Dropped = []streams.NixCacheEntry{}
	}
	err = printLine(a, *asJSON, res, func() {
		verb := "dropped"
		if res.DryRun {
			verb = "would drop"
		}
		for _, e := range res.Dropped {
			fmt.Fprintf(a.stdout, "%s %s (%s, uploaded %s)\n", verb, e.StorePath, fleetview.ByteSize(e.FileSize), e.Uploaded.Local().Format(time.DateTime))
		}
		if more := res.DroppedPaths - len(res.Dropped); more > 0 {
			fmt.Fprintf(a.stdout, "… and %d more\n", more)
		}
		fmt.Fprintf(a.stdout, "%s %d paths and %d NARs, %s; the cache holds %s of a budget of %s\n", verb, res.DroppedPaths, res.DroppedNARs, fleetview.ByteSize(res.BytesFreed), fleetview.ByteSize(res.BytesAfter), fleetview.ByteSize(res.BudgetBytes))
	})
	if err != nil || !res.OverBudget {
		return err
	}
	return cli.Finding("the cache stays over its budget (%s of %s): what the hosts' current and previous deploys, deploys under way and recent uploads need is more; raise the hub's --cache-budget", fleetview.ByteSize(res.BytesAfter), fleetview.ByteSize(res.BudgetBytes))
}
