package producers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/producers/logfollow"
)

var loginTestNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// loginParseLine is what the file follower does to one line.
func loginParseLine(line string, now time.Time) (events.Login, bool) {
	e, ok := logfollow.ParseSyslog(line, now)
	if !ok {
		return events.Login{}, false
	}
	d, ok := loginParse(e.Ident, e.Message)
	if !ok {
		return events.Login{}, false
	}
	d.LoggedAt, d.LogHost, d.PID = e.Time.UTC(), e.Host, e.PID
	return d, true
}

// TestLoginFindsEveryAcceptedLine reads fail2ban's annotated sshd test log:
// every "Accepted" line (counted independently with grep) is a login, and
// nothing else is.
func TestLoginFindsEveryAcceptedLine(t *testing.T) {
	path := execSharedFixture(t, "logs/fail2ban-tests-sshd.log")
	want := -1
	if _, err := exec.LookPath("grep"); err == nil {
		out, err := exec.Command("grep", "-c", "-E", "sshd(-session)?\\[[0-9]+\\]: Accepted ", path).Output()
		if err != nil {
			t.Fatalf("grep: %v", err)
		}
		want, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want < 0 { // no grep: count in Go, differently from the parser
		want = strings.Count(string(b), "]: Accepted ")
	}
	var got []events.Login
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if d, ok := loginParseLine(sc.Text(), loginTestNow); ok {
			got = append(got, d)
		}
	}
	if len(got) != want || want == 0 {
		t.Fatalf("found %d logins, grep counts %d Accepted lines", len(got), want)
	}
	wantSome := []events.Login{
		{User: "git", Service: "sshd", Method: "publickey", RemoteIP: "192.0.2.1", Port: 57904, Key: "DSA 36:48:xx:xx:xx:xx:xx:xx:xx:xx:xx:xx:xx:xx:xx:xx", PID: 32307,
			LoggedAt: time.Date(2026, 11, 28, 9, 16, 3, 0, time.UTC), LogHost: "srv"},
		{User: "rda", Service: "sshd", Method: "password", RemoteIP: "192.0.2.113", Port: 52100, PID: 1556,
			LoggedAt: time.Date(2026, 3, 7, 18, 53, 20, 0, time.UTC), LogHost: "bar"},
		{User: "known", Service: "sshd", Method: "password", RemoteIP: "192.0.2.114", Port: 52100, PID: 1558,
			LoggedAt: time.Date(2026, 3, 7, 18, 53, 24, 0, time.UTC), LogHost: "bar"},
		{User: "known", Service: "sshd", Method: "password", RemoteIP: "192.0.2.116", Port: 52100, PID: 1559,
			LoggedAt: time.Date(2026, 3, 7, 18, 53, 34, 0, time.UTC), LogHost: "bar"},
	}
	if diff := cmp.Diff(wantSome, got); diff != "" {
		t.Errorf("logins (-want +got):\n%s", diff)
	}
}

