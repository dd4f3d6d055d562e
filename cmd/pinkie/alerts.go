package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/cmd/pinkie/notifyhub"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/streams"
)

// alertsLoad reads the active alerts and silences, marking each alert
// with the silences that cover it at now.
func alertsLoad(ctx context.Context, js jetstream.JetStream, now time.Time) ([]projections.ActiveAlert, []events.SilenceAdded, error) {
	recs, err := streams.ReadProjection(ctx, js, events.BucketAlerts, "")
	if err != nil {
		return nil, nil, err
	}
	return fleetview.Alerts(recs, now)
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
	all, _, err := alertsLoad(ctx, c.JS, now)
	if err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	shown, finding := fleetview.FilterAlerts(all, *host, *minSev)
	if *asJSON {
		if shown == nil {
			shown = []projections.ActiveAlert{}
		}
		printJSON(a.stdout, shown)
	} else if len(shown) == 0 {
		fmt.Fprintln(a.stdout, "no alerts firing")
	} else {
		printAlerts(a.stdout, now, shown)
	}
	if finding {
		return cli.ExitError{Code: cli.ExitFinding}
	}
	return nil
}

// printAlerts is the alerts table.
func printAlerts(w io.Writer, now time.Time, shown []projections.ActiveAlert) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tHOST\tRULE\tOBJECT\tSINCE\tSILENCED\tSUMMARY")
	for _, al := range shown {
		sil := "-"
		if al.Silenced {
			sil = "silenced (" + strings.Join(al.SilencedBy, ",") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", show(al.Severity), show(al.Host), show(al.Rule), show(orDash(al.Object)),
			fleetview.Ago(now, al.StartsAt), show(sil), show(al.Summary))
	}
	tw.Flush()
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
	req, _ := json.Marshal(notifyhub.TestRequest{Channel: fs.Positional()[1]})
	inbox := c.Conn.NewRespInbox()
	replies, err := c.Conn.SubscribeSync(inbox)
	if err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("notify test: %w", err)}
	}
	defer replies.Unsubscribe()
	if err := c.Conn.PublishRequest(streams.NotifyTestSubject, inbox, req); err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("notify test: %w", err)}
	}
	// A refused publish shows as the connection's last error once flushed.
	if err := c.Conn.FlushTimeout(5 * time.Second); err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("notify test: %w", err)}
	}
	if le := c.Conn.LastError(); le != nil && strings.Contains(le.Error(), "Permissions Violation") {
		return c.Refused("notify test: publish "+streams.NotifyTestSubject, le)
	}
	msg, err := replies.NextMsgWithContext(alertsTimeout(ctx, 45*time.Second))
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) {
			return cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("no notifier answers on the hub (are channels configured in its notify section?): %w", err)}
		}
		return cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("notify test: %w", err)}
	}
	var rep notifyhub.TestReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("notify test: bad answer: %w", err)}
	}
	if *asJSON {
		printJSON(a.stdout, rep)
	} else if rep.OK {
		fmt.Fprintf(a.stdout, "test message delivered to %s (%s)\n", show(rep.Channel), show(rep.Type))
	}
	if !rep.OK {
		return cli.ExitError{Code: cli.ExitFinding, Err: fmt.Errorf("test message to %s failed: %s", rep.Channel, rep.Error)}
	}
	return nil
}

func alertsTimeout(ctx context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(ctx, d)
	go func() { <-ctx.Done(); cancel() }()
	return ctx
}
