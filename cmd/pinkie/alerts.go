package main

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/cmd/pinkie/notifyhub"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/streams"
)

// alertsLoad reads the active alerts and silences, marking each alert
// with the silences that cover it at now.
func alertsLoad(ctx context.Context, c *streams.Client, now time.Time) ([]projections.ActiveAlert, []events.SilenceAdded, error) {
	recs, err := streams.ReadProjection(ctx, c.JS, events.BucketAlerts, "")
	if err != nil {
		return nil, nil, cli.UsageExit(err)
	}
	alerts, silences, err := fleetview.Alerts(recs, now)
	if err != nil {
		return nil, nil, cli.UsageExit(err)
	}
	return alerts, silences, nil
}

func runAlerts(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("alerts", "", `
List the alerts firing now, most severe first: severity, host, rule, object,
since when, whether a silence covers it, and the summary. Silenced alerts are
listed too, marked "silenced"; they are not notified.

  pinkie alerts
  pinkie alerts --host 'edge-*' --severity warning
  pinkie alerts --json        the alerts as JSON (the dashboard's /api/alerts shape)

Exit status: 0 when no unsilenced warning or critical alert fires, 1 when one
does (so CI can gate on it), 2 on usage or connection errors.`)
	cf := addClientFlags(fs, a)
	asJSON := fs.Bool("json", false, "print JSON")
	host := fs.String("host", "", "only hosts matching `PATTERN` (shell pattern)")
	minSev := fs.String("severity", "info", "only alerts at least this `SEVERITY`: critical, warning or info")
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	if fleetview.SeverityRank(*minSev) == 2 && *minSev != events.SeverityInfo {
		return cli.Usagef("--severity %q: want critical, warning or info", *minSev)
	}
	if _, err := path.Match(*host, ""); err != nil {
		return cli.Usagef("--host %q: %v", *host, err)
	}
	c, err := cf.connect(ctx, "pinkie alerts")
	if err != nil {
		return err
	}
	defer c.Close()
	now := time.Now()
	all, _, err := alertsLoad(ctx, c, now)
	if err != nil {
		return err
	}
	shown, firing := fleetview.FilterAlerts(all, *host, *minSev)
	if err := printList(a, *asJSON, shown, "no alerts firing", now, fleetview.WriteAlerts); err != nil {
		return err
	}
	if firing {
		return cli.ExitError{Code: cli.ExitFinding}
	}
	return nil
}

func runNotify(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("notify", "test CHANNEL", `
Ask the hub's notifier to send a test message to one of its configured
channels (the "notify" section of the hub's --config) and report the result.
Needs an operator key.

  pinkie notify test ops-matrix

Exit status: 0 delivered, 1 the channel refused or failed, 2 usage or
connection errors (including: no notifier runs on the hub).`)
	cf := addClientFlags(fs, a)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	if len(fs.Positional()) != 2 || fs.Positional()[0] != "test" {
		return cli.Usagef("want: notify test CHANNEL")
	}
	c, err := cf.connect(ctx, "pinkie notify")
	if err != nil {
		return err
	}
	defer c.Close()
	rep, err := notifyhub.Test(ctx, c, fs.Positional()[1])
	if err != nil {
		return cli.UsageExit(err)
	}
	if *asJSON {
		printJSON(a.stdout, rep)
	} else if rep.OK {
		fmt.Fprintf(a.stdout, "test message delivered to %s (%s)\n", show(rep.Channel), show(rep.Type))
	}
	if !rep.OK {
		return cli.Finding("test message to %s failed: %s", rep.Channel, rep.Error)
	}
	return nil
}
