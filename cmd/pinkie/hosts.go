package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/streams"
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
	recs, err := streams.ReadProjection(ctx, c.JS, events.BucketInventory, "")
	if err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	all, err := fleetview.Hosts(recs)
	if err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	var hosts []*projections.Host
	for _, h := range all {
		if only == "" || h.Host == only {
			hosts = append(hosts, h)
		}
	}
	now := time.Now()
	if only != "" {
		if len(hosts) == 0 {
			return cli.ExitError{Code: cli.ExitFinding, Err: fmt.Errorf("host %q is not in the inventory (no event from it yet)", only)}
		}
		drecs, err := streams.ReadProjection(ctx, c.JS, events.BucketDrives, only+".")
		if err != nil {
			return cli.ExitError{Code: cli.ExitUsage, Err: err}
		}
		drives, err := fleetview.Drives(drecs)
		if err != nil {
			return cli.ExitError{Code: cli.ExitUsage, Err: err}
		}
		v := fleetview.HostView{Host: hosts[0], Drives: drives}
		if *asJSON {
			printJSON(a.stdout, v)
			return nil
		}
		hostsDetail(a, now, v)
		return nil
	}
	if *asJSON {
		if hosts == nil {
			hosts = []*projections.Host{}
		}
		printJSON(a.stdout, hosts)
		return nil
	}
	if len(hosts) == 0 {
		fmt.Fprintln(a.stdout, "no hosts in the inventory yet")
		return nil
	}
	printHosts(a.stdout, now, hosts)
	return nil
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

// printHosts is the hosts table.
func printHosts(w io.Writer, now time.Time, hosts []*projections.Host) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tLAST SEEN\tOS\tKERNEL\tUPTIME\tPRODUCERS")
	for _, h := range hosts {
		os, kernel, uptime := "-", "-", "-"
		if h.Profile != nil {
			os, kernel = orDash(h.Profile.OS.PrettyName), orDash(h.Profile.Kernel)
		}
		if h.Heartbeat != nil {
			uptime = fleetview.ShortDuration(time.Duration(h.Heartbeat.UptimeSeconds) * time.Second)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", show(h.Host), fleetview.HostState(h), fleetview.Ago(now, h.LastSeen), show(os), show(kernel), uptime, len(h.Producers))
	}
	tw.Flush()
}

func hostsDetail(a *app, now time.Time, v fleetview.HostView) {
	h := v.Host
	w := a.stdout
	fmt.Fprintf(w, "host:       %s (%s)\n", show(h.Host), fleetview.HostState(h))
	fmt.Fprintf(w, "last seen:  %s (%s)\n", h.LastSeen.Format(time.RFC3339), fleetview.Ago(now, h.LastSeen))
	if h.LastHeartbeat != nil {
		fmt.Fprintf(w, "heartbeat:  %s (%s)\n", h.LastHeartbeat.Format(time.RFC3339), fleetview.Ago(now, *h.LastHeartbeat))
	}
	if p := h.Profile; p != nil {
		fmt.Fprintf(w, "os:         %s\nkernel:     %s %s\ncpu:        %s (%d cores, %d threads)\nmemory:     %.1f GiB\n",
			show(orDash(p.OS.PrettyName)), show(p.Kernel), show(p.Arch), show(p.CPU.Model), p.CPU.Cores, p.CPU.Threads, float64(p.Memory.TotalBytes)/(1<<30))
	}
	names := make([]string, 0, len(h.Producers))
	for n := range h.Producers {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "producers:")
	for _, n := range names {
		p := h.Producers[n]
		fmt.Fprintf(w, "  %-12s %-28s last %s, %d events\n", show(n), show(strings.Join(p.Kinds, ",")), fleetview.Ago(now, p.Last), p.Events)
	}
	if len(v.Drives) > 0 {
		fmt.Fprintln(w, "storage:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, d := range v.Drives {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", show(d.Kind), show(d.Object), show(d.Verdict), show(d.State), show(strings.Join(d.Reasons, "; ")))
		}
		tw.Flush()
	}
}
