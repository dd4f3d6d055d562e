package tests

// Output hygiene end to end: events a compromised agent stores in its own
// OUTBOX (bypassing the agent's own validation) reach the hub's ingest
// check and land in DEADLETTER with their reason, never in HOSTS; the
// email channel cannot be made to write headers; the CLI prints no
// control characters.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/consumers/notifier"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

const injectedUnit = "evil.service\r\nBcc: victim@evil.example\r\nX-Injected: yes"

// rogueEvent is a golden example turned into goliath's event with a fresh
// id and time, changed by edit (on the decoded JSON) and then by the byte
// replacements in raw (old, new, old, new…).
func rogueEvent(t *testing.T, kind string, edit func(ev, data map[string]any), raw ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "schemas", "examples", kind+".v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	ev["id"] = events.NewID(time.Now())
	ev["time"] = time.Now().UTC().Format(time.RFC3339Nano)
	if edit != nil {
		edit(ev, ev["data"].(map[string]any))
	}
	if b, err = json.Marshal(ev); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(raw); i += 2 {
		if !bytes.Contains(b, []byte(raw[i])) {
			t.Fatalf("%s event has no %q", kind, raw[i])
		}
		b = bytes.Replace(b, []byte(raw[i]), []byte(raw[i+1]), 1)
	}
	return b
}

func TestHygieneEndToEnd(t *testing.T) {
	f := newFleet(t, "goliath")
	f.startHub()
	a := f.inprocAgent("goliath")
	c := f.client()
	tests := []struct {
		name, kind string
		payload    []byte
		want       string // in the dead letter's reason
	}{
		{"header injection in a unit name", "systemd", rogueEvent(t, "systemd", func(_, d map[string]any) {
			d["failed"].([]any)[0].(map[string]any)["name"] = injectedUnit
		}), "/data/failed/0/name"},
		{"escape sequence in the object", "smart", rogueEvent(t, "smart", func(ev, _ map[string]any) { ev["subject"] = "/dev/sdc\x1b[2J" }), "/subject"},
		{"bidi override in a user name", "login", rogueEvent(t, "login", func(_, d map[string]any) { d["user"] = "root\u202e" }), "U+202E"},
		{"2^64 in a uint64", "heartbeat", rogueEvent(t, "heartbeat", func(_, d map[string]any) { d["counter"] = json.Number("18446744073709551616") }), "does not fit in uint64"},
		{"1e400", "heartbeat", rogueEvent(t, "heartbeat", func(_, d map[string]any) { d["load1"] = json.Number("1e400") }), "out of range of a 64-bit float"},
		{"duplicate key", "heartbeat", rogueEvent(t, "heartbeat", nil, `"counter":42`, `"counter":42,"counter":43`), `duplicate key "counter"`},
		{"invalid UTF-8", "heartbeat", rogueEvent(t, "heartbeat", nil, `"agent_version":"`, "\"agent_version\":\"\xff"), "invalid UTF-8"},
		{"year 9999", "heartbeat", rogueEvent(t, "heartbeat", func(ev, _ map[string]any) { ev["time"] = "9999-12-31T23:59:59Z" }), "ahead of the hub's clock"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js := a.JetStream()
	for _, tt := range tests {
		m := nats.NewMsg("evt." + tt.kind + ".x")
		m.Data = tt.payload
		m.Header.Set(events.HeaderContentType, events.ContentType)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("%s: store in OUTBOX: %v", tt.name, err)
		}
	}
	// Positive control, sent last: when it is in HOSTS, everything before
	// it has been decided on.
	publishOn(t, a, "heartbeat", "", time.Now(), events.Heartbeat{Counter: 1, Instance: "good", AgentVersion: "v"})
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", 1, 30*time.Second)
	if n := countSubjects(t, c.JS, streams.HostsStream, "pinkie.host.goliath.>"); n != 1 {
		t.Errorf("HOSTS holds %d goliath events, want only the good heartbeat", n)
	}
	dead := readStream(t, c.JS, streams.DeadLetterStream, "pinkie.deadletter.goliath")
	if len(dead) != len(tests) {
		t.Errorf("%d dead letters, want %d", len(dead), len(tests))
	}
	for i, tt := range tests {
		if i >= len(dead) {
			break
		}
		var dl events.DeadLetter
		if err := json.Unmarshal(dead[i].event.Data(), &dl); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(dl.Reason, tt.want) {
			t.Errorf("%s: dead letter reason %q does not mention %q", tt.name, dl.Reason, tt.want)
		}
	}

	// The CLI prints what it has without a control character.
	out, code := runPinkie(t, "hosts", "--server", f.natsURL(), "--nkey", f.operator())
	if code != 0 || strings.Contains(out, "in -") || strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("pinkie hosts exited %d:\n%q", code, out)
	}
}

// TestEmailInjectionAgainstMailpit sends an alert about the injected unit
// name straight to the email channel (as if it had got past ingest) and
// reads it back from a real mailpit: one Subject, decoded, no Bcc, no
// X-Injected header.
func TestEmailInjectionAgainstMailpit(t *testing.T) {
	mp := startMailpit(t)
	cfg := map[string]any{"channels": map[string]any{"mail": map[string]any{"type": "email", "smtp_host": "127.0.0.1", "smtp_port": mp.smtpPort,
		"tls": "starttls", "ca_file": mp.caFile, "username": "pinkie", "password_file": secretFile(t, "hunter2"),
		"from": "pinkie@fleet.test", "to": []string{"ops@fleet.test"}}}}
	raw, _ := json.Marshal(cfg)
	_, chans, err := notifier.ParseConfig(raw)
	if err != nil || len(chans) != 1 {
		t.Fatalf("notify config: %v", err)
	}
	msg := notifier.Message{ID: "hygiene-1", Alerts: []events.Alert{{Host: "goliath", Rule: "unit_failed", Object: injectedUnit,
		Severity: events.SeverityCritical, Status: "firing", Summary: "unit " + injectedUnit + " failed", Fingerprint: "f1"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := chans[0].Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	got := mp.wait("goliath unit_failed", 20*time.Second)
	want := `[FIRING CRITICAL] goliath unit_failed evil.service\r\nBcc: victim@evil.example\r\nX-Injected: yes`
	if got.Subject != want {
		t.Errorf("subject reads back as %q, want %q", got.Subject, want)
	}
	id := mp.messages()[0].ID
	resp, err := http.Get(mp.api("/api/v1/message/" + id + "/headers"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var headers map[string][]string
	if err := json.NewDecoder(resp.Body).Decode(&headers); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Bcc", "X-Injected"} {
		if v, ok := headers[h]; ok {
			t.Errorf("mailpit sees an injected %s header: %q", h, v)
		}
	}
	if len(headers["Subject"]) != 1 {
		t.Errorf("Subject headers: %q", headers["Subject"])
	}
	if strings.ContainsAny(got.Text, "\r\x1b") && !strings.Contains(got.Text, `evil.service\r`) {
		t.Errorf("body: %q", got.Text)
	}
}
