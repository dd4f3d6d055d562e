package ingest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// TestCheckHygiene: events a compromised or broken agent may send that
// must not reach HOSTS, each refused with a reason naming what is wrong.
func TestCheckHygiene(t *testing.T) {
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC) // the golden examples' time
	c := &Checker{Schemas: set, MaxSize: events.MaxSize, Now: func() time.Time { return now }}
	example := func(kind string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", kind+".v1.json"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// set changes one field (a path of keys and indexes) of a golden example.
	set1 := func(kind string, value any, path ...any) []byte {
		var m map[string]any
		if err := json.Unmarshal(example(kind), &m); err != nil {
			t.Fatal(err)
		}
		var node any = m
		for i, p := range path {
			last := i == len(path)-1
			switch p := p.(type) {
			case string:
				if last {
					node.(map[string]any)[p] = value
				} else {
					node = node.(map[string]any)[p]
				}
			case int:
				if last {
					node.([]any)[p] = value
				} else {
					node = node.([]any)[p]
				}
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	replace := func(kind, old, new string) []byte {
		b := example(kind)
		if !bytes.Contains(b, []byte(old)) {
			t.Fatalf("%s example has no %q", kind, old)
		}
		return bytes.Replace(b, []byte(old), []byte(new), 1)
	}
	const injected = "evil.service\r\nBcc: victim@evil.example\r\nX-Injected: yes"
	tests := []struct {
		name    string
		kind    string
		payload []byte
		want    string // "" = accepted
	}{
		{"golden systemd", "systemd", example("systemd"), ""},
		{"header injection in a failed unit's name", "systemd", set1("systemd", injected, "data", "failed", 0, "name"), "/data/failed/0/name"},
		{"escape sequence in a watched unit's name", "systemd", set1("systemd", "\x1b]0;owned\x07", "data", "failed", 0, "name"), "U+001B"},
		{"newline in a unit description is free text", "systemd", set1("systemd", "line 1\n\tline 2", "data", "failed", 0, "description"), ""},
		{"escape sequence in a unit description", "systemd", set1("systemd", "a\x1b[31mb", "data", "failed", 0, "description"), "U+001B"},
		{"CR in the object (subject)", "smart", set1("smart", "/dev/sdc\r\nX: 1", "subject"), "/subject"},
		{"bidi override in the object", "smart", set1("smart", "/dev/sd\u202ec", "subject"), "U+202E"},
		{"C1 control in a device name", "smart", set1("smart", "/dev/sd\u009bc", "data", "device"), "U+009B"},
		{"control character in a user name", "login", set1("login", "root\r\nfake log line", "data", "user"), "/data/user"},
		{"control character in a pool name", "zfs", set1("zfs", "tank\x00", "data", "pool"), "/data/pool"},
		{"control character in a mount point", "fs", set1("fs", "/var\x1b", "data", "mount_point"), "/data/mount_point"},
		{"control character in a database name", "postgres", set1("postgres", "db\x07", "data", "database"), "/data/database"},
		{"control character in a guest name", "guest", set1("guest", "web\x7f", "data", "name"), "/data/name"},
		{"control character in a map key", "fail2ban", replace("fail2ban", `"banned": {`, `"banned": {"jail\u001b": 1, `), "key"},
		{"uint64 overflow", "heartbeat", replace("heartbeat", `"counter": 42`, `"counter": 18446744073709551616`), "does not fit in uint64"},
		{"2^64 into a uint64 memory size", "heartbeat", set1("heartbeat", json.Number("18446744073709551616"), "data", "mem_total_bytes"), "/mem_total_bytes"},
		{"negative into unsigned", "heartbeat", set1("heartbeat", json.Number("-1"), "data", "mem_total_bytes"), "/mem_total_bytes"},
		{"fraction into an integer", "heartbeat", set1("heartbeat", json.Number("1.5"), "data", "counter"), "/counter"},
		{"integer as 1.0", "heartbeat", set1("heartbeat", json.Number("1.0"), "data", "counter"), "not written as an integer"},
		{"float overflow", "heartbeat", set1("heartbeat", json.Number("1e400"), "data", "load1"), "out of range of a 64-bit float"},
		{"duplicate key in the data", "heartbeat", replace("heartbeat", `"counter": 42`, `"counter": 42, "counter": 2`), `duplicate key "counter"`},
		{"duplicate key in the envelope", "heartbeat", replace("heartbeat", `"specversion": "1.0"`, `"specversion": "1.0", "specversion": "1.0"`), `duplicate key "specversion"`},
		{"invalid UTF-8 in the data", "heartbeat", replace("heartbeat", `"agent_version": "`, "\"agent_version\": \"\xff"), "invalid UTF-8"},
		{"invalid UTF-8 in the envelope", "heartbeat", replace("heartbeat", `"source"`, "\"subject\": \"a\xc3\", \"source\""), "invalid UTF-8"},
		{"unpaired surrogate", "heartbeat", replace("heartbeat", `"agent_version": "`, `"agent_version": "\ud800`), "surrogate"},
		{"time in year 9999", "heartbeat", set1("heartbeat", "9999-12-31T23:59:59Z", "time"), "ahead of the hub's clock"},
		{"time six minutes ahead", "heartbeat", set1("heartbeat", now.Add(6*time.Minute).Format(time.RFC3339), "time"), "ahead of the hub's clock"},
		{"time four minutes ahead", "heartbeat", set1("heartbeat", now.Add(4*time.Minute).Format(time.RFC3339), "time"), ""},
		{"time an hour ago", "heartbeat", set1("heartbeat", now.Add(-time.Hour).Format(time.RFC3339), "time"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sourcedMessage("goliath", tt.kind+".x", tt.payload)
			d := c.Check(m)
			if tt.want == "" {
				if !d.Accepted() {
					t.Fatalf("refused: %s", d.Reason)
				}
				return
			}
			if d.Accepted() {
				t.Fatalf("accepted %s", tt.payload)
			}
			t.Log(d.Reason)
			if !strings.Contains(d.Reason, tt.want) {
				t.Errorf("reason %q does not mention %q", d.Reason, tt.want)
			}
			if events.CheckText(d.Reason) != nil {
				t.Errorf("the reason itself carries a control character: %q", d.Reason)
			}
			dl, _, err := DeadLetter(m, d, now)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := events.Encode(dl)
			if _, _, err := set.Validate(b); err != nil {
				t.Errorf("the dead letter does not validate: %v", err)
			}
		})
	}
}
