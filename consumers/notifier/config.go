// Package notifier delivers alerts to people: ntfy (HTTP publish), Matrix
// (client-server API, m.notice) and email (SMTP). Alerts that fire within
// group_wait for a channel go out as one message; a message that cannot be
// delivered is retried with exponential backoff for up to max_retry, and
// survives restarts because every pending message is a record in a Store
// before its alert is acknowledged. The Notifier talks to the world only
// through the Store, the Publisher (delivery audit) and its channels'
// HTTP and SMTP clients.
package notifier

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/consumers/alerter"
	"github.com/pinkiefleet/pinkie/events"
)

// Config is the hub configuration's "notify" section.
type Config struct {
	// GroupWait: alerts for a channel within this window go out as one
	// message (default 30s; "0s" sends each alert at once).
	GroupWait *alerter.Duration `json:"group_wait,omitempty"`
	// MaxRetry is how long a message is retried (default 24h).
	MaxRetry alerter.Duration `json:"max_retry,omitempty"`
	// DashboardURL is the base of the click-through links.
	DashboardURL string `json:"dashboard_url,omitempty"`
	// Channels by name (the name is a subject token of the delivery
	// audit: pinkie.notify.<name>.<outcome>).
	Channels map[string]json.RawMessage `json:"channels"`
}

// Route selects the alerts a channel gets. Empty fields match everything.
type Route struct {
	// MinSeverity: critical, warning or info (default info: all).
	MinSeverity string `json:"min_severity,omitempty"`
	// Hosts and Rules are shell patterns (path.Match); an alert matches
	// if any pattern does.
	Hosts []string `json:"hosts,omitempty"`
	Rules []string `json:"rules,omitempty"`
	// Tags are shell patterns on the host's pinkie.deployment.tags in the
	// latest declared fleet (see Fleet); an alert matches if any pattern
	// matches any of its host's tags. A host not in the declared fleet, or
	// with no tags, matches no tag route.
	Tags []string `json:"tags,omitempty"`
	// Labels must all match (patterns), e.g. {"kind": "fs"}.
	Labels map[string]string `json:"labels,omitempty"`
	// SkipResolved: do not send resolved notices.
	SkipResolved bool `json:"skip_resolved,omitempty"`
}

// Matches reports whether the route takes an alert; fleet is the latest
// declared fleet (only tag routes read it).
func (r Route) Matches(a events.Alert, fleet Fleet) bool {
	if r.MinSeverity != "" && rank(a.Severity) > rank(r.MinSeverity) {
		return false
	}
	if r.SkipResolved && a.Status == "resolved" {
		return false
	}
	if !anyMatch(r.Hosts, a.Host) || !anyMatch(r.Rules, a.Rule) {
		return false
	}
	if len(r.Tags) > 0 && !fleet.hostTagged(a.Host, r.Tags) {
		return false
	}
	labels := map[string]string{"host": a.Host, "rule": a.Rule, "object": a.Object, "severity": a.Severity}
	for k, v := range a.Labels {
		labels[k] = v
	}
	return alerter.MatchLabels(r.Labels, labels)
}

func anyMatch(pats []string, v string) bool {
	if len(pats) == 0 {
		return true
	}
	for _, p := range pats {
		if ok, err := path.Match(p, v); err == nil && ok {
			return true
		}
	}
	return false
}

// rank orders severities for routing: critical 0, warning 1, info and
// anything else 2.
func rank(sev string) int { return min(events.SeverityRank(sev), 2) }

// NtfyConfig is an ntfy channel: POST the JSON message to the server URL.
type NtfyConfig struct {
	Type      string `json:"type"`
	URL       string `json:"url"`
	Topic     string `json:"topic"`
	TokenFile string `json:"token_file,omitempty"`
	Route
}

// MatrixConfig is a Matrix channel: an m.notice into a room.
type MatrixConfig struct {
	Type            string `json:"type"`
	Homeserver      string `json:"homeserver"`
	RoomID          string `json:"room_id"`
	AccessTokenFile string `json:"access_token_file"`
	Route
}

// EmailConfig is an email channel over SMTP.
type EmailConfig struct {
	Type     string `json:"type"`
	SMTPHost string `json:"smtp_host"`
	SMTPPort int    `json:"smtp_port"`
	// TLS is "starttls" (required), "tls" (implicit TLS, port 465),
	// "auto" (STARTTLS when the server offers it; the default) or "none".
	TLS          string   `json:"tls,omitempty"`
	CAFile       string   `json:"ca_file,omitempty"`
	Username     string   `json:"username,omitempty"`
	PasswordFile string   `json:"password_file,omitempty"`
	From         string   `json:"from"`
	To           []string `json:"to"`
	Route
}

var channelNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ParseConfig decodes the "notify" section strictly and builds the
// channels, reading secrets from their files.
func ParseConfig(raw []byte) (Config, []Channel, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) == 0 {
		return c, nil, nil
	}
	if err := strictDecode(raw, &c); err != nil {
		return c, nil, fmt.Errorf("notify: %w", err)
	}
	names := make([]string, 0, len(c.Channels))
	for n := range c.Channels {
		names = append(names, n)
	}
	sort.Strings(names)
	var chans []Channel
	for _, name := range names {
		if !channelNameRE.MatchString(name) {
			return c, nil, fmt.Errorf("notify: channel name %q: use letters, digits, '-' or '_'", name)
		}
		ch, err := parseChannel(name, c.Channels[name], c.DashboardURL)
		if err != nil {
			return c, nil, fmt.Errorf("notify: channel %s: %w", name, err)
		}
		chans = append(chans, ch)
	}
	return c, chans, nil
}

func strictDecode(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func readSecret(field, file string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := bounded.ReadPath(file, 64*bounded.KiB)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", field, file)
	}
	return s, nil
}

func checkRoute(r Route) error {
	if r.MinSeverity != "" && rank(r.MinSeverity) == 2 && r.MinSeverity != events.SeverityInfo {
		return fmt.Errorf("min_severity %q: want critical, warning or info", r.MinSeverity)
	}
	for _, p := range append(append(append([]string{}, r.Hosts...), r.Rules...), r.Tags...) {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	return nil
}

func parseChannel(name string, raw json.RawMessage, dashboard string) (Channel, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, err
	}
	switch head.Type {
	case "ntfy":
		var c NtfyConfig
		if err := strictDecode(raw, &c); err != nil {
			return nil, err
		}
		if c.URL == "" || c.Topic == "" {
			return nil, fmt.Errorf("ntfy needs url and topic")
		}
		tok, err := readSecret("token_file", c.TokenFile)
		if err != nil {
			return nil, err
		}
		return &ntfy{name: name, cfg: c, token: tok, dashboard: dashboard, client: httpClient()}, checkRoute(c.Route)
	case "matrix":
		var c MatrixConfig
		if err := strictDecode(raw, &c); err != nil {
			return nil, err
		}
		if c.Homeserver == "" || c.RoomID == "" || c.AccessTokenFile == "" {
			return nil, fmt.Errorf("matrix needs homeserver, room_id and access_token_file")
		}
		tok, err := readSecret("access_token_file", c.AccessTokenFile)
		if err != nil {
			return nil, err
		}
		return &matrix{name: name, cfg: c, token: tok, dashboard: dashboard, client: httpClient()}, checkRoute(c.Route)
	case "email":
		var c EmailConfig
		if err := strictDecode(raw, &c); err != nil {
			return nil, err
		}
		if c.SMTPHost == "" || c.From == "" || len(c.To) == 0 {
			return nil, fmt.Errorf("email needs smtp_host, from and to")
		}
		if c.SMTPPort == 0 {
			c.SMTPPort = 587
		}
		switch c.TLS {
		case "":
			c.TLS = "auto"
		case "auto", "starttls", "tls", "none":
		default:
			return nil, fmt.Errorf("tls %q: want starttls, tls, auto or none", c.TLS)
		}
		pw, err := readSecret("password_file", c.PasswordFile)
		if err != nil {
			return nil, err
		}
		if c.Username != "" && pw == "" {
			return nil, fmt.Errorf("username set without password_file")
		}
		ch := &email{name: name, cfg: c, password: pw, dashboard: dashboard}
		if c.CAFile != "" {
			pool, err := loadCA(c.CAFile)
			if err != nil {
				return nil, err
			}
			ch.roots = pool
		}
		return ch, checkRoute(c.Route)
	case "":
		return nil, fmt.Errorf("type is required: ntfy, matrix or email")
	default:
		return nil, fmt.Errorf("type %q: want ntfy, matrix or email", head.Type)
	}
}

// durationOr returns d, or def when d is unset.
func durationOr(d *alerter.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.D()
}
