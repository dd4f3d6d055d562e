package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
)

// evil is what a value from an event may hold: a line ending, a fake
// row, a screen clear, a window title, a C1 CSI and a bidi override.
const evil = "evil.service\r\nBcc: x\x1b[2J\x1b]0;owned\x07\u009b31m\u202eoc.exe\tcol"

// noControl fails the test if out holds a control character other than
// the newlines and spaces the table itself writes.
func noControl(t *testing.T, what string, out []byte, rows int) {
	t.Helper()
	for _, r := range string(out) {
		if r != '\n' && events.IsControl(r) {
			t.Errorf("%s: output holds %U:\n%q", what, r, out)
			return
		}
	}
	if n := bytes.Count(out, []byte("\n")); n != rows {
		t.Errorf("%s: %d lines, want %d (a value faked a row):\n%s", what, n, rows, out)
	}
	if !bytes.Contains(out, []byte(`evil.service\r\nBcc: x\x1b[2J`)) {
		t.Errorf("%s: the value is not shown escaped:\n%s", what, out)
	}
}

func TestTerminalOutputEscaped(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	far := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

	var b bytes.Buffer
	fleetview.WriteAlerts(cli.SafeWriter{W: &b}, now, []projections.ActiveAlert{{Alert: events.Alert{
		Host: "goliath", Rule: "unit_failed", Object: evil, Severity: "critical", Summary: "unit " + evil + " failed", StartsAt: now.Add(-time.Hour),
	}}})
	noControl(t, "alerts", b.Bytes(), 2)

	b.Reset()
	h := &projections.Host{Host: "goliath", LastSeen: far, Profile: &events.Profile{Kernel: evil},
		Producers: map[string]*projections.ProducerSeen{"systemd": {Kinds: []string{"systemd"}, Last: now}}}
	fleetview.WriteHosts(cli.SafeWriter{W: &b}, now, []*projections.Host{h})
	noControl(t, "hosts", b.Bytes(), 2)
	if bytes.Contains(b.Bytes(), []byte("in -")) || !bytes.Contains(b.Bytes(), []byte("future 9999-12-31T23:59:59Z")) {
		t.Errorf("hosts: a last-seen time in year 9999 reads:\n%s", b.Bytes())
	}

	b.Reset()
	fleetview.WriteHost(cli.SafeWriter{W: &b}, now, fleetview.HostView{Host: h, Drives: []projections.Drive{{Kind: "smart", Object: evil, Verdict: "ok", State: "x"}}})
	noControl(t, "hosts HOST", b.Bytes(), 10)

	// --json goes through the same writer and stays JSON with the same values.
	b.Reset()
	v := map[string]string{"object": evil + "\u0085\x7f"}
	printJSON(cli.SafeWriter{W: &b}, v)
	var back map[string]string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("--json output is no longer JSON: %v\n%s", err, b.Bytes())
	}
	if back["object"] != v["object"] {
		t.Errorf("--json value changed: %q, want %q", back["object"], v["object"])
	}
	for _, r := range b.String() {
		if r != '\n' && events.IsControl(r) {
			t.Errorf("--json output holds %U", r)
		}
	}
}
