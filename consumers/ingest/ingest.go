// Package ingest is the hub's check of every event an agent sends: the
// decision, pure and without I/O, whether a sourced message goes on to
// HOSTS (and under which subject) or to the dead letters, and why.
package ingest

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// BuildOrders answers whether the hub's deploy planner ordered builder to
// build target's system for request requestID.
type BuildOrders interface {
	BuildOrdered(builder, requestID, target string) (bool, error)
}

// Checker decides about sourced messages.
type Checker struct {
	Schemas *schemas.Set
	MaxSize int
	// Known reports whether a host may send events (it is in the auth
	// file, or the hub sources it); nil accepts every valid host name.
	Known func(host string) bool
	// Orders tells which builder was ordered to build what; nil accepts
	// build phases only from the target itself.
	Orders BuildOrders
	// Now is the hub's clock, for refusing events from the future.
	Now func() time.Time
}

// Check decides about one message. The sending host is the one the hub's
// own source transform wrote into the subject; the Nats-Stream-Source
// header must agree with it, and so must everything the event claims.
func (c *Checker) Check(m events.IngestMessage) events.IngestDecision {
	host, tail, ok := events.ParseIngestSubject(m.Subject)
	if !ok || events.ValidHost(host) != nil {
		return events.IngestDecision{Reason: fmt.Sprintf("subject %q is not pinkie.ingest.<host>.evt.<kind>", m.Subject)}
	}
	d := events.IngestDecision{Host: host}
	if c.Known != nil && !c.Known(host) {
		d.Reason = fmt.Sprintf("host %s is not in the auth file", host)
		return d
	}
	src, reason := streamSource(m)
	if reason != "" {
		d.Reason = reason
		return d
	}
	// f: stream:hash, seq, filter, destination, original subject[, ident].
	f := strings.Fields(src)
	if len(f) < 5 {
		d.Reason = fmt.Sprintf("Nats-Stream-Source %q is not the hub's: too few fields", src)
		return d
	}
	if want := events.IngestSubjects(host); f[3] != want {
		d.Reason = fmt.Sprintf("Nats-Stream-Source destination %q is not %q: the header does not come from this host's source", f[3], want)
		return d
	}
	orig := f[4]
	kindPath, isNew := strings.CutPrefix(tail, events.LocalSubjectPrefix)
	if !isNew {
		// Stored before the hub stamped every subject: the old transform
		// only rewrote evt.<kind> into pinkie.ingest.<host>.<kind>.
		kindPath = tail
	}
	if orig != events.LocalSubjectPrefix+kindPath || kindPath == "" {
		d.Reason = fmt.Sprintf("original subject %q is outside this host's evt.> (stored as %q)", orig, m.Subject)
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
		d.Reason = fmt.Sprintf("source host %s differs from the host that sent it (%s)", srcHost, host)
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
		if reason, retry := c.mayReport(host, phase, e, k); retry != nil {
			d.Retry = retry
			return d
		} else if reason != "" {
			d.Reason = reason
			return d
		}
		d.Subject = events.DeploySubject(host, phase)
		return d
	}
	d.Subject = events.HostSubjectOfLocal(host, kindPath)
	return d
}

// streamSource returns the message's one Nats-Stream-Source header, or
// why the header block cannot be trusted. nats-server strips a
// Nats-Stream-Source the sender wrote only when it is a whole CRLF line
// and then appends its own; a sender that hides one behind a bare LF (which
// the client splits on) or otherwise shapes the block would make the
// client see a header the server never wrote. So the block must be exactly
// what the parsed header re-encodes to, with one Nats-Stream-Source.
func streamSource(m events.IngestMessage) (string, string) {
	if want := HeaderBlockSize(m.Header); m.HeaderSize != want {
		return "", fmt.Sprintf("header block is %d bytes but its %d parsed lines make %d: a bare LF or a malformed line in it", m.HeaderSize, headerLines(m.Header), want)
	}
	for k := range m.Header {
		if k != events.HeaderStreamSource && strings.EqualFold(k, events.HeaderStreamSource) {
			return "", fmt.Sprintf("header %q spelled unlike the server's %s", k, events.HeaderStreamSource)
		}
	}
	vs := m.Header[events.HeaderStreamSource]
	switch len(vs) {
	case 0:
		return "", "no Nats-Stream-Source header: not sourced from an agent"
	case 1:
		return vs[0], ""
	default:
		return "", fmt.Sprintf("%d Nats-Stream-Source headers: only the server's own may be there", len(vs))
	}
}

