package events

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

func sameEvent(t *testing.T, what string, a, b Event) {
	t.Helper()
	if a.ID() != b.ID() || a.Source() != b.Source() || a.Type() != b.Type() || a.Subject() != b.Subject() ||
		!a.Time().Equal(b.Time()) || a.DataSchema() != b.DataSchema() || a.DataContentType() != b.DataContentType() ||
		a.SpecVersion() != b.SpecVersion() {
		t.Errorf("%s: attributes differ:\n%v\n%v", what, a, b)
	}
	var da, db any
	if err := json.Unmarshal(a.Data(), &da); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b.Data(), &db); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(da, db) {
		t.Errorf("%s: data differs: %s vs %s", what, a.Data(), b.Data())
	}
}

// TestWireCodecMatchesSDK: pinkie's codec and the CloudEvents SDK's read
// each other's output alike.
func TestWireCodecMatchesSDK(t *testing.T) {
	var payloads [][]byte
	files, _ := filepath.Glob(filepath.Join("..", "schemas", "examples", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, b)
	}
	k, _ := Lookup("heartbeat")
	for i := 0; i < 50; i++ {
		e, err := New(k, "goliath", "heartbeat", time.Unix(1764200000, int64(i)*123457).UTC(), Heartbeat{Counter: uint64(i + 1), Instance: "ü\"\\<>&"}, WithSubject("obj/ect"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, b)
	}
	if len(payloads) < 52 {
		t.Fatalf("only %d payloads", len(payloads))
	}
	for _, p := range payloads {
		var sdk event.Event
		if err := json.Unmarshal(p, &sdk); err != nil {
			t.Fatalf("SDK cannot read %s: %v", p, err)
		}
		if err := sdk.Validate(); err != nil {
			t.Fatalf("SDK says %s is invalid: %v", p, err)
		}
		ours, _, err := Decode(p)
		if err != nil {
			t.Fatalf("Decode %s: %v", p, err)
		}
		sameEvent(t, "decode", sdk, ours)
		// Each codec reads what the other writes.
		fromSDK, err := json.Marshal(sdk)
		if err != nil {
			t.Fatal(err)
		}
		again, _, err := Decode(fromSDK)
		if err != nil {
			t.Fatalf("Decode of the SDK's encoding %s: %v", fromSDK, err)
		}
		sameEvent(t, "SDK encode, our decode", sdk, again)
		fromUs, err := Encode(ours)
		if err != nil {
			t.Fatal(err)
		}
		var sdk2 event.Event
		if err := json.Unmarshal(fromUs, &sdk2); err != nil {
			t.Fatalf("SDK cannot read our encoding %s: %v", fromUs, err)
		}
		sameEvent(t, "our encode, SDK decode", ours, sdk2)
	}
}

func TestDecodeRefusesWhatIsNotAPinkieEvent(t *testing.T) {
	base := `"specversion":"1.0","id":"1","source":"pinkie://a/b","type":"pinkie.heartbeat.v1","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","dataschema":"https://pinkie.dev/schemas/heartbeat.v1.json"`
	for name, p := range map[string]string{
		"extension attribute": `{` + base + `,"data":{},"myext":"x"}`,
		"base64 data":         `{` + base + `,"data_base64":"e30="}`,
		"no data":             `{` + base + `}`,
		"null data":           `{` + base + `,"data":null}`,
		"trailing":            `{` + base + `,"data":{}} {}`,
		"bad time":            `{` + base[:len(base)-len(`,"datacontenttype":"application/json","dataschema":"https://pinkie.dev/schemas/heartbeat.v1.json"`)] + `x","data":{}}`,
		"spec 0.3":            `{"specversion":"0.3","id":"1","source":"pinkie://a/b","type":"pinkie.heartbeat.v1","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","dataschema":"https://pinkie.dev/schemas/heartbeat.v1.json","data":{}}`,
	} {
		if _, _, err := Decode([]byte(p)); err == nil {
			t.Errorf("%s: Decode accepted %s", name, p)
		}
	}
}

// appendJSONString must write what encoding/json writes.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `quote " back \ slash`, "ctl \x00\x01\x1f\x7f", "tab\tnl\ncr\r", "<&>", "ü €𝄞", "\u2028\u2029", "bad \xff\xfe utf8", "pinkie://goliath/heartbeat"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	})
}
