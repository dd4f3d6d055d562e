package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/clientevent"
	"github.com/pinkiefleet/pinkie/cmd/internal/agentcmd"
	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// pubResult is what pub prints with --json: the event published and
// where the hub stored it. fleet sync prints it among its own fields.
type pubResult struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Subject   string `json:"subject"`
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

func newPubResult(e events.Event, subject string, ack *jetstream.PubAck) pubResult {
	return pubResult{ID: e.ID(), Type: e.Type(), Subject: subject, Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate}
}

func runPub(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("pub", "TYPE [key=value...]", `
Publish one event at the hub. TYPE is an event kind such as deploy.requested
(or its full CloudEvents type pinkie.deploy.requested.v1); key=value pairs set
fields of its data, typed by the kind's JSON Schema; --data gives the data as a
JSON object, which key=value pairs then override. The event is checked against
its schema before anything is sent: an unknown type, an unknown, missing or
ill-typed field, malformed JSON or an invalid host name exits 2 and publishes
nothing.

  pinkie pub deploy.requested host=goliath
  pinkie pub deploy.requested host=goliath goal=boot build_on=target --json

Prints the event id, the stream that stored it and its sequence.`)
	cf := addClientFlags(fs, a)
	data := fs.String("data", "", "the event's data as a JSON `OBJECT`")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	pos := fs.Positional()
	if len(pos) == 0 {
		return cli.Usagef("missing TYPE; publishable types: %s", strings.Join(clientevent.Publishable(), ", "))
	}
	set, err := schemas.Load()
	if err != nil {
		return err
	}
	e, subject, err := clientevent.Build(set, pos[0], pos[1:], *data, cliSourceHost(), requester, time.Now())
	if err != nil {
		return cli.Usagef("%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := cf.connect(ctx, "pinkie pub")
	if err != nil {
		return err
	}
	defer c.Close()
	ack, err := c.Publish(ctx, subject, e)
	if err != nil {
		return err
	}
	res := newPubResult(e, subject, ack)
	return printLine(a, *asJSON, res, func() {
		dup := ""
		if ack.Duplicate {
			dup = " (duplicate: already stored)"
		}
		fmt.Fprintf(a.stdout, "published %s on %s\nid %s, stream %s, seq %d%s\n", res.Type, subject, res.ID, res.Stream, res.Seq, dup)
	})
}

// requester names who publishes: user@host.
func requester() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	return name + "@" + agentcmd.ShortHostname()
}

// cliSourceHost is the host part of a CLI event's source: this machine's
// short host name when it is a valid pinkie host name, "cli" otherwise.
func cliSourceHost() string {
	if h := agentcmd.ShortHostname(); events.ValidHost(h) == nil {
		return h
	}
	return "cli"
}
