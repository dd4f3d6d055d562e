package notifier

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// Channel delivers messages somewhere.
type Channel interface {
	Name() string
	Type() string
	Route() Route
	// Send delivers msg. An error wrapping ErrPermanent is not retried.
	Send(ctx context.Context, msg Message) error
}

// ErrPermanent marks a delivery failure that retrying cannot fix (the
// server refused the request as malformed or unauthorised).
var ErrPermanent = errors.New("permanent")

func permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// Message is one notification: one alert or a group of them. ID is stable
// across retries (the Matrix txnId, the email Message-ID).
type Message struct {
	ID     string
	Alerts []events.Alert
	// Test marks a test message (pinkie notify test).
	Test bool
}

func httpClient() *http.Client { return &http.Client{Timeout: 15 * time.Second} }

// Title is a message's one-line title. Control characters from the
// alert's names are escaped (\r, \x1b): the title becomes a mail Subject,
// an ntfy title and the first line of a Matrix notice.
func (m Message) Title() string { return events.Escape(m.title()) }

func (m Message) title() string {
	if m.Test {
		return "pinkie: test notification"
	}
	if len(m.Alerts) == 1 {
		a := m.Alerts[0]
		obj := ""
		if a.Object != "" {
			obj = " " + a.Object
		}
		return fmt.Sprintf("[%s] %s %s%s", statusWord(a), a.Host, a.Rule, obj)
	}
	firing, resolved := 0, 0
	for _, a := range m.Alerts {
		if a.Status == "resolved" {
			resolved++
		} else {
			firing++
		}
	}
	return fmt.Sprintf("[%d FIRING, %d RESOLVED] %d alerts", firing, resolved, len(m.Alerts))
}

func statusWord(a events.Alert) string {
	if a.Status == "resolved" {
		return "RESOLVED"
	}
	if a.OneShot {
		return strings.ToUpper(a.Severity)
	}
	return "FIRING " + strings.ToUpper(a.Severity)
}

// Text is the plain-text body: one line per alert. Control characters
// other than tab and newline are escaped.
func (m Message) Text(dashboard string) string { return events.EscapeText(m.text(dashboard)) }

func (m Message) text(dashboard string) string {
	if m.Test {
		return "This is a test message from the pinkie hub's notifier."
	}
	var b strings.Builder
	for _, a := range m.Alerts {
		fmt.Fprintf(&b, "%s: %s", statusWord(a), a.Summary)
		if a.Reason == "repeat" {
			b.WriteString(" (still firing)")
		}
		if a.Status == "resolved" && a.EndsAt != nil {
			fmt.Fprintf(&b, " (after %s)", a.EndsAt.Sub(a.StartsAt).Round(time.Second))
		}
		b.WriteString("\n")
	}
	if dashboard != "" {
		fmt.Fprintf(&b, "%s\n", alertsLink(dashboard, m))
	}
	return strings.TrimRight(b.String(), "\n")
}

// HTML is the HTML body.
func (m Message) HTML(dashboard string) string {
	if m.Test {
		return "<p>This is a test message from the pinkie hub's notifier.</p>"
	}
	var b strings.Builder
	b.WriteString("<ul>")
	for _, a := range m.Alerts {
		fmt.Fprintf(&b, "<li><b>%s</b> %s</li>", html.EscapeString(statusWord(a)), html.EscapeString(events.EscapeText(a.Summary)))
	}
	b.WriteString("</ul>")
	if dashboard != "" {
		fmt.Fprintf(&b, `<p><a href="%s">open in the dashboard</a></p>`, html.EscapeString(alertsLink(dashboard, m)))
	}
	return b.String()
}

func alertsLink(dashboard string, m Message) string {
	base := strings.TrimRight(dashboard, "/") + "/alerts"
	if len(m.Alerts) == 1 {
		return base + "?host=" + url.QueryEscape(m.Alerts[0].Host) + "&fingerprint=" + m.Alerts[0].Fingerprint
	}
	return base
}

func worst(m Message) events.Alert {
	best := m.Alerts[0]
	for _, a := range m.Alerts[1:] {
		if a.Status != "resolved" && (best.Status == "resolved" || rank(a.Severity) < rank(best.Severity)) {
			best = a
		}
	}
	return best
}

