package schemas

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/pinkiefleet/pinkie/events"
)

// refWellFormed is the reference for the whole-payload rules, written
// without the byte scanner: jsontext in its strict default (valid UTF-8,
// no unpaired surrogates, no duplicate names) plus the rules RFC 7493
// leaves open, checked token by token.
func refWellFormed(data []byte) bool {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	values := 0
	for {
		tok, err := dec.ReadToken()
		if errors.Is(err, io.EOF) {
			return values == 1
		}
		if err != nil {
			return false
		}
		depth := dec.StackDepth() // containers around a scalar
		switch k := tok.Kind(); k {
		case '{', '[':
			depth--
		case '}', ']':
			depth = -1
		case '"':
			kind, length := dec.StackIndex(depth)
			isName := depth > 0 && kind == '{' && length%2 == 1
			if isName && events.CheckName(tok.String()) != nil {
				return false
			}
			if !isName && events.CheckText(tok.String()) != nil {
				return false
			}
		case '0':
			if f, _ := strconv.ParseFloat(tok.String(), 64); math.IsInf(f, 0) {
				return false
			}
		}
		if depth > fastMaxDepth {
			return false
		}
		if dec.StackDepth() == 0 {
			values++
			if values > 1 {
				return false
			}
		}
	}
}

func TestRefWellFormed(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`{"a":1}`, true},
		{`{"a":1,"a":2}`, false},
		{`{"a":{"b":1,"b":1}}`, false},
		{`["a","a"]`, true},
		{`"\ud800"`, false},
		{`"\ud83d\ude00"`, true},
		{"\"\xff\"", false},
		{`1e400`, false},
		{`1e-400`, true},
		{`{"a\r":1}`, false},
		{`{"a":"x\ty\nz"}`, true},
		{`{"a":"\u001b[31m"}`, false},
		{`1 2`, false},
		{strings.Repeat("[", 33) + strings.Repeat("]", 33), true},
		{strings.Repeat("[", 34) + strings.Repeat("]", 34), false},
	}
	for _, tt := range tests {
		if got := refWellFormed([]byte(tt.in)); got != tt.want {
			t.Errorf("refWellFormed(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if got := WellFormed([]byte(tt.in)) == nil; got != tt.want {
			t.Errorf("WellFormed(%q) = %v, want %v", tt.in, WellFormed([]byte(tt.in)), tt.want)
		}
	}
}

