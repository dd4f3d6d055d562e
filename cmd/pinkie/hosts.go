package main

import (
	"context"
	"time"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
)

func runHosts(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("hosts", "[HOST]", `
List the fleet's hosts from the inventory: online or silent, when last seen,
OS, kernel, uptime and how many producers report. With HOST, show that host
in detail with its drives, pools, arrays and filesystems and their verdicts.

  pinkie hosts
  pinkie hosts goliath
  pinkie hosts --json          the inventory as JSON (the dashboard's /api/hosts shape)

Exit status: 0, or 1 when HOST is not in the inventory; 2 on usage or
connection errors.`)
	cf := addClientFlags(fs, a)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	only, err := optionalHost(fs)
	if err != nil {
		return err
	}
	c, err := cf.connect(ctx, "pinkie hosts")
	if err != nil {
		return err
	}
	defer c.Close()
	all, err := readView(ctx, c, events.BucketInventory, "", fleetview.Hosts)
	if err != nil {
		return err
	}
	var hosts []*projections.Host
	for _, h := range all {
		if only == "" || h.Host == only {
			hosts = append(hosts, h)
		}
	}
	now := time.Now()
	if only == "" {
		return printList(a, *asJSON, hosts, "no hosts in the inventory yet", now, fleetview.WriteHosts)
	}
	if len(hosts) == 0 {
		return cli.Finding("host %q is not in the inventory (no event from it yet)", only)
	}
	drives, err := readView(ctx, c, events.BucketDrives, only+".", fleetview.Drives)
	if err != nil {
		return err
	}
	v := fleetview.HostView{Host: hosts[0], Drives: drives}
	if *asJSON {
		printJSON(a.stdout, v)
		return nil
	}
	return fleetview.WriteHost(a.stdout, now, v)
}

// optionalHost reads the optional HOST argument ("" without one).
func optionalHost(fs *cli.FlagSet) (string, error) {
	if len(fs.Positional()) > 1 {
		return "", cli.Usagef("at most one HOST, got %q", fs.Positional())
	}
	if len(fs.Positional()) == 0 {
		return "", nil
	}
	if err := events.ValidHost(fs.Positional()[0]); err != nil {
		return "", cli.Usagef("%v", err)
	}
	return fs.Positional()[0], nil
}
