package notifier

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"testing"

	"github.com/pinkiefleet/pinkie/events"
)

// injected is a unit name that ends a mail header line and starts two
// more, and clears a terminal on the way.
const injected = "evil.service\r\nBcc: victim@evil.example\r\nX-Injected: yes\x1b[2J"

func injectedMessage() Message {
	return Message{ID: "m1", Alerts: []events.Alert{{
		Host: "goliath", Rule: "unit_failed", Object: injected, Severity: events.SeverityCritical, Status: "firing",
		Summary: "unit " + injected + " failed\nsecond line\u202e", Fingerprint: "f1",
	}}}
}

// TestEmailHeadersCannotBeInjected parses the composed message as a mail
// reader does: one Subject that decodes to the escaped title, no Bcc, no
// X-Injected, and a body without control characters but its newlines.
func TestEmailHeadersCannotBeInjected(t *testing.T) {
	c := &email{cfg: EmailConfig{From: "pinkie@example.org", To: []string{"ops@example.org"}}}
	raw := c.compose(injectedMessage())
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("composed message does not parse: %v\n%s", err, raw)
	}
	for _, h := range []string{"Bcc", "X-Injected"} {
		if v, ok := msg.Header[h]; ok {
			t.Errorf("header %s injected: %q", h, v)
		}
	}
	if n := len(msg.Header["Subject"]); n != 1 {
		t.Fatalf("%d Subject headers", n)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	want := `[FIRING CRITICAL] goliath unit_failed evil.service\r\nBcc: victim@evil.example\r\nX-Injected: yes\x1b[2J`
	if subject != want {
		t.Errorf("subject decodes to %q, want %q", subject, want)
	}
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(head), "\r\n") {
		if strings.ContainsAny(line, "\r\n\x1b") {
			t.Errorf("header line with a control character: %q", line)
		}
	}
	body, _ := io.ReadAll(msg.Body)
	text := decodeQP(t, body)
	if strings.Contains(text, "\x1b") || strings.Contains(text, "\u202e") || strings.Contains(text, "service\r") {
		t.Errorf("body carries control characters: %q", text)
	}
	// Newlines are kept in the body (the summary is free text); the CR
	// and the escape sequence are shown, not obeyed.
	if !strings.Contains(text, `unit evil.service\r`) || !strings.Contains(text, `X-Injected: yes\x1b[2J failed`) {
		t.Errorf("body does not show the escaped unit name: %q", text)
	}
}

func decodeQP(t *testing.T, body []byte) string {
	t.Helper()
	// Both parts are quoted-printable; undo soft breaks and =XX escapes.
	s := strings.ReplaceAll(string(body), "=\r\n", "")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '=' && i+2 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+3], "%02X", &c); err == nil {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// TestNtfyAndMatrixCarryNoControlCharacters: the JSON bodies are escaped by
// encoding/json anyway; the title, tags and notice must still be one line
// without control characters once the server decodes them, and no request
// header carries event data.
func TestNtfyAndMatrixCarryNoControlCharacters(t *testing.T) {
	var bodies [][]byte
	var headers []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, b)
		headers = append(headers, r.Header.Clone())
		_, _ = w.Write([]byte(`{"event_id":"$e"}`))
	}))
	defer srv.Close()
	chans := []Channel{
		&ntfy{name: "n", cfg: NtfyConfig{URL: srv.URL, Topic: "t"}, client: srv.Client()},
		&matrix{name: "m", token: "tok", cfg: MatrixConfig{Homeserver: srv.URL, RoomID: "!r:x"}, client: srv.Client()},
	}
	for _, c := range chans {
		if err := c.Send(context.Background(), injectedMessage()); err != nil {
			t.Fatalf("%s: %v", c.Type(), err)
		}
	}
	var n struct {
		Title, Message string
		Tags           []string
	}
	if err := json.Unmarshal(bodies[0], &n); err != nil {
		t.Fatal(err)
	}
	for _, v := range append([]string{n.Title}, n.Tags...) {
		if events.CheckName(v) != nil {
			t.Errorf("ntfy title or tag carries a control character: %q", v)
		}
	}
	if events.CheckText(n.Message) != nil {
		t.Errorf("ntfy message carries a control character: %q", n.Message)
	}
	var m struct {
		Body          string `json:"body"`
		FormattedBody string `json:"formatted_body"`
	}
	if err := json.Unmarshal(bodies[1], &m); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{m.Body, m.FormattedBody} {
		if events.CheckText(v) != nil {
			t.Errorf("matrix notice carries a control character: %q", v)
		}
	}
	for _, h := range headers {
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, "evil") || events.CheckName(v) != nil {
					t.Errorf("request header %s: %q", k, v)
				}
			}
		}
	}
}
