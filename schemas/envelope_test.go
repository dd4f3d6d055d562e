package schemas

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pinkiefleet/pinkie/events"
)

// validateAgrees fails unless Validate (one scan) and validateSteps (the
// checks one after the other, as Validate was) give the same event, kind
// and error for payload. It reports whether the one scan answered.
func validateAgrees(t *testing.T, s *Set, payload []byte) (oneScan bool) {
	t.Helper()
	e, k, err := s.Validate(payload)
	se, sk, serr := s.validateSteps(payload)
	switch {
	case (err == nil) != (serr == nil):
		t.Errorf("%q: Validate says %v, the steps say %v", payload, err, serr)
	case err != nil && sameWords(err.Error()) != sameWords(serr.Error()):
		t.Errorf("%q: errors differ:\n%v\n%v", payload, err, serr)
	case k.Type() != sk.Type() || k.Origin != sk.Origin || !sameEncoding(e, se):
		t.Errorf("%q: results differ:\n%v %v\n%v %v", payload, e, k.Type(), se, sk.Type())
	}
	if err == nil {
		env := s.envelope[e.Type()]
		oneScan = env != nil && env.validBytes(payload)
	}
	return oneScan
}

// TestValidateInOneScan: the one scan of the whole payload accepts only
// what the whole-payload rules, the envelope decoder and the data's schema
// accept one after the other, and it answers for the golden examples.
func TestValidateInOneScan(t *testing.T) {
	s := loadSet(t)
	files, _ := filepath.Glob(filepath.Join("examples", "*.json"))
	if len(files) < 20 {
		t.Fatalf("only %d examples", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		e, _, err := s.Validate(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !validateAgrees(t, s, b) && s.fast[e.Type()] != nil {
			t.Errorf("%s: the one scan does not accept the golden example", f)
		}
	}
	golden, err := os.ReadFile(filepath.Join("examples", "heartbeat.v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	g := string(golden)
	withData := func(data string) string {
		i := strings.Index(g, `"data":`)
		end, ok := skipJSON(g[i+len(`"data":`):])
		if !ok {
			t.Fatalf("cannot find the data of %s", g)
		}
		return g[:i] + `"data":` + data + g[i+len(`"data":`)+end:]
	}
	hb := `{"counter":%s,"instance":"i","uptime_seconds":1,"load1":0,"load5":0,"load15":0,"mem_total_bytes":1,"mem_available_bytes":1,"agent_version":"v"}`
	heartbeat := func(counter string) string { return strings.Replace(hb, "%s", counter, 1) }
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	body := strings.TrimSuffix(strings.TrimSpace(g), "}")
	cases := []string{
		withData(heartbeat("1")), withData(heartbeat(`"x"`)), withData(heartbeat("-1")), withData(heartbeat("1.5")),
		withData(heartbeat("1e400")), withData(heartbeat("18446744073709551616")), withData(`{}`), withData(`null`), withData(`[]`),
		withData(strings.Replace(heartbeat("1"), `"v"}`, `"v","x":1}`, 1)),
		withData(strings.Replace(heartbeat("1"), `"v"}`, `"v","counter":2}`, 1)),
		withData(strings.Replace(heartbeat("1"), `"i"`, "\"i\xff\"", 1)), withData(strings.Replace(heartbeat("1"), `"i"`, `"i\u001b"`, 1)),
		withData(strings.Replace(heartbeat("1"), `"i"`, `"\ud800"`, 1)), withData(strings.Replace(heartbeat("1"), `"i"`, `"a\u0041"`, 1)),
		// Another spelling of "data" that encoding/json reads as the data.
		body + `,"Data":` + heartbeat(`"x"`) + `}`, body + `,"DATA":` + heartbeat("1") + `}`, body + `,"data":` + heartbeat("2") + `}`,
		body + `,"ID":"x"}`, body + `,"extra":1}`, body + `,"subject":"a","subject":"b"}`, body + `,"subject":"a\u202e"}`,
		body + "}x", body + "} ", " " + g, g + g, body + `,"x":` + deep(31) + `}`, body + `,"x":` + deep(32) + `}`,
		strings.Replace(g, `"specversion"`, `"subject":"sda\r\nX-Evil: 1","specversion"`, 1),
		strings.Replace(g, `"specversion"`, "\"subject\":\"sd\xc3\",\"specversion\"", 1),
		strings.Replace(g, `"type":"pinkie.heartbeat.v1"`, `"type":"pinkie.systemd.v1"`, 1), "", "{}", "null",
	}
	// Nested as deep as the rules allow, and one deeper, inside the data.
	for _, n := range []int{29, 30, 31, 32} {
		cases = append(cases, withData(strings.Replace(heartbeat("1"), `"v"}`, `"v","x":`+deep(n)+`}`, 1)))
	}
	for _, c := range cases {
		validateAgrees(t, s, []byte(c))
	}
	if _, _, err := s.Validate([]byte(body + `,"Data":` + heartbeat(`"x"`) + `}`)); err == nil {
		t.Error("data spelled Data escaped the schema")
	}
}

// sameWords is s's words in order: the full validator lists a failure's
// causes in no fixed order.
func sameWords(s string) string {
	w := strings.Fields(strings.NewReplacer(",", " ", ";", " ").Replace(s))
	sort.Strings(w)
	return strings.Join(w, " ")
}

// sameEncoding reports whether two events (either possibly empty) encode
// alike.
func sameEncoding(a, b events.Event) bool {
	if a.Context == nil || b.Context == nil {
		return (a.Context == nil) == (b.Context == nil)
	}
	ea, erra := events.Encode(a)
	eb, errb := events.Encode(b)
	return bytes.Equal(ea, eb) && (erra == nil) == (errb == nil)
}

// skipJSON returns the length of the JSON value s starts with.
func skipJSON(s string) (int, bool) {
	sc := fastScanner{b: []byte(s)}
	sc.ws()
	if !sc.value(nil, 0) {
		return 0, false
	}
	return sc.i, true
}

// FuzzValidateInOneScan: whatever the payload, Validate answers as the
// steps do.
func FuzzValidateInOneScan(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("examples", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(bytes.Replace(b, []byte(`"data"`), []byte(`"Data"`), 1))
	}
	s, err := Load()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		validateAgrees(t, s, b)
	})
}
