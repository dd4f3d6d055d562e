package events

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidHost(t *testing.T) {
	tests := []struct {
		name string
		host string
		ok   bool
	}{
		{"plain", "goliath", true},
		{"dash and digits", "edge-01", true},
		{"underscore", "web_eu", true},
		{"empty", "", false},
		{"dot", "goliath.lan", false},
		{"star", "go*", false},
		{"gt", "go>", false},
		{"space", "go liath", false},
		{"leading dash", "-x", false},
		{"too long", strings.Repeat("a", 64), false},
		{"max length", strings.Repeat("a", 63), true},
		{"unicode", "göliath", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidHost(tt.host)
			if (err == nil) != tt.ok {
				t.Errorf("ValidHost(%q) = %v, want ok=%v", tt.host, err, tt.ok)
			}
		})
	}
}

func TestObjectTokenIsOneTokenAndInjective(t *testing.T) {
	objs := []string{"/", "/var/lib", "/var_lib", "/var/lib/", "sda", "nvme0n1", "a.b", "a_2Eb", "a b", "", "_", "__", "tank/data"}
	seen := map[string]string{}
	for _, o := range objs {
		tok := ObjectToken(o)
		if tok == "" || strings.ContainsAny(tok, ".*> \t/") {
			t.Errorf("ObjectToken(%q) = %q is not a safe single token", o, tok)
		}
		if prev, ok := seen[tok]; ok {
			t.Errorf("ObjectToken(%q) = ObjectToken(%q) = %q", o, prev, tok)
		}
		seen[tok] = o
	}
}

func TestNewDecodeRoundTrip(t *testing.T) {
	k, _ := Lookup("heartbeat")
	now := time.Date(2026, 11, 27, 2, 0, 0, 123e6, time.UTC)
	e, err := New(k, "goliath", "heartbeat", now, Heartbeat{Counter: 7, Instance: "i1"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Source() != "pinkie://goliath/heartbeat" || e.Type() != "pinkie.heartbeat.v1" || e.DataSchema() != k.SchemaID() {
		t.Fatalf("attributes: source %q type %q dataschema %q", e.Source(), e.Type(), e.DataSchema())
	}
	b, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	got, gk, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if gk.Name != "heartbeat" || got.ID() != e.ID() || !got.Time().Equal(now) {
		t.Errorf("round trip: kind %q id %q time %v", gk.Name, got.ID(), got.Time())
	}
	d, err := DecodeData(got, gk)
	if err != nil {
		t.Fatal(err)
	}
	if hb := d.(*Heartbeat); hb.Counter != 7 || hb.Instance != "i1" {
		t.Errorf("data: %+v", hb)
	}
	if _, err := New(k, "bad.host", "heartbeat", now, Heartbeat{}); err == nil {
		t.Error("New accepted an invalid host")
	}
}

func TestIDs(t *testing.T) {
	now := time.Now()
	a, b := NewID(now), NewID(now)
	if a == b || len(a) != 36 || a[14] != '7' {
		t.Errorf("NewID: %q %q (want distinct UUIDv7)", a, b)
	}
	if DeterministicID("x", "y") != DeterministicID("x", "y") || DeterministicID("x", "y") == DeterministicID("xy") {
		t.Error("DeterministicID is not a stable, part-aware hash")
	}
}

// FuzzDecode feeds the event decoder arbitrary bytes: it must never panic,
// and whatever it accepts must encode and decode again to the same event.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "schemas", "examples", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"pinkie://a/b","type":"pinkie.heartbeat.v1","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","dataschema":"https://pinkie.dev/schemas/heartbeat.v1.json","data":{}}`))
	f.Add([]byte(`{"specversion":"0.3","id":"1"}`))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, k, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(e)
		if err != nil {
			t.Fatalf("accepted event does not encode: %v", err)
		}
		e2, k2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v\n%s", err, again)
		}
		if e2.ID() != e.ID() || k2.Name != k.Name || e2.Source() != e.Source() {
			t.Fatalf("round trip changed the event: %s vs %s", again, b)
		}
		var anyData any
		if err := json.Unmarshal(e2.Data(), &anyData); err != nil {
			t.Fatalf("accepted data is not JSON: %v", err)
		}
	})
}
