package producers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/producers/logfollow"
)

// Fail2ban reports fail2ban's bans, unbans and restored bans with the jail
// and address, and the number of addresses banned per jail after each. It
// follows the journal (fail2ban.service) or /var/log/fail2ban.log, with the
// read position and the banned addresses kept in the agent's state.
type Fail2ban struct {
	opts LogSourceOptions
}

func fail2banSpec() Spec {
	return Spec{Name: "fail2ban", Doc: "fail2ban bans, unbans and restored bans, with bans per jail", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) { return NewFail2ban(raw) }}
}

// NewFail2ban builds the fail2ban producer from its options
// ({"file": PATH} or {"journal": true}, "poll", "follow").
func NewFail2ban(raw json.RawMessage) (*Fail2ban, error) {
	o, err := decodeLogSourceOptions(raw)
	if err != nil {
		return nil, err
	}
	return &Fail2ban{opts: o}, nil
}

func (f *Fail2ban) Name() string { return "fail2ban" }

const fail2banBannedKey = "banned"

// fail2banTally is the set of banned addresses per jail, kept from the log
// (and seeded from fail2ban-client when the producer starts afresh). Sets,
// not counters: a line read twice changes nothing.
type fail2banTally map[string]map[string]bool

func (t fail2banTally) apply(action, jail, ip string) {
	if t[jail] == nil {
		t[jail] = map[string]bool{}
	}
	if action == "unban" {
		delete(t[jail], ip)
	} else {
		t[jail][ip] = true
	}
}

func (t fail2banTally) counts() map[string]int {
	c := make(map[string]int, len(t))
	for jail, ips := range t {
		c[jail] = len(ips)
	}
	return c
}

func (t fail2banTally) marshal() []byte {
	m := map[string][]string{}
	for jail, ips := range t {
		l := make([]string, 0, len(ips))
		for ip := range ips {
			l = append(l, ip)
		}
		sort.Strings(l)
		m[jail] = l
	}
	b, _ := json.Marshal(m)
	return b
}

func fail2banUnmarshalTally(b []byte) (fail2banTally, error) {
	var m map[string][]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	t := fail2banTally{}
	for jail, ips := range m {
		t[jail] = map[string]bool{}
		for _, ip := range ips {
			t.apply("ban", jail, ip)
		}
	}
	return t, nil
}