// httpOutcome turns an HTTP answer into nil, a retryable or a permanent
// error: 2xx is delivered; 408, 429 and 5xx are retried; other 4xx are
// refusals that retrying cannot fix.
func httpOutcome(what string, resp *http.Response) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	err := fmt.Errorf("%s: %s: %s", what, resp.Status, strings.TrimSpace(string(body)))
	if resp.StatusCode == 408 || resp.StatusCode == 429 || resp.StatusCode >= 500 {
		return err
	}
	return permanent(err)
}

// ntfy publishes as JSON to the server's root URL
// (https://docs.ntfy.sh/publish/#publish-as-json): topic, title, message,
// priority 1-5, tags (emoji short codes and labels), click.
type ntfy struct {
	name, token, dashboard string
	cfg                    NtfyConfig
	client                 *http.Client
}

func (c *ntfy) Name() string { return c.name }
func (c *ntfy) Type() string { return "ntfy" }
func (c *ntfy) Route() Route { return c.cfg.Route }

// NtfyPriority maps an alert to ntfy's priority: 5 (urgent) critical,
// 4 (high) warning, 3 (default) info, 2 (low) resolved.
func NtfyPriority(a events.Alert) int {
	if a.Status == "resolved" {
		return 2
	}
	switch a.Severity {
	case events.SeverityCritical:
		return 5
	case events.SeverityWarning:
		return 4
	}
	return 3
}

// NtfyTags are an emoji for the state and the alert's host and rule.
func NtfyTags(a events.Alert) []string {
	emoji := "information_source"
	switch {
	case a.Status == "resolved":
		emoji = "white_check_mark"
	case a.Severity == events.SeverityCritical:
		emoji = "rotating_light"
	case a.Severity == events.SeverityWarning:
		emoji = "warning"
	}
	return []string{emoji, events.Escape(a.Host), events.Escape(a.Rule)}
}