// TestHygieneRules feeds each kind of bad input through ValidateData and
// Validate and checks the reason names what is wrong and where.
func TestHygieneRules(t *testing.T) {
	s := loadSet(t)
	golden, err := os.ReadFile(filepath.Join("examples", "systemd.v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	const unit = `{"name":%s,"load_state":"loaded","active_state":"failed"}`
	systemd := func(name string) string {
		return `{"source":"dbus","failed":[` + strings.Replace(unit, "%s", name, 1) + `]}`
	}
	hb := `{"counter":%s,"instance":"i","uptime_seconds":1,"load1":0,"load5":0,"load15":0,"mem_total_bytes":1,"mem_available_bytes":1,"agent_version":"v"}`
	heartbeat := func(counter string) string { return strings.Replace(hb, "%s", counter, 1) }
	tests := []struct {
		name, typ, data, want string
	}{
		{"CR LF in a unit name", "systemd", systemd(`"evil.service\r\nBcc: victim@evil.example"`), "/failed/0/name"},
		{"ESC in a unit name", "systemd", systemd(`"\u001b[2Jevil"`), "U+001B"},
		{"C1 in a unit name", "systemd", systemd(`"a\u0085b"`), "U+0085"},
		{"DEL in a unit name", "systemd", systemd("\"a\x7fb\""), "U+007F"},
		{"bidi override in a unit name", "systemd", systemd(`"a\u202eb"`), "U+202E"},
		{"invalid UTF-8", "systemd", systemd("\"a\xffb\""), "invalid UTF-8"},
		{"unpaired surrogate", "systemd", systemd(`"a\ud800b"`), "unpaired UTF-16 surrogate"},
		{"duplicate key", "systemd", `{"source":"dbus","failed":[],"source":"systemctl"}`, `duplicate key "source"`},
		{"duplicate key nested", "systemd", systemd(`"a","name":"b"`), `duplicate key "name"`},
		{"control character in a key", "systemd", `{"source":"dbus","failed":[],"x\u0007":1}`, "key"},
		{"control character in free text", "systemd", `{"source":"dbus","failed":[{"name":"a","description":"x\u001by","load_state":"l","active_state":"a"}]}`, "U+001B"},
		{"uint64 overflow", "heartbeat", heartbeat("18446744073709551616"), "does not fit in uint64"},
		{"negative into unsigned", "heartbeat", strings.Replace(heartbeat("1"), `"mem_total_bytes":1`, `"mem_total_bytes":-1`, 1), "/mem_total_bytes"},
		{"fraction into an integer", "heartbeat", heartbeat("1.5"), "/counter"},
		{"integer written with an exponent", "heartbeat", heartbeat("1e3"), "not written as an integer"},
		{"integer written as 1.0", "heartbeat", heartbeat("1.0"), "not written as an integer"},
		{"float overflow", "heartbeat", strings.Replace(heartbeat("1"), `"load1":0`, `"load1":1e400`, 1), "out of range of a 64-bit float"},
		{"nested too deep", "systemd", `{"source":"dbus","failed":[],"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, _ := events.Lookup(tt.typ)
			err := s.ValidateData(k.Type(), []byte(tt.data))
			if err == nil {
				t.Fatalf("ValidateData accepted %s", tt.data)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if fast, _ := s.fastValid(k.Type(), []byte(tt.data)); fast {
				t.Error("the byte scanner accepts it")
			}
			if s.fullValid(k.Type(), []byte(tt.data)) {
				t.Error("the full validator accepts it")
			}
			// The whole event, as the hub's ingest sees it.
			ev := bytes.Replace(golden, []byte(`"data":`), []byte(`"data":`+tt.data+`,"x":`), 1)
			if tt.typ != "systemd" {
				ev = bytes.Replace(ev, []byte("systemd"), []byte(tt.typ), -1)
			}
			if _, _, err := s.Validate(ev); err == nil {
				t.Errorf("Validate accepted %s", ev)
			}
		})
	}
	// Tab and newline are fine in free text, not in names.
	ok := `{"source":"dbus","failed":[{"name":"a","description":"line 1\n\tline 2","load_state":"l","active_state":"a"}]}`
	if err := s.ValidateData("pinkie.systemd.v1", []byte(ok)); err != nil {
		t.Errorf("free text with tab and newline refused: %v", err)
	}
	if err := s.ValidateData("pinkie.systemd.v1", []byte(systemd(`"a\tb"`))); err == nil {
		t.Error("a tab in a unit name accepted")
	}
}

// TestEnvelopeHygiene: the CloudEvents attributes obey the same rules.
func TestEnvelopeHygiene(t *testing.T) {
	s := loadSet(t)
	golden, err := os.ReadFile(filepath.Join("examples", "heartbeat.v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new, want string
	}{
		{"duplicate attribute", `"specversion"`, `"subject":"a","subject":"b","specversion"`, `duplicate key "subject"`},
		{"control character in the subject", `"specversion"`, `"subject":"sda\r\nX-Evil: 1","specversion"`, "subject"},
		{"bidi override in the subject", `"specversion"`, `"subject":"sda\u202e","specversion"`, "U+202E"},
		{"invalid UTF-8 in the subject", `"specversion"`, "\"subject\":\"sd\xc3\",\"specversion\"", "invalid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := bytes.Replace(golden, []byte(tt.old), []byte(tt.new), 1)
			_, _, err := s.Validate(ev)
			if err == nil {
				t.Fatalf("Validate accepted %s", ev)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestDeclaredFormats: the Go types and the default for strings reach
// the compiled schemas.
func TestDeclaredFormats(t *testing.T) {
	s := loadSet(t)
	prop := func(typ string, path ...string) map[string]any {
		n := s.Raw(typ)
		for _, p := range path {
			switch p {
			case "[]":
				n = n["items"].(map[string]any)
			default:
				n = n["properties"].(map[string]any)[p].(map[string]any)
			}
		}
		return n
	}
	tests := []struct {
		typ  string
		path []string
		want string
	}{
		{"pinkie.heartbeat.v1", []string{"counter"}, "uint64"},
		{"pinkie.heartbeat.v1", []string{"instance"}, "name"},
		{"pinkie.systemd.v1", []string{"failed", "[]", "name"}, "name"},
		{"pinkie.systemd.v1", []string{"failed", "[]", "description"}, "text"},
		{"pinkie.systemd.v1", []string{"failed", "[]", "restarts"}, "int64"},
		{"pinkie.postgres.v1", []string{"size_bytes"}, "int64"},
		{"pinkie.smart.v1", []string{"power_on_hours"}, "uint64"},
		{"pinkie.deploy.failed.v1", []string{"log", "[]"}, "text"},
		{"pinkie.login.v1", []string{"logged_at"}, "date-time"},
	}
	for _, tt := range tests {
		if got := prop(tt.typ, tt.path...)["format"]; got != tt.want {
			t.Errorf("%s %v: format %v, want %s", tt.typ, tt.path, got, tt.want)
		}
	}
}

// corrupt breaks JSON text at the byte level in the ways a value cannot
// be marshalled: repeated keys, invalid UTF-8, unpaired surrogates,
// control characters in keys, huge numbers.
func corrupt(r *rand.Rand, data []byte) []byte {
	var quotes []int
	for i, c := range data {
		if c == '"' {
			quotes = append(quotes, i)
		}
	}
	if len(quotes) == 0 {
		return data
	}
	i := quotes[r.Intn(len(quotes))]
	insert := func(at int, s string) []byte {
		out := append([]byte{}, data[:at]...)
		out = append(out, s...)
		return append(out, data[at:]...)
	}
	switch r.Intn(6) {
	case 0: // repeat the first key of some object
		if o := bytes.IndexByte(data, '{'); o >= 0 {
			end := bytes.IndexByte(data[o:], ',')
			if end > 0 {
				return insert(o+end+1, string(data[o+1:o+end])+",")
			}
		}
	case 1:
		return insert(i+1, "\xff")
	case 2:
		return insert(i+1, `\udc00`)
	case 3:
		return insert(i+1, `\u0085`)
	case 4:
		return insert(i+1, "\x7f")
	case 5:
		if o := bytes.IndexAny(data, "123456789"); o >= 0 {
			return insert(o+1, "e400")
		}
	}
	return data
}

// FuzzWellFormed holds the scanner's whole-payload rules to the reference
// on arbitrary bytes.
func FuzzWellFormed(f *testing.F) {
	for _, seed := range []string{`{"a":1}`, `{"a":1,"a":2}`, "\"\xff\"", `"\ud800"`, `1e400`, `{"a\r":"b\u001b"}`, `[[[]]]`, `{"a":[1,"x\ty"]}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, want := WellFormed(data) == nil, refWellFormed(data)
		if got != want {
			t.Fatalf("WellFormed says %v (%v), the reference %v, for %q", got, WellFormed(data), want, data)
		}
	})
}