// Stream follows the log and emits a "fail2ban" observation per action.
func (f *Fail2ban) Stream(ctx context.Context, env Env, emit func(context.Context, Observation) error) error {
	if f.opts.File == "" && !f.opts.Journal {
		if _, err := fs.Stat(env.Root, "etc/fail2ban"); err != nil {
			if _, err := fs.Stat(env.Root, "var/log/fail2ban.log"); err != nil {
				return fmt.Errorf("fail2ban: not installed (no /etc/fail2ban): %w", ErrNotApplicable)
			}
		}
	}
	// fail2ban writes to /var/log/fail2ban.log by default (Debian, NixOS
	// with logtarget set) even on journald hosts: prefer that file.
	o, ok := f.opts.source(env, []string{"/var/log/fail2ban.log"}, []string{"_SYSTEMD_UNIT=fail2ban.service"}, true)
	if !ok {
		return fmt.Errorf("fail2ban: no /var/log/fail2ban.log and no journal: %w", ErrNotApplicable)
	}
	from := "journal"
	if !o.Journal {
		from = o.File
	}
	log := env.logger()
	tally := fail2banTally{}
	fresh := true
	if env.State != nil {
		b, ok, err := env.State.Get(fail2banBannedKey)
		if err != nil {
			return fmt.Errorf("fail2ban: read saved bans: %w", err)
		}
		if ok {
			if t, err := fail2banUnmarshalTally(b); err == nil {
				tally, fresh = t, false
			} else {
				log.Warn("fail2ban: saved bans unreadable; starting from fail2ban-client or the log", "err", err)
			}
		}
	}
	if fresh && env.Run != nil {
		// Starting afresh: fail2ban-client knows the bans now; the log
		// replayed from its start then converges on the same sets.
		if t, err := fail2banClientTally(ctx, env.Run); err == nil {
			tally = t
		} else {
			log.Debug("fail2ban: no ban list from fail2ban-client; counting from the log", "err", err)
		}
	}
	err := logfollow.Follow(ctx, followEnv(env), o, func(ctx context.Context, e logfollow.Entry) (bool, error) {
		text, t := e.Message, e.Time
		if !o.Journal {
			text, t = fail2banLineTime(e.Line, env.Now())
		}
		action, jail, ip, ok := fail2banParse(text)
		if !ok {
			return false, nil
		}
		if t.IsZero() {
			t = env.Now()
		}
		tally.apply(action, jail, ip)
		d := events.Fail2ban{Action: action, Jail: jail, IP: ip, LoggedAt: t.UTC(), Banned: tally.counts(), From: from}
		obs := Observation{Kind: "fail2ban", Data: d, ID: events.DeterministicID(env.Host, "fail2ban", e.Key)}
		if err := emit(ctx, obs); err != nil {
			return false, err
		}
		if env.State != nil {
			if err := env.State.Put(fail2banBannedKey, tally.marshal()); err != nil {
				return false, fmt.Errorf("save bans: %w", err)
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("fail2ban: %w", err)
	}
	return nil
}

// fail2banActionRE finds fail2ban's action messages (fail2ban/server/
// actions.py: "[%s] Ban %s", "[%s] Unban %s", "[%s] Restore Ban %s"),
// whatever prefix the log target put before them.
var fail2banActionRE = regexp.MustCompile(`(?:^|\s)\[([^\]\s]+)\]\s+(Restore Ban|Unban|Ban)\s+(\S+)\s*$`)

// fail2banParse reads an action from a log message or line.
func fail2banParse(text string) (action, jail, ip string, ok bool) {
	m := fail2banActionRE.FindStringSubmatch(text)
	if m == nil {
		return "", "", "", false
	}
	switch m[2] {
	case "Ban":
		action = "ban"
	case "Unban":
		action = "unban"
	default:
		action = "restore_ban"
	}
	return action, m[1], m[3], true
}

// fail2banLineTime finds the time of a fail2ban.log line: fail2ban's own
// "2006-02-13 15:52:30,388 fail2ban.actions [123]: NOTICE ..." format or a
// syslog header. It returns the text to search for an action and the time
// (zero when the line has none, as the journal's short output).
func fail2banLineTime(line string, now time.Time) (string, time.Time) {
	if len(line) >= 23 && line[4] == '-' && line[10] == ' ' && line[19] == ',' {
		if t, err := time.ParseInLocation("2006-01-02 15:04:05,000", line[:23], now.Location()); err == nil {
			return line[23:], t
		}
	}
	if e, ok := logfollow.ParseSyslog(line, now); ok {
		return e.Message, e.Time
	}
	return line, time.Time{}
}

// fail2banClientTally asks fail2ban-client for the jails and their banned
// addresses ("fail2ban-client status" and "status <jail>").
func fail2banClientTally(ctx context.Context, run Runner) (fail2banTally, error) {
	out, code, err := run.Run(ctx, "fail2ban-client", "status")
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("fail2ban-client status exited %d", code)
	}
	jails := fail2banClientField(out, "Jail list:")
	t := fail2banTally{}
	for _, jail := range strings.Split(jails, ",") {
		jail = strings.TrimSpace(jail)
		if jail == "" {
			continue
		}
		out, code, err := run.Run(ctx, "fail2ban-client", "status", jail)
		if err != nil {
			return nil, err
		}
		if code != 0 {
			return nil, fmt.Errorf("fail2ban-client status %s exited %d", jail, code)
		}
		t[jail] = map[string]bool{}
		for _, ip := range strings.Fields(fail2banClientField(out, "Banned IP list:")) {
			t.apply("ban", jail, ip)
		}
	}
	return t, nil
}

// fail2banClientField finds "<label>\t<value>" in fail2ban-client's
// status tree ("`- Jail list:\tsshd, recidive").
func fail2banClientField(out []byte, label string) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if _, v, ok := strings.Cut(sc.Text(), label); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
