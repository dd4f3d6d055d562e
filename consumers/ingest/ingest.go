// Package ingest is the hub's check of every event an agent sends: the
// decision, pure and without I/O, whether a sourced message goes on to
// HOSTS (and under which subject) or to the dead letters, and why.
package ingest

import (
	"fmt"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// Message is one message as the hub's INGEST stream holds it.
type Message struct {
	// Subject is pinkie.ingest.<host>.<kind>[.<object>], as the hub's
	// source transform wrote it.
	Subject string
	// StreamSource is the Nats-Stream-Source header the hub wrote when it
	// sourced the message: "<stream>:<hash>[:C=<hash>] <seq> <filter>
	// <destination> <original subject> …".
	StreamSource string
	Payload      []byte
}

// Decision is where a message goes.
type Decision struct {
	// Host is the host the message came from ("" if not even that is known).
	Host string
	// Kind is the event kind when the event decoded.
	Kind string
	// Subject is the HOSTS subject for an accepted event.
	Subject string
	// ID is the event id of an accepted event.
	ID string
	// Reason is set when the event is refused: why, in words.
	Reason string
}

// Accepted reports whether the event goes on to HOSTS.
func (d Decision) Accepted() bool { return d.Reason == "" }

// Checker decides about sourced messages.
type Checker struct {
	Schemas *schemas.Set
	MaxSize int
	// Now is the hub's clock, for refusing events from the future.
	Now func() time.Time
}

// Check decides about one message.
func (c *Checker) Check(m Message) Decision {
	rest, ok := strings.CutPrefix(m.Subject, "pinkie.ingest.")
	host, kindPath, ok2 := strings.Cut(rest, ".")
	// The hub's transform does not filter: a message that did not match
	// "evt.>" would be stored unchanged, under any subject. Trust only the
	// destination the hub wrote into Nats-Stream-Source from its own
	// configuration: it names the host whose OUTBOX delivered the message,
	// and that host is the one the dead letter is charged to.
	f := strings.Fields(m.StreamSource)
	sender := ""
	if len(f) >= 5 {
		if h, ok := strings.CutPrefix(f[3], "pinkie.ingest."); ok {
			sender = strings.TrimSuffix(h, ".>")
		}
	}
	d := Decision{Host: sender}
	if sender == "" || events.ValidHost(sender) != nil {
		d.Host = host
		d.Reason = fmt.Sprintf("no usable Nats-Stream-Source header (%q): not sourced from an agent", m.StreamSource)
		return d
	}
	if !ok || !ok2 {
		d.Reason = fmt.Sprintf("subject %q is not pinkie.ingest.<host>.<kind>", m.Subject)
		return d
	}
	if host != sender {
		d.Reason = fmt.Sprintf("subject host %s does not match the source that delivered it (%s)", host, sender)
		return d
	}
	if orig := f[4]; orig != "evt."+kindPath {
		d.Reason = fmt.Sprintf("original subject %q does not match %q", orig, "evt."+kindPath)
		return d
	}
	if c.MaxSize > 0 && len(m.Payload) > c.MaxSize {
		d.Reason = fmt.Sprintf("event is %d bytes, larger than the limit of %d", len(m.Payload), c.MaxSize)
		return d
	}
	e, k, err := c.Schemas.Validate(m.Payload)
	if k.Name != "" {
		d.Kind = k.Name
	}
	if err != nil {
		d.Reason = err.Error()
		return d
	}
	if reason := c.hygiene(e); reason != "" {
		d.Reason = reason
		return d
	}
	d.ID = e.ID()
	srcHost, _, err := events.ParseSource(e.Source())
	if err != nil {
		d.Reason = err.Error()
		return d
	}
	if srcHost != host {
		d.Reason = fmt.Sprintf("source host %s differs from subject host %s", srcHost, host)
		return d
	}
	if k.Origin != events.FromAgent {
		d.Reason = fmt.Sprintf("%s events are not published by agents", k.Type())
		return d
	}
	if kindPath != k.Name && !strings.HasPrefix(kindPath, k.Name+".") {
		d.Reason = fmt.Sprintf("subject kind %q does not match event type %s", kindPath, k.Type())
		return d
	}
	if phase, ok := events.DeployPhaseOf(k.Name); ok {
		// A deploy phase goes to the deploy record, still under the host
		// that sent it (a builder's phases for another target land under
		// the builder; the target is in the data).
		if kindPath != k.Name {
			d.Reason = fmt.Sprintf("deploy phase subject %q carries an object; want evt.%s", kindPath, k.Name)
			return d
		}
		d.Subject = events.DeploySubject(host, phase)
		return d
	}
	d.Subject = "pinkie.host." + host + "." + kindPath
	return d
}

// DeadLetter builds the dead-letter event for a refused message, at time t.
// Its id is derived from the message's Nats-Stream-Source header (unique per
// sourced message), so a redelivered message makes the same dead letter.
func DeadLetter(m Message, d Decision, t time.Time) (events.Event, string, error) {
	host := d.Host
	if events.ValidHost(host) != nil {
		host = "unknown"
	}
	const keep = 4096
	payload, cut := m.Payload, false
	if len(payload) > keep {
		payload, cut = payload[:keep], true
	}
	k, _ := events.Lookup("deadletter")
	e, err := events.New(k, "hub", "ingest", t, events.DeadLetter{
		Host: host, Reason: events.EscapeText(d.Reason), Subject: events.Escape(m.Subject), StreamSource: events.Escape(m.StreamSource),
		Size: len(m.Payload), Payload: events.EscapeText(string(payload)), PayloadCutOff: cut,
	}, events.WithSubject(host), events.WithID(events.DeterministicID("deadletter", m.Subject, m.StreamSource)))
	if err != nil {
		return e, "", err
	}
	return e, "pinkie.deadletter." + host, nil
}
