package producers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

func fail2banCollect(t *testing.T, env Env, file string) []events.Fail2ban {
	t.Helper()
	f, err := NewFail2ban(json.RawMessage(fmt.Sprintf(`{"file": %q, "follow": false}`, file)))
	if err != nil {
		t.Fatal(err)
	}
	var got []events.Fail2ban
	err = f.Stream(context.Background(), env, func(_ context.Context, o Observation) error {
		if o.Kind != "fail2ban" || o.ID == "" {
			t.Errorf("observation %+v", o)
		}
		got = append(got, o.Data.(events.Fail2ban))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestFail2banRecidiveLog reads fail2ban's test log of its own lines in
// file, syslog and journal styles. Every Ban, Unban and Restore Ban is
// reported (the recidive jail's own bans too: that filter skips them,
// pinkie does not).
func TestFail2banRecidiveLog(t *testing.T) {
	path := execSharedFixture(t, "logs/fail2ban-tests-recidive.log")
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	env := Env{Host: "h", Root: os.DirFS(filepath.Dir(path)), Now: func() time.Time { return now }}
	got := fail2banCollect(t, env, "/"+filepath.Base(path))
	at := func(y int, mo time.Month, d, hh, mm, ss, ms int) time.Time {
		return time.Date(y, mo, d, hh, mm, ss, ms*1e6, time.UTC)
	}
	want := []events.Fail2ban{
		{Action: "ban", Jail: "sendmail", IP: "1.2.3.4", LoggedAt: at(2006, 2, 13, 15, 52, 30, 388), Banned: map[string]int{"sendmail": 1}},
		{Action: "ban", Jail: "sendmail", IP: "1.2.3.4", LoggedAt: at(2006, 2, 13, 15, 52, 30, 388), Banned: map[string]int{"sendmail": 1}},
		{Action: "unban", Jail: "sendmail", IP: "1.2.3.4", LoggedAt: at(2006, 2, 13, 16, 7, 31, 183), Banned: map[string]int{"sendmail": 0}},
		{Action: "ban", Jail: "recidive", IP: "1.2.3.4", LoggedAt: at(2006, 2, 13, 15, 52, 30, 388), Banned: map[string]int{"sendmail": 0, "recidive": 1}},
		{Action: "ban", Jail: "jail", IP: "10.0.0.7", LoggedAt: at(2026, 9, 16, 0, 44, 55, 0), Banned: map[string]int{"sendmail": 0, "recidive": 1, "jail": 1}},
		{Action: "ban", Jail: "sendmail", IP: "1.2.3.4", LoggedAt: at(2006, 2, 13, 15, 52, 30, 388), Banned: map[string]int{"sendmail": 1, "recidive": 1, "jail": 1}},
		{Action: "ban", Jail: "postfix-auth", IP: "192.0.2.1", LoggedAt: at(2026, 1, 16, 17, 11, 25, 0), Banned: map[string]int{"sendmail": 1, "recidive": 1, "jail": 1, "postfix-auth": 1}},
		{Action: "ban", Jail: "postfix-auth", IP: "192.0.2.2", LoggedAt: at(2026, 3, 5, 8, 41, 28, 0), Banned: map[string]int{"sendmail": 1, "recidive": 1, "jail": 1, "postfix-auth": 2}},
		{Action: "ban", Jail: "postfix-sasl", IP: "192.0.2.3", LoggedAt: now, Banned: map[string]int{"sendmail": 1, "recidive": 1, "jail": 1, "postfix-auth": 2, "postfix-sasl": 1}},
	}
	for i := range want {
		want[i].From = "/" + filepath.Base(path)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestFail2banParse(t *testing.T) {
	tests := []struct {
		line             string
		action, jail, ip string
	}{
		{"2026-11-27 01:57:41,123 fail2ban.actions        [812]: NOTICE  [sshd] Restore Ban 203.0.113.77", "restore_ban", "sshd", "203.0.113.77"},
		{"2026-11-27 01:57:41,123 fail2ban.actions        [812]: NOTICE  [sshd] Ban 2001:db8::7", "ban", "sshd", "2001:db8::7"},
		{"2026-11-27 01:57:41,123 fail2ban.actions        [812]: NOTICE  [sshd] Unban 203.0.113.77", "unban", "sshd", "203.0.113.77"},
		{"2026-11-27 01:57:41,123 fail2ban.filter         [812]: INFO    [sshd] Found 203.0.113.77 - 2026-11-27 01:57:40", "", "", ""},
		{"2026-11-27 01:57:41,123 fail2ban.actions        [812]: NOTICE  [sshd] 203.0.113.77 already banned", "", "", ""},
		{"2026-11-27 01:57:41,123 fail2ban.actions        [812]: NOTICE  [sshd] Ban", "", "", ""},
		{"garbage [x] Bann 1.2.3.4", "", "", ""},
		{"", "", "", ""},
	}
	for _, tt := range tests {
		text, _ := fail2banLineTime(tt.line, time.Now())
		a, j, ip, ok := fail2banParse(text)
		if ok != (tt.action != "") || a != tt.action || j != tt.jail || ip != tt.ip {
			t.Errorf("%q: got (%q %q %q %v), want (%q %q %q)", tt.line, a, j, ip, ok, tt.action, tt.jail, tt.ip)
		}
	}
}

// TestFail2banTallySeedAndPersist seeds the bans from fail2ban-client on a
// fresh start, then keeps them in the state across a restart.
func TestFail2banTallySeedAndPersist(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "fail2ban.log")
	if err := os.WriteFile(logf, []byte("2026-11-27 01:57:41,123 fail2ban.actions [1]: NOTICE [sshd] Ban 192.0.2.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := &execFakeRunner{answers: map[string]execFakeAnswer{
		"fail2ban-client status":          {out: "Status\n|- Number of jail:\t2\n`- Jail list:\tsshd, recidive\n"},
		"fail2ban-client status sshd":     {out: "Status for the jail: sshd\n|- Filter\n|  |- Currently failed:\t0\n`- Actions\n   |- Currently banned:\t2\n   |- Total banned:\t2\n   `- Banned IP list:\t192.0.2.1 192.0.2.9\n"},
		"fail2ban-client status recidive": {out: "Status for the jail: recidive\n`- Actions\n   |- Currently banned:\t0\n   `- Banned IP list:\t\n"},
	}}
	state := &execMemState{}
	env := Env{Host: "h", Root: os.DirFS(dir), Run: run, Now: time.Now, State: state}
	got := fail2banCollect(t, env, "/fail2ban.log")
	if len(got) != 1 || !cmp.Equal(got[0].Banned, map[string]int{"sshd": 2, "recidive": 0}) {
		t.Fatalf("seeded tally: %+v", got)
	}
	f, err := os.OpenFile(logf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "2026-11-27 02:07:41,123 fail2ban.actions [1]: NOTICE [sshd] Unban 192.0.2.1")
	f.Close()
	run.answers = nil // fail2ban-client gone: the saved tally carries on
	got = fail2banCollect(t, env, "/fail2ban.log")
	if len(got) != 1 || got[0].Action != "unban" || !cmp.Equal(got[0].Banned, map[string]int{"sshd": 1, "recidive": 0}) {
		t.Fatalf("after restart: %+v", got)
	}
	if !strings.Contains(string(state.m[fail2banBannedKey]), "192.0.2.9") {
		t.Errorf("saved bans %s", state.m[fail2banBannedKey])
	}
}

func FuzzFail2banParseLine(f *testing.F) {
	for _, s := range []string{
		"2006-02-13 15:52:30,388 fail2ban.actions: NOTICE [sendmail] Ban 1.2.3.4",
		"Mar 05 08:41:28 test.org fail2ban-server[11524]: fail2ban.actions        [11524]: NOTICE  [postfix-auth] Ban 192.0.2.2",
		"host fail2ban[15699]: [postfix-sasl] Ban 192.0.2.3",
		"2026-11-27 01:57:41,123 fail2ban.actions [1]: NOTICE [sshd] Restore Ban 2001:db8::1",
		"[] Ban x", "[a] Unban", "2006-02-13 15:52:30,3", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		text, _ := fail2banLineTime(line, time.Unix(0, 0).UTC())
		a, j, ip, ok := fail2banParse(text)
		if ok && (j == "" || ip == "" || strings.ContainsAny(j+ip, " \t]") || (a != "ban" && a != "unban" && a != "restore_ban")) {
			t.Errorf("implausible action from %q: %q %q %q", line, a, j, ip)
		}
	})
}
