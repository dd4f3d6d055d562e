package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/streams"
)

func runGuests(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("guests", "[HOST]", `
List the fleet's NixOS containers and MicroVMs from the guests projection,
grouped by host: status (running, restarting, failed, stopped, unknown, or
missing: declared by the flake but never reported), addresses, the domains
routed to them (from the declared fleet: pinkie fleet sync), memory (of its
limit), CPU and network rates between the last two reports, disk of the state
directory, uptime and when it last reported. With HOST, only that host's.

  pinkie guests
  pinkie guests goliath
  pinkie guests --json         the dashboard's GET /api/guests shape

Exit status: 0 when every guest runs; 1 when one is down (failed,
restarting, stopped, unknown or missing); 2 on usage or connection errors.`)
	cf := addClientFlags(fs, a)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	only, err := optionalHost(fs)
	if err != nil {
		return err
	}
	c, err := cf.connect(ctx, "pinkie guests")
	if err != nil {
		return err
	}
	defer c.Close()
	prefix := ""
	if only != "" {
		prefix = only + "."
	}
	recs, err := streams.ReadProjection(ctx, c.JS, projections.GuestsBucket, prefix)
	if err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	decl, err := guestsDeclared(ctx, c.JS)
	if err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	now := time.Now()
	gs, err := fleetview.Guests(recs, decl, only, now)
	if err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	if *asJSON {
		printJSON(a.stdout, gs)
	} else if len(gs) == 0 {
		fmt.Fprintln(a.stdout, "no containers or MicroVMs reported or declared")
	} else {
		printGuests(a.stdout, now, gs)
	}
	var down []string
	for _, g := range gs {
		if g.Down() {
			down = append(down, g.Host+"/"+g.Name+" "+g.Status)
		}
	}
	if len(down) > 0 {
		return cli.ExitError{Code: cli.ExitFinding, Err: fmt.Errorf("%d guest(s) not running: %s", len(down), strings.Join(down, ", "))}
	}
	return nil
}

// guestsDeclared reads the declared fleet, or nil when none was synced.
func guestsDeclared(ctx context.Context, js jetstream.JetStream) (*events.FleetDeclared, error) {
	m, err := streams.ReadLastFleet(ctx, js)
	var le *streams.LastError
	switch {
	case errors.As(err, &le) && le.Op == streams.LastOpen:
		return nil, fmt.Errorf("%w (is this a pinkie hub?)", err)
	case errors.As(err, &le) && le.Op == streams.LastGet:
		return nil, fmt.Errorf("read the declared fleet: %w", le.Err)
	case errors.As(err, &le):
		return nil, fmt.Errorf("the hub's declared fleet (seq %d): %w", le.Seq, le.Err)
	case err != nil:
		return nil, err
	case m == nil:
		return nil, nil
	}
	var d events.FleetDeclared
	if err := m.Event.DataAs(&d); err != nil {
		return nil, fmt.Errorf("the hub's declared fleet (seq %d): %w", m.Seq, err)
	}
	return &d, nil
}

// printGuests is the guests table, a block per host.
func printGuests(w io.Writer, now time.Time, gs []fleetview.GuestView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tGUEST\tTYPE\tSTATUS\tADDRESSES\tDOMAINS\tMEMORY\tCPU\tNET IN/OUT\tDISK\tUPTIME\tREPORTED")
	for _, g := range gs {
		mem := fleetview.ByteSize(int64(g.Guest.MemoryBytes))
		if g.Guest.MemoryMaxBytes > 0 {
			mem += fmt.Sprintf(" (%.0f%%)", g.Guest.MemoryPercent)
		}
		cpu, net := "-", "-"
		if g.CPUPercent != nil {
			cpu = fmt.Sprintf("%.1f%%", *g.CPUPercent)
		}
		if g.NetRXBytesPerSecond != nil && g.NetTXBytesPerSecond != nil {
			net = fleetview.ByteSize(int64(*g.NetRXBytesPerSecond)) + "/s " + fleetview.ByteSize(int64(*g.NetTXBytesPerSecond)) + "/s"
		}
		disk, uptime, reported := "-", "-", "never"
		if g.Guest.StateDir != "" {
			disk = fleetview.ByteSize(int64(g.Guest.DiskBytes))
		}
		if g.Guest.UptimeSeconds > 0 {
			uptime = fleetview.ShortDuration(time.Duration(g.Guest.UptimeSeconds) * time.Second)
		}
		if !g.Time.IsZero() {
			reported = fleetview.Ago(now, g.Time)
			if g.Stale {
				reported += " (stale)"
			}
		}
		status := g.Status
		if g.Guest.Restarts > 0 {
			status += fmt.Sprintf(" (%d restarts)", g.Guest.Restarts)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", show(g.Host), show(g.Name), show(orDash(g.Guest.Type)), show(status),
			show(orDash(strings.Join(g.Guest.Addresses, ","))), show(orDash(strings.Join(g.Domains, ","))), mem, cpu, net, disk, uptime, reported)
	}
	tw.Flush()
}