func TestLoginParse(t *testing.T) {
	tests := []struct {
		name string
		line string
		want *events.Login
	}{
		{name: "sshd-session publickey (OpenSSH 9.8+)",
			line: "Nov 27 01:58:03 goliath sshd-session[48211]: Accepted publickey for alice from 2001:db8::44 port 51234 ssh2: ED25519 SHA256:Jm0y2b4cQ0c3oS5y7H8rX9lq3d2aTzV7uWn1fK4pLhE",
			want: &events.Login{User: "alice", Service: "sshd-session", Method: "publickey", RemoteIP: "2001:db8::44", Port: 51234, Key: "ED25519 SHA256:Jm0y2b4cQ0c3oS5y7H8rX9lq3d2aTzV7uWn1fK4pLhE", PID: 48211, LoggedAt: time.Date(2026, 11, 27, 1, 58, 3, 0, time.UTC), LogHost: "goliath"}},
		{name: "keyboard-interactive/pam, RFC 3339 timestamp",
			line: "2026-11-27T01:58:03.123456+01:00 goliath sshd[7]: Accepted keyboard-interactive/pam for bob from 192.0.2.9 port 22 ssh2",
			want: &events.Login{User: "bob", Service: "sshd", Method: "keyboard-interactive/pam", RemoteIP: "192.0.2.9", Port: 22, PID: 7, LoggedAt: time.Date(2026, 11, 27, 0, 58, 3, 123456000, time.UTC), LogHost: "goliath"}},
		{name: "logind, systemd < 256",
			line: "Nov 27 08:00:01 goliath systemd-logind[812]: New session 3 of user alice.",
			want: &events.Login{User: "alice", Service: "logind", Session: "3", PID: 812, LoggedAt: time.Date(2026, 11, 27, 8, 0, 1, 0, time.UTC), LogHost: "goliath"}},
		{name: "logind, systemd 256+ with class and type",
			line: "Nov 27 08:00:01 goliath systemd-logind[812]: New session 'c2' of user 'gdm' with class 'greeter' and type 'wayland'.",
			want: &events.Login{User: "gdm", Service: "logind", Session: "c2", SessionClass: "greeter", SessionType: "wayland", PID: 812, LoggedAt: time.Date(2026, 11, 27, 8, 0, 1, 0, time.UTC), LogHost: "goliath"}},
		{name: "failed password is no login", line: "Nov 27 01:58:03 goliath sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2"},
		{name: "injected text in a user name", line: "Nov 27 01:58:03 goliath sshd[1]: Invalid user Accepted password for root from 1.2.3.4 port 22 from 192.0.2.1 port 4"},
		{name: "another program's Accepted", line: "Nov 27 01:58:03 goliath cron[1]: Accepted password for root from 1.2.3.4 port 22 ssh2"},
		{name: "logind session removal", line: "Nov 27 08:10:01 goliath systemd-logind[812]: Removed session 3."},
		{name: "port out of range", line: "Nov 27 01:58:03 goliath sshd[1]: Accepted password for root from 192.0.2.1 port 99999 ssh2"},
		{name: "truncated", line: "Nov 27 01:58:03 goliath sshd[1]: Accepted password for root from 192.0"},
		{name: "truncated header", line: "Nov 27 01:5"},
		{name: "garbage", line: "\x00\xff<<>>[[ ]]: Accepted"},
		{name: "empty", line: ""},
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := loginParseLine(tt.line, now)
			if tt.want == nil {
				if ok {
					t.Fatalf("parsed a login from %q: %+v", tt.line, got)
				}
				return
			}
			if !ok {
				t.Fatalf("no login in %q", tt.line)
			}
			if diff := cmp.Diff(*tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// loginCollect streams a log file to its end (follow false) and returns
// what was emitted. failAfter > 0 makes emit fail after that many.
func loginCollect(t *testing.T, env Env, file string, failAfter int) ([]Observation, error) {
	t.Helper()
	l, err := NewLogin(json.RawMessage(fmt.Sprintf(`{"file": %q, "follow": false}`, file)))
	if err != nil {
		t.Fatal(err)
	}
	var got []Observation
	err = l.Stream(context.Background(), env, func(_ context.Context, o Observation) error {
		if failAfter > 0 && len(got) == failAfter {
			return errors.New("outbox full")
		}
		got = append(got, o)
		return nil
	})
	return got, err
}

// TestLoginRestartNeitherRepeatsNorSkips stops the producer in the middle
// of a log (emit fails, as when the OUTBOX refuses) and starts it again
// with the same state: every login arrives exactly once.
func TestLoginRestartNeitherRepeatsNorSkips(t *testing.T) {
	src := execSharedFixture(t, "logs/fail2ban-tests-sshd.log")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "var/log"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Extra logins so that several restarts happen in the middle.
	extra := "Nov 29 10:00:00 goliath sshd-session[9]: Accepted publickey for carol from 192.0.2.50 port 40000 ssh2: ED25519 SHA256:abc\n" +
		"Nov 29 10:00:05 goliath systemd-logind[812]: New session 7 of user carol.\n"
	if err := os.WriteFile(filepath.Join(dir, "var/log/auth.log"), append(b, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	env := Env{Host: "goliath", Root: os.DirFS(dir), Now: func() time.Time { return loginTestNow }, State: &execMemState{}}
	all, err := loginCollect(t, Env{Host: "goliath", Root: env.Root, Now: env.Now, State: &execMemState{}}, "/var/log/auth.log", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 {
		t.Fatalf("a full read found %d logins, want 6", len(all))
	}
	var got []Observation
	for round := 0; round < 10 && len(got) < len(all); round++ {
		part, err := loginCollect(t, env, "/var/log/auth.log", 1)
		if err != nil && !strings.Contains(err.Error(), "outbox full") {
			t.Fatal(err)
		}
		got = append(got, part...)
	}
	if diff := cmp.Diff(all, got); diff != "" {
		t.Errorf("after restarts (-once +restarted):\n%s", diff)
	}
	// Nothing new: a further start emits nothing.
	again, err := loginCollect(t, env, "/var/log/auth.log", 0)
	if err != nil || len(again) != 0 {
		t.Errorf("after the end: %d more logins, err %v", len(again), err)
	}
	for i, o := range all {
		if o.ID == "" || (i > 0 && o.ID == all[i-1].ID) {
			t.Errorf("login %d has no distinct deterministic id: %q", i, o.ID)
		}
	}
}

func TestLoginJournal(t *testing.T) {
	entries := []string{
		`{"__CURSOR":"s=1;i=1","__REALTIME_TIMESTAMP":"1795752000000000","_HOSTNAME":"goliath","SYSLOG_IDENTIFIER":"sshd-session","_PID":"100","MESSAGE":"Accepted publickey for alice from 192.0.2.44 port 51234 ssh2: ED25519 SHA256:x"}`,
		`{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1795752001000000","_HOSTNAME":"goliath","SYSLOG_IDENTIFIER":"sshd-session","_PID":"100","MESSAGE":"Received disconnect from 192.0.2.44 port 51234:11: bye"}`,
		`not json at all`,
		`{"__CURSOR":"s=1;i=3","__REALTIME_TIMESTAMP":"1795752002000000","_HOSTNAME":"goliath","SYSLOG_IDENTIFIER":"systemd-logind","_PID":"812","MESSAGE":[78,101,119,32,115,101,115,115,105,111,110,32,57,32,111,102,32,117,115,101,114,32,98,111,98,46]}`,
	}
	run := &execFakeRunner{stream: func(args []string) string {
		for _, a := range args {
			if a == "--after-cursor=s=1;i=3" {
				return ""
			}
		}
		return strings.Join(entries, "\n") + "\n"
	}}
	state := &execMemState{}
	env := Env{Host: "goliath", Root: os.DirFS(t.TempDir()), Run: run, Now: func() time.Time { return loginTestNow }, State: state}
	l, err := NewLogin(json.RawMessage(`{"journal": true}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []events.Login
	emit := func(_ context.Context, o Observation) error { got = append(got, o.Data.(events.Login)); return nil }
	if err := l.Stream(context.Background(), env, emit); err != nil {
		t.Fatal(err)
	}
	want := []events.Login{
		{User: "alice", Service: "sshd-session", Method: "publickey", RemoteIP: "192.0.2.44", Port: 51234, Key: "ED25519 SHA256:x", PID: 100, LoggedAt: time.UnixMicro(1795752000000000).UTC(), LogHost: "goliath", From: "journal"},
		{User: "bob", Service: "logind", Session: "9", PID: 812, LoggedAt: time.UnixMicro(1795752002000000).UTC(), LogHost: "goliath", From: "journal"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if c, _, _ := state.Get(logfollow.CursorKey); string(c) != "s=1;i=3" {
		t.Errorf("saved cursor %q, want the last entry's", c)
	}
	got = nil
	if err := l.Stream(context.Background(), env, emit); err != nil || len(got) != 0 {
		t.Errorf("restart from the cursor emitted %d, err %v", len(got), err)
	}
	calls := run.Calls()
	if !strings.Contains(calls[0], "--lines=0") || !strings.Contains(calls[1], "--after-cursor=s=1;i=3") {
		t.Errorf("journalctl calls: %q", calls)
	}
}

func TestLoginBadInput(t *testing.T) {
	now := func() time.Time { return loginTestNow }
	t.Run("missing file", func(t *testing.T) {
		_, err := loginCollect(t, Env{Host: "h", Root: os.DirFS(t.TempDir()), Now: now}, "/var/log/auth.log", 0)
		if err == nil || !strings.Contains(err.Error(), "var/log/auth.log") {
			t.Errorf("err = %v, want one naming the file", err)
		}
	})
	t.Run("permission denied", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads any file")
		}
		dir := t.TempDir()
		p := filepath.Join(dir, "auth.log")
		if err := os.WriteFile(p, []byte("x\n"), 0o000); err != nil {
			t.Fatal(err)
		}
		_, err := loginCollect(t, Env{Host: "h", Root: os.DirFS(dir), Now: now}, "/auth.log", 0)
		if err == nil {
			t.Error("no error for an unreadable log")
		}
	})
	t.Run("state store fails", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "auth.log"), []byte("Nov 27 01:58:03 g sshd[1]: Accepted password for a from 192.0.2.1 port 2 ssh2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := loginCollect(t, Env{Host: "h", Root: os.DirFS(dir), Now: now, State: &execMemState{err: errors.New("disk full")}}, "/auth.log", 0)
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("err = %v, want the state error", err)
		}
	})
	t.Run("garbage, binary and a truncated last line", func(t *testing.T) {
		dir := t.TempDir()
		content := "\x00\x01\x02garbage\n" + strings.Repeat("x", 200<<10) + "\n" +
			"Nov 27 01:58:03 g sshd[1]: Accepted password for a from 192.0.2.1 port 2 ssh2\n" +
			"Nov 27 01:58:04 g sshd[1]: Accepted password for b from 192.0.2.1 po"
		if err := os.WriteFile(filepath.Join(dir, "auth.log"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := loginCollect(t, Env{Host: "h", Root: os.DirFS(dir), Now: now, State: &execMemState{}}, "/auth.log", 0)
		if err != nil || len(got) != 1 || got[0].Data.(events.Login).User != "a" {
			t.Errorf("got %+v, err %v; want only user a", got, err)
		}
	})
	t.Run("unknown option", func(t *testing.T) {
		if _, err := NewLogin(json.RawMessage(`{"files": "x"}`)); err == nil || !strings.Contains(err.Error(), "files") {
			t.Errorf("err = %v", err)
		}
	})
}

func FuzzLoginParseLine(f *testing.F) {
	for _, s := range []string{
		"Mar  7 18:53:20 bar sshd[1556]: Accepted password for rda from 192.0.2.113 port 52100 ssh2",
		"Nov 28 09:16:03 srv sshd[32307]: Accepted publickey for git from 192.0.2.1 port 57904 ssh2: DSA 36:48:xx",
		"2015-04-16T18:02:50.321974+00:00 host sshd[2716]: Accepted password for x from 192.0.2.112 port 1 ssh2",
		"<38>1 2019-07-08T17:40:16.954167-04:00 hostname.example.com sshd 57915 - [a b=\"c\"] Accepted none for u from h port 9",
		"Nov 27 08:00:01 goliath systemd-logind[812]: New session 'c2' of user 'gdm' with class 'greeter' and type 'wayland'.",
		"Mar  3 00:17:22 [sshd]: User root from 211.188.220.49 not allowed",
		"<", "<1>", "Jan  1 00:00:00", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		d, ok := loginParseLine(line, loginTestNow)
		if !ok {
			return
		}
		if d.User == "" || (d.Service != "logind" && (d.Port < 0 || d.Port > 65535 || d.Method == "")) {
			t.Errorf("implausible login from %q: %+v", line, d)
		}
	})
}

func TestLoginSourceChoice(t *testing.T) {
	dir := t.TempDir()
	env := Env{Root: os.DirFS(dir), Run: &execFakeRunner{}, Now: time.Now}
	l, _ := NewLogin(nil)
	if err := l.Stream(context.Background(), env, nil); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no log and no journal: err = %v, want ErrNotApplicable", err)
	}
	f, _ := NewFail2ban(nil)
	if err := f.Stream(context.Background(), env, nil); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no fail2ban: err = %v, want ErrNotApplicable", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "var/log/journal/abc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "var/log/fail2ban.log"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o, ok := logfollow.Source(followEnv(env), "", false, "", nil, []string{"/var/log/auth.log"}, nil, false)
	if !ok || !o.Journal {
		t.Errorf("login with a journal: %+v %v", o, ok)
	}
	o, ok = logfollow.Source(followEnv(env), "", false, "", nil, []string{"/var/log/fail2ban.log"}, nil, true)
	if !ok || o.Journal || o.File != "/var/log/fail2ban.log" {
		t.Errorf("fail2ban with its log file: %+v %v", o, ok)
	}
}