func (c *ntfy) Send(ctx context.Context, m Message) error {
	body := map[string]any{"topic": c.cfg.Topic, "title": m.Title(), "message": m.Text("")}
	if len(m.Alerts) > 0 {
		w := worst(m)
		body["priority"] = NtfyPriority(w)
		body["tags"] = NtfyTags(w)
	} else {
		body["priority"], body["tags"] = 3, []string{"test_tube"}
	}
	if c.dashboard != "" {
		body["click"] = alertsLink(c.dashboard, m)
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.cfg.URL, "/")+"/", bytes.NewReader(b))
	if err != nil {
		return permanent(fmt.Errorf("ntfy: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("ntfy POST %s: %w", c.cfg.URL, err)
	}
	defer resp.Body.Close()
	return httpOutcome("ntfy POST "+c.cfg.URL, resp)
}

// matrix sends an m.notice with
// PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId};
// the txnId is the message id, so a retry after a lost answer is
// recognised by the homeserver and posts nothing twice.
type matrix struct {
	name, token, dashboard string
	cfg                    MatrixConfig
	client                 *http.Client
}

func (c *matrix) Name() string { return c.name }
func (c *matrix) Type() string { return "matrix" }
func (c *matrix) Route() Route { return c.cfg.Route }

// MatrixSendPath is the request path of a message into room with txnID.
func MatrixSendPath(room, txnID string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/send/m.room.message/" + url.PathEscape(txnID)
}

func (c *matrix) Send(ctx context.Context, m Message) error {
	body := map[string]string{
		"msgtype":        "m.notice",
		"body":           m.Title() + "\n" + m.Text(c.dashboard),
		"format":         "org.matrix.custom.html",
		"formatted_body": "<p><b>" + html.EscapeString(m.Title()) + "</b></p>" + m.HTML(c.dashboard),
	}
	b, _ := json.Marshal(body)
	u := strings.TrimRight(c.cfg.Homeserver, "/") + MatrixSendPath(c.cfg.RoomID, m.ID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(b))
	if err != nil {
		return permanent(fmt.Errorf("matrix: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("matrix PUT %s: %w", c.cfg.Homeserver, err)
	}
	defer resp.Body.Close()
	return httpOutcome("matrix PUT room "+c.cfg.RoomID, resp)
}

// email sends a multipart (text and HTML) message over SMTP, with STARTTLS
// as configured, PLAIN authentication (only over TLS or to localhost, as
// net/smtp enforces) and Message-ID <id@pinkie> stable across retries.
type email struct {
	name, password, dashboard string
	cfg                       EmailConfig
	roots                     *x509.CertPool
}

func (c *email) Name() string { return c.name }
func (c *email) Type() string { return "email" }
func (c *email) Route() Route { return c.cfg.Route }

func loadCA(file string) (*x509.CertPool, error) {
	b, err := bounded.ReadPath(file, 16*bounded.MiB) // a system bundle is about 200 KB
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificates", file)
	}
	return pool, nil
}

func (c *email) Send(ctx context.Context, m Message) error {
	addr := net.JoinHostPort(c.cfg.SMTPHost, strconv.Itoa(c.cfg.SMTPPort))
	tlsCfg := &tls.Config{ServerName: c.cfg.SMTPHost, RootCAs: c.roots, MinVersion: tls.VersionTLS12}
	d := net.Dialer{Timeout: 15 * time.Second}
	var conn net.Conn
	var err error
	if c.cfg.TLS == "tls" {
		conn, err = tls.DialWithDialer(&d, "tcp", addr, tlsCfg)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
	}
	cl, err := smtp.NewClient(conn, c.cfg.SMTPHost)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	defer cl.Close()
	if err := cl.Hello("pinkie-hub"); err != nil {
		return fmt.Errorf("smtp %s: EHLO: %w", addr, err)
	}
	if c.cfg.TLS == "starttls" || c.cfg.TLS == "auto" {
		if ok, _ := cl.Extension("STARTTLS"); ok {
			if err := cl.StartTLS(tlsCfg); err != nil {
				return fmt.Errorf("smtp %s: STARTTLS: %w", addr, err)
			}
		} else if c.cfg.TLS == "starttls" {
			return fmt.Errorf("smtp %s: the server does not offer STARTTLS (tls: starttls)", addr)
		}
	}
	if c.cfg.Username != "" {
		if err := cl.Auth(smtp.PlainAuth("", c.cfg.Username, c.password, c.cfg.SMTPHost)); err != nil {
			return permanent(fmt.Errorf("smtp %s: AUTH: %w", addr, err))
		}
	}
	if err := cl.Mail(c.cfg.From); err != nil {
		return smtpErr(addr, "MAIL FROM", err)
	}
	for _, to := range c.cfg.To {
		if err := cl.Rcpt(to); err != nil {
			return smtpErr(addr, "RCPT TO "+to, err)
		}
	}
	w, err := cl.Data()
	if err != nil {
		return smtpErr(addr, "DATA", err)
	}
	if _, err := w.Write(c.compose(m)); err != nil {
		return fmt.Errorf("smtp %s: DATA: %w", addr, err)
	}
	if err := w.Close(); err != nil {
		return smtpErr(addr, "DATA", err)
	}
	return cl.Quit()
}

// smtpErr: 5xx replies are permanent, others are retried.
func smtpErr(addr, what string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return permanent(fmt.Errorf("smtp %s: %s: %w", addr, what, err))
	}
	return fmt.Errorf("smtp %s: %s: %w", addr, what, err)
}

func (c *email) compose(m Message) []byte {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, part := range []struct{ ct, s string }{{"text/plain; charset=utf-8", m.Text(c.dashboard)}, {"text/html; charset=utf-8", m.HTML(c.dashboard)}} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", part.ct)
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		pw, _ := mw.CreatePart(h)
		qp := quotedprintable.NewWriter(pw)
		_, _ = qp.Write([]byte(part.s))
		_ = qp.Close()
	}
	_ = mw.Close()
	var b bytes.Buffer
	// No value can end the header line it is on: the subject is MIME
	// encoded (RFC 2047), everything else has control characters escaped.
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, events.Escape(v)) }
	hdr("From", c.cfg.From)
	hdr("To", strings.Join(c.cfg.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", m.Title()))
	hdr("Date", time.Now().UTC().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+m.ID+"@pinkie>")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "multipart/alternative; boundary="+mw.Boundary())
	b.WriteString("\r\n")
	b.Write(body.Bytes())
	return b.Bytes()
}
