package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/clientevent"
	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/schemas"
	"github.com/pinkiefleet/pinkie/streams"
)

func runSilence(ctx context.Context, a *app, args []string) error {
	if ok, err := needSubcommand(args, "silence", "add|ls|rm …", silenceDoc, "add, ls or rm"); !ok {
		return err
	}
	switch args[0] {
	case "add":
		return runSilenceAdd(ctx, a, args[1:])
	case "ls", "list":
		return runSilenceLs(ctx, a, args[1:])
	case "rm", "remove":
		return runSilenceRm(ctx, a, args[1:])
	}
	return cli.Usagef("unknown subcommand %q: want add, ls or rm", args[0])
}

const silenceDoc = `
Silence alerts for a while: silenced alerts still show in 'pinkie alerts',
marked silenced, but are not notified. When a silence ends (expires or is
removed) while its alerts still fire, they are notified then.

  pinkie silence add host=goliath rule=fs.usage --for 2h --comment "resizing"
  pinkie silence add 'host=edge-*' severity=info --until 2026-12-01T08:00:00Z
  pinkie silence ls [--all]
  pinkie silence rm ID

Matchers are LABEL=PATTERN with shell patterns (*, ?, [a-z]) on host, rule,
object, severity, kind or a rule's labels; all must match. add and rm need an
operator key; a reader key can list.`

func runSilenceAdd(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("silence add", "LABEL=PATTERN…", silenceDoc)
	cf := addClientFlags(fs, a)
	forD := fs.String("for", "", "how long, e.g. 30m, 2h, 3d")
	until := fs.String("until", "", "until `TIME` (RFC 3339), instead of --for")
	comment := fs.String("comment", "", "why (shown in silence ls)")
	asJSON := fs.Bool("json", false, "print the silence as JSON")
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	s, err := clientevent.Silence(hex.EncodeToString(idb[:]), fs.Positional(), *forD, *until, *comment, silenceWho(), time.Now())
	if err != nil {
		return cli.Usagef("%v", err)
	}
	ev, subject, err := silenceEvent("silence.added", s.StartsAt, &s)
	if err != nil {
		return err
	}
	c, err := cf.connect(ctx, "pinkie silence add")
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Publish(ctx, subject, ev); err != nil {
		return err
	}
	visible := silenceWait(ctx, c.JS, s.ID, true)
	if *asJSON {
		printJSON(a.stdout, s)
	} else {
		fmt.Fprintf(a.stdout, "silence %s added: %s until %s (%s)\n", show(s.ID), show(events.FormatSilenceMatchers(s.Matchers)), s.EndsAt.Format(time.RFC3339), fleetview.ShortDuration(s.EndsAt.Sub(s.StartsAt)))
	}
	if !visible {
		fmt.Fprintln(a.stderr, "pinkie silence add: recorded, but the hub's projection has not shown it yet (is the hub's projector running?)")
	}
	return nil
}

// silenceEvent builds and checks a silence event against its schema.
func silenceEvent(kind string, now time.Time, data any) (events.Event, string, error) {
	host, _ := os.Hostname()
	if events.ValidHost(host) != nil {
		host = "operator"
	}
	set, err := schemas.Load()
	if err != nil {
		return events.Event{}, "", err
	}
	ev, subject, err := clientevent.SilenceEvent(set, kind, host, now, data)
	var ue *clientevent.UserError
	if errors.As(err, &ue) {
		return ev, "", cli.Usagef("%v", ue.Err)
	}
	return ev, subject, err
}

// silenceWait waits briefly until the alerts projection shows (or no
// longer shows) a silence, so a following `silence ls` sees the change.
func silenceWait(ctx context.Context, js jetstream.JetStream, id string, present bool) bool {
	return streams.WaitKey(ctx, js, events.BucketAlerts, projections.SilenceKey(id), present, 5*time.Second)
}

func silenceWho() string {
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		who += "@" + h
	}
	return who
}

func runSilenceLs(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("silence ls", "", silenceDoc)
	cf := addClientFlags(fs, a)
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "include silences that have ended but whose expiry the hub has not yet recorded")
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	c, err := cf.connect(ctx, "pinkie silence ls")
	if err != nil {
		return err
	}
	defer c.Close()
	now := time.Now()
	alerts, silences, err := alertsLoad(ctx, c, now)
	if err != nil {
		return err
	}
	return printList(a, *asJSON, fleetview.Silences(alerts, silences, now, *all), "no silences", now, fleetview.WriteSilences)
}

func runSilenceRm(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("silence rm", "ID", silenceDoc)
	cf := addClientFlags(fs, a)
	asJSON := fs.Bool("json", false, "print the removal as JSON")
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	if len(fs.Positional()) != 1 {
		return cli.Usagef("want one silence ID (see pinkie silence ls)")
	}
	id := fs.Positional()[0]
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`).MatchString(id) {
		return cli.Usagef("silence ID %q: not an id (see pinkie silence ls)", id)
	}
	c, err := cf.connect(ctx, "pinkie silence rm")
	if err != nil {
		return err
	}
	defer c.Close()
	_, found, err := streams.ReadKey(ctx, c.JS, events.BucketAlerts, projections.SilenceKey(id))
	if err != nil {
		return cli.UsageExit(err)
	}
	if !found {
		return cli.Finding("no silence %s (see pinkie silence ls)", id)
	}
	r := events.SilenceRemoved{ID: id, RemovedBy: silenceWho()}
	ev, subject, err := silenceEvent("silence.removed", time.Now().UTC(), &r)
	if err != nil {
		return err
	}
	if _, err := c.Publish(ctx, subject, ev); err != nil {
		return err
	}
	silenceWait(ctx, c.JS, id, false)
	if *asJSON {
		printJSON(a.stdout, r)
		return nil
	}
	fmt.Fprintf(a.stdout, "silence %s removed\n", id)
	return nil
}