// HeaderBlockSize is the size of the canonical NATS header block that
// holds h: "NATS/1.0\r\n", "Key: value\r\n" per value, "\r\n".
func HeaderBlockSize(h map[string][]string) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

func headerLines(h map[string][]string) int {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return n
}

// deployActivationPhases are reported by the target itself; build phases
// by the target or the builder the planner ordered.
var deployBuildPhases = map[string]bool{"build.started": true, "built": true, "build.failed": true}

// mayReport decides whether host may report phase for the deploy the
// event names: a host speaks only for itself, and for another host only
// as the builder the hub ordered to build for it.
func (c *Checker) mayReport(host, phase string, e events.Event, k events.Kind) (reason string, retry error) {
	v, err := events.DecodeData(e, k)
	if err != nil {
		return err.Error(), nil
	}
	p, ok := v.(*events.DeployPhase)
	if !ok {
		return fmt.Sprintf("%s carries no deploy phase", k.Type()), nil
	}
	if events.ValidHost(p.Host) != nil {
		return fmt.Sprintf("deploy phase names no valid target host (%q)", p.Host), nil
	}
	if e.Subject() != "" && e.Subject() != p.Host {
		return fmt.Sprintf("deploy phase subject %q differs from its target host %s", e.Subject(), p.Host), nil
	}
	if p.Host == host {
		return "", nil
	}
	if !deployBuildPhases[phase] {
		return fmt.Sprintf("%s for %s reported by %s: only the target reports its activation", phase, p.Host, host), nil
	}
	if p.Builder != host {
		return fmt.Sprintf("%s for %s reported by %s names builder %q: a builder reports only its own builds", phase, p.Host, host, p.Builder), nil
	}
	if c.Orders == nil {
		return fmt.Sprintf("%s for %s reported by %s: no build order is known", phase, p.Host, host), nil
	}
	ordered, err := c.Orders.BuildOrdered(host, p.RequestID, p.Host)
	if err != nil {
		return "", fmt.Errorf("look up build orders: %w", err)
	}
	if !ordered {
		return fmt.Sprintf("%s for %s reported by %s: the hub never ordered %s to build request %s", phase, p.Host, host, host, p.RequestID), nil
	}
	return "", nil
}

// DeadLetter builds the dead-letter event for a refused message, at time t.
// Its id is derived from the message's subject and INGEST sequence (never
// from anything the sender shaped), so a redelivered message makes the same
// dead letter.
func DeadLetter(m events.IngestMessage, d events.IngestDecision, t time.Time) (events.Event, string, error) {
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
		Host: host, Reason: events.EscapeText(d.Reason), Subject: events.Escape(m.Subject), StreamSource: events.Escape(m.StreamSource()),
		Size: len(m.Payload), Payload: events.EscapeText(string(payload)), PayloadCutOff: cut,
	}, events.WithSubject(host), events.WithID(events.DeterministicID("deadletter", m.Subject, strconv.FormatUint(m.Seq, 10), d.Reason)))
	if err != nil {
		return e, "", err
	}
	return e, events.DeadLetterSubject(host), nil
}

// DeadLetter builds the dead-letter event for a message the check refused
// (or its stream refused after), at the checker's time (Now).
func (c *Checker) DeadLetter(m events.IngestMessage, d events.IngestDecision) (events.Event, string, error) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	return DeadLetter(m, d, now())
}

// SameEvent reports whether an event sent again under a stored event's id
// repeats it (see the function SameEvent).
func (*Checker) SameEvent(stored, sent []byte) bool { return SameEvent(stored, sent) }

// SameEvent reports whether two encoded events are the same observation:
// same id, type, source, subject and data. The time may differ (a producer
// that re-sends an observation under its deterministic id stamps it anew).
func SameEvent(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	ea, _, err := events.Decode(a)
	if err != nil {
		return false
	}
	eb, _, err := events.Decode(b)
	if err != nil {
		return false
	}
	return ea.ID() == eb.ID() && ea.Type() == eb.Type() && ea.Source() == eb.Source() &&
		ea.Subject() == eb.Subject() && bytes.Equal(ea.Data(), eb.Data())
}
