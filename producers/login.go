package producers

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/producers/logfollow"
)

// Login reports every successful login: SSH authentications accepted by
// sshd (or sshd-session, OpenSSH ≥ 9.8) and new sessions registered by
// systemd-logind (console, graphical). It follows the journal, or a log
// file such as /var/log/auth.log as `tail -F` would, and keeps its read
// position in the agent's state.
type Login struct {
	opts LogSourceOptions
}

func loginSpec() Spec {
	return Spec{Name: "login", Doc: "successful logins (sshd, systemd-logind) from the journal or auth.log", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) { return NewLogin(raw) }}
}

// NewLogin builds the login producer from its options
// ({"file": PATH} or {"journal": true}, "poll", "follow").
func NewLogin(raw json.RawMessage) (*Login, error) {
	o, err := decodeLogSourceOptions(raw)
	if err != nil {
		return nil, err
	}
	return &Login{opts: o}, nil
}

func (l *Login) Name() string { return "login" }

// loginJournalMatches selects sshd and logind messages (journalctl(1):
// matches on different fields are ANDed, "+" ORs).
var loginJournalMatches = []string{"SYSLOG_IDENTIFIER=sshd", "+", "SYSLOG_IDENTIFIER=sshd-session", "+", "SYSLOG_IDENTIFIER=systemd-logind"}

// Stream follows the log and emits a "login" observation per login.
func (l *Login) Stream(ctx context.Context, env Env, emit func(context.Context, Observation) error) error {
	o, ok := l.opts.source(env, []string{"/var/log/auth.log", "/var/log/secure"}, loginJournalMatches, false)
	if !ok {
		return fmt.Errorf("login: no journal and no /var/log/auth.log or /var/log/secure: %w", ErrNotApplicable)
	}
	from := "journal"
	if !o.Journal {
		from = o.File
	}
	log := env.logger()
	garbage := 0
	err := logfollow.Follow(ctx, followEnv(env), o, func(ctx context.Context, e logfollow.Entry) (bool, error) {
		if !o.Journal {
			var ok bool
			if e, ok = e.WithSyslogHeader(env.Now()); !ok {
				if garbage++; garbage == 1 && strings.TrimSpace(e.Line) != "" {
					log.Warn("login: skipping lines without a syslog header", "file", from, "line", loginClip(e.Line))
				}
				return false, nil
			}
		}
		d, ok := loginParse(e.Ident, e.Message)
		if !ok {
			return false, nil
		}
		d.LoggedAt, d.LogHost, d.PID, d.From = e.Time.UTC(), e.Host, e.PID, from
		if d.LoggedAt.IsZero() {
			d.LoggedAt = env.Now().UTC()
		}
		obs := Observation{Kind: "login", Data: d, ID: events.DeterministicID(env.Host, "login", e.Key)}
		if err := emit(ctx, obs); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	return nil
}

func loginClip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// loginAcceptedRE is OpenSSH's auth log line for a successful
// authentication, auth.c auth_log(): "Accepted %s for %s%.100s from %.200s
// port %d ssh2[: %s]" (method, user, address, port, then the key type and
// fingerprint for publickey).
var loginAcceptedRE = regexp.MustCompile(`^Accepted (\S+) for (\S.*?) from (\S+) port (\d{1,5})(?: (ssh1|ssh2))?(?:: (.+))?$`)

// loginLogindRE is systemd-logind's message when it registers a session
// (src/login/logind-session.c): "New session %s of user %s." and, since
// systemd 256, "New session '%s' of user '%s' with class '%s' and type
// '%s'.".
var loginLogindRE = regexp.MustCompile(`^New session '?([A-Za-z0-9_-]+)'? of user '?([^' ]+?)'?(?: with class '([^']*)' and type '([^']*)')?\.$`)

// loginParse reads a successful login from a message of ident. Anything
// else (failures, disconnects, other programs) is not a login.
func loginParse(ident, msg string) (events.Login, bool) {
	msg = strings.TrimSpace(msg)
	switch ident {
	case "sshd", "sshd-session":
		m := loginAcceptedRE.FindStringSubmatch(msg)
		if m == nil {
			return events.Login{}, false
		}
		port, err := strconv.Atoi(m[4])
		if err != nil || port > 65535 {
			return events.Login{}, false
		}
		d := events.Login{Service: ident, Method: m[1], User: m[2], RemoteIP: m[3], Port: port, Key: m[6]}
		return d, true
	case "systemd-logind":
		m := loginLogindRE.FindStringSubmatch(msg)
		if m == nil {
			return events.Login{}, false
		}
		return events.Login{Service: "logind", Session: m[1], User: m[2], SessionClass: m[3], SessionType: m[4]}, true
	}
	return events.Login{}, false
}
