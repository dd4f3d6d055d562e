package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
)

func runTail(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("tail", "[FILTER]", `
Follow events at the hub as they happen, one readable line each:
time, host, kind, object and the data's main fields. FILTER is a subject
pattern below "pinkie." (default: everything):

  pinkie tail                      every event
  pinkie tail 'host.goliath.>'     goliath's telemetry
  pinkie tail 'deploy.>'           deploy requests and phases
  pinkie tail 'alert.>'            alerts
  pinkie tail 'deadletter.>'       events the hub refused

--json prints one JSON object per line: {"subject": …, "event": {…}}.`)
	cf := addClientFlags(fs, a)
	asJSON := fs.Bool("json", false, "print JSON lines")
	count := fs.Int("count", 0, "exit after `N` events (0: follow until interrupted)")
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	if len(fs.Positional()) > 1 {
		return cli.Usagef("at most one FILTER, got %q", fs.Positional())
	}
	filter := events.AllSubjects
	if len(fs.Positional()) == 1 {
		filter = fs.Positional()[0]
		if !strings.HasPrefix(filter, events.SubjectPrefix) && filter != ">" {
			filter = events.SubjectPrefix + filter
		}
	}
	c, err := cf.connect(ctx, "pinkie tail")
	if err != nil {
		return err
	}
	defer c.Close()
	msgs := make(chan *nats.Msg, 4096)
	sub, err := c.Conn.ChanSubscribe(filter, msgs)
	if err != nil {
		return cli.Usagef("subscribe %q: %v", filter, err)
	}
	defer sub.Unsubscribe()
	if err := c.Conn.FlushTimeout(5 * time.Second); err != nil {
		return cli.UsageExit(fmt.Errorf("subscribe %q: %w", filter, err))
	}
	if le := c.Conn.LastError(); le != nil {
		if errors.Is(le, nats.ErrPermissionViolation) {
			return c.Refused(fmt.Sprintf("subscribe %q", filter), le)
		}
		return cli.UsageExit(fmt.Errorf("subscribe %q: %w", filter, le))
	}
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			if *asJSON {
				writeTailJSON(a.stdout, m)
			} else {
				fmt.Fprintln(a.stdout, tailLine(m))
			}
			n++
			if *count > 0 && n >= *count {
				return nil
			}
		}
	}
}

func writeTailJSON(w io.Writer, m *nats.Msg) {
	ev := json.RawMessage(m.Data)
	if !json.Valid(m.Data) {
		b, _ := json.Marshal(string(m.Data))
		ev = b
	}
	b, _ := json.Marshal(struct {
		Subject string          `json:"subject"`
		Event   json.RawMessage `json:"event"`
	}{m.Subject, ev})
	fmt.Fprintln(w, string(b))
}

// tailLine renders one message readably.
func tailLine(m *nats.Msg) string {
	e, k, err := events.Decode(m.Data)
	if err != nil {
		return fmt.Sprintf("%s  %s  (not a pinkie event: %d bytes)", time.Now().UTC().Format("15:04:05.000"), show(m.Subject), len(m.Data))
	}
	host := "-"
	if h, _, ok := events.HostFromSubject(m.Subject); ok {
		host = h
	}
	obj := e.Subject()
	if obj == "" {
		obj = "-"
	}
	return fmt.Sprintf("%s  %-12s %-18s %-12s %s", e.Time().UTC().Format("2006-01-02 15:04:05"), show(host), k.Name, show(obj), show(events.Summary(e.Data())))
}
