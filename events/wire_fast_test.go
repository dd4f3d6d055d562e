package events

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/types"
)

// wireSamples are envelopes pinkie writes: every golden example and
// events encoded here.
func wireSamples(t testing.TB) [][]byte {
	var out [][]byte
	files, _ := filepath.Glob(filepath.Join("..", "schemas", "examples", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	k, _ := Lookup("heartbeat")
	for i, sub := range []string{"", "obj/ect"} {
		e, err := New(k, "goliath", "heartbeat", time.Unix(1764200000, int64(i)*123457).UTC(), Heartbeat{Counter: uint64(i + 1), Instance: "ü\"\\<>&\t"}, WithSubject(sub))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	if len(out) < 20 {
		t.Fatalf("only %d samples", len(out))
	}
	return out
}

// oldDecodeWire is decodeWire as it was before parseWireFast: encoding/json
// alone.
func oldDecodeWire(b []byte) (Event, error) {
	w, err := parseWireStd(b)
	if err != nil {
		return Event{}, err
	}
	return checkWire(w)
}

// agreeOnWire fails unless decodeWire and the encoding/json decoder give
// the same event or the same error for b, and unless parseWireFast, when
// it answers, answers as parseWireStd does.
func agreeOnWire(t *testing.T, b []byte) (fast bool) {
	t.Helper()
	fw, fok := parseWireFast(b)
	sw, serr := parseWireStd(b)
	if fok {
		if serr != nil {
			t.Errorf("%q: fast parser accepts what encoding/json refuses: %v", b, serr)
		} else if !reflect.DeepEqual(fw, sw) {
			t.Errorf("%q: parsers differ:\n%+v\n%+v", b, fw, sw)
		}
	}
	ne, nerr := decodeWire(b)
	oe, oerr := oldDecodeWire(b)
	switch {
	case (nerr == nil) != (oerr == nil):
		t.Errorf("%q: decodeWire says %v, encoding/json says %v", b, nerr, oerr)
	case nerr != nil:
		if nerr.Error() != oerr.Error() {
			t.Errorf("%q: errors differ: %v vs %v", b, nerr, oerr)
		}
	default:
		if !reflect.DeepEqual(ne, oe) {
			t.Errorf("%q: events differ:\n%v\n%v", b, ne, oe)
		}
	}
	return fok
}

// TestWireParsersAgree: the fast envelope reader refuses exactly what
// encoding/json with DisallowUnknownFields refused (unknown and
// differently cased attributes, wrong types, malformed data, trailing
// data…), and takes the fast path for what pinkie writes.
func TestWireParsersAgree(t *testing.T) {
	samples := wireSamples(t)
	for _, b := range samples {
		if !agreeOnWire(t, b) {
			t.Errorf("fast parser does not read pinkie's own envelope %s", b)
		}
		if _, err := decodeWire(b); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
	good := string(samples[len(samples)-1])
	body := strings.TrimSuffix(strings.TrimSpace(good), "}")
	set := func(attr, raw string) string { // good with attr's value replaced by raw
		i := strings.Index(good, `"`+attr+`":`)
		if i < 0 {
			t.Fatalf("no %s in %s", attr, good)
		}
		j := i + len(attr) + 3
		end, ok := skipValue([]byte(good), j, 0)
		if !ok {
			t.Fatalf("cannot skip %s in %s", attr, good)
		}
		return good[:j] + raw + good[end:]
	}
	cases := []string{
		"", " ", "null", "[]", "{}", "{ }", `"x"`, "1", "{", "}", good[:len(good)-1],
		body + `,"extra":1}`, body + `,"ID":"x"}`, body + `,"Data":{}}`, body + `,"data_base64":"AA=="}`,
		body + `,"id":"other"}`, body + `,"data":{"a":1}}`, body + `,}`, body + `,"id"}`, body + `,"id":}`,
		good + " ", "\n\t" + good + "\r\n", good + "x", good + "}", good + "]", good + " {}", good + good, good + ",",
		strings.Replace(good, `"id":`, `"id" :`, 1), strings.Replace(good, `"id":`, `"i\u0064":`, 1),
		strings.Replace(good, `"id":`, `"\u0069d":`, 1), strings.Replace(good, `"id":`, `"ıd":`, 1),
		strings.Replace(good, `"specversion":`, `"ſpecversion":`, 1), strings.Replace(good, `"type":`, `"typ\u0065":`, 1),
		set("id", "1"), set("id", "null"), set("id", "true"), set("id", `{}`), set("id", `[]`), set("id", `""`),
		set("id", `"a\"b"`), set("id", `"a\u0041"`), set("id", `"ü"`), set("id", "\"a\xffb\""), set("id", "\"a\tb\""),
		set("id", `"a\qb"`), set("id", `"abc`), set("source", `"pinkie://other/heartbeat"`), set("source", `"::"`),
		set("source", `"pinkie://goliath/heart beat"`), set("dataschema", `"%zz"`), set("dataschema", `""`),
		set("time", `"yesterday"`), set("time", `"2026-11-27T02:00:00+01:00"`), set("time", `""`),
		set("specversion", `"0.3"`), set("datacontenttype", `"text/plain"`), set("subject", `""`), set("subject", `"x"`),
		set("type", `"dev.pinkie.nosuch.v1"`),
		set("data", "null"), set("data", "1"), set("data", `"s"`), set("data", "[]"), set("data", "{}"), set("data", "true"),
		set("data", "tru"), set("data", "nul"), set("data", "01"), set("data", "1."), set("data", "-"), set("data", "1e"),
		set("data", "1e+"), set("data", "-0.5E-7"), set("data", "+1"), set("data", ".5"), set("data", "0x1"),
		set("data", `{"a":1,}`), set("data", `[1,]`), set("data", `[1 2]`), set("data", `{"a" 1}`), set("data", `{1:2}`),
		set("data", `{"a":1,"a":2}`), set("data", `{"a":"\x"}`), set("data", `{"a":"\u12G4"}`), set("data", `{"a":"\u12"}`),
		set("data", "{\"a\":\"\x01\"}"), set("data", "{\"a\":\"\xff\xfe\"}"), set("data", `{"a":"\ud800"}`),
		set("data", `{"a":[{"b":[null,false,true,-1.5e3,"\/\b\f\n\r\t\"\\"]}]}`), set("data", " {\"a\" : [ 1 , 2 ] } "),
		set("data", strings.Repeat("[", maxFastDepth+1)+strings.Repeat("]", maxFastDepth+1)),
		set("data", strings.Repeat("[", maxFastDepth)+strings.Repeat("]", maxFastDepth)),
		set("data", strings.Repeat("[", 20000)+strings.Repeat("]", 20000)),
		strings.Replace(good, `,"data":`, `,"nodata":`, 1),
	}
	fastSeen := 0
	for _, c := range cases {
		if agreeOnWire(t, []byte(c)) {
			fastSeen++
		}
	}
	if fastSeen < 10 {
		t.Errorf("the fast parser answered only %d of the cases", fastSeen)
	}
}

// FuzzWireParsers: whatever the input, the fast parser accepts nothing
// encoding/json refuses and reads alike what it accepts, and Decode's
// answer is the old one.
func FuzzWireParsers(f *testing.F) {
	for _, b := range wireSamples(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"id":"x","ID":"y"}`))
	f.Add([]byte(`{"data":[1,{"a":"\u0041"}],"id":"x"} `))
	f.Fuzz(func(t *testing.T, b []byte) {
		agreeOnWire(t, b)
	})
}

// TestParseURLMatchesSDK: the cached parse gives what the SDK's parsers
// give, the first time and from the cache.
func TestParseURLMatchesSDK(t *testing.T) {
	for _, s := range []string{"", "pinkie://goliath/heartbeat", "https://pinkie.dev/schemas/heartbeat.v1.json",
		"::", "%zz", "a b", "rel/path", "pinkie://us%20er:pw@host:12/p?q=1#f", "http://[::1]:80/x", "mailto:x@y"} {
		for round := 0; round < 2; round++ {
			u, ok := parseURL(s)
			ref, uri := types.ParseURIRef(s), types.ParseURI(s)
			if ok != (ref != nil) || ok != (uri != nil) {
				t.Errorf("%q: parseURL ok=%v, SDK %v %v", s, ok, ref, uri)
				continue
			}
			if ok && (!reflect.DeepEqual(u, ref.URL) || !reflect.DeepEqual(u, uri.URL)) {
				t.Errorf("%q: parseURL %#v, SDK %#v", s, u, ref.URL)
			}
		}
	}
}
