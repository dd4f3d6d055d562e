package main

import (
	"context"
	"fmt"
	"strings"
	"time"

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
	now := time.Now()
	gs, err := readView(ctx, c, projections.GuestsBucket, prefix, func(recs map[string][]byte) ([]fleetview.GuestView, error) {
		decl, err := guestsDeclared(ctx, c, *cf.server)
		if err != nil {
			return nil, err
		}
		return fleetview.Guests(recs, decl, only, now)
	})
	if err != nil {
		return err
	}
	if err := printList(a, *asJSON, gs, "no containers or MicroVMs reported or declared", now, fleetview.WriteGuests); err != nil {
		return err
	}
	if down := fleetview.GuestsDown(gs); len(down) > 0 {
		return cli.Finding("%d guest(s) not running: %s", len(down), strings.Join(down, ", "))
	}
	return nil
}

// guestsDeclared reads the declared fleet, or nil when none was synced.
func guestsDeclared(ctx context.Context, c *streams.Client, server string) (*events.FleetDeclared, error) {
	m, err := lastFleet(ctx, c, server)
	if err != nil || m == nil {
		return nil, err
	}
	var d events.FleetDeclared
	if err := m.Event.DataAs(&d); err != nil {
		return nil, fmt.Errorf("the hub's declared fleet (seq %d): %w", m.Seq, err)
	}
	return &d, nil
}
