package tests

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pinkiefleet/pinkie/streams"
)

// TestRepeatedKeyIsAUsageError: a key given twice on the command line is
// a mistake (which host did the operator mean?), never "the last wins":
// exit 2 naming the key, and nothing is published.
func TestRepeatedKeyIsAUsageError(t *testing.T) {
	f := newFleet(t, "koishi", "goliath")
	f.startHub()
	op := []string{"--server", f.natsURL(), "--nkey", f.operator()}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"pub key=value", []string{"pub", "deploy.requested", "host=koishi", "host=goliath"}, `key "host" given twice`},
		{"pub same value twice", []string{"pub", "deploy.requested", "host=koishi", "goal=boot", "goal=boot"}, `key "goal" given twice`},
		{"pub --data", []string{"pub", "deploy.requested", "--data", `{"host": "koishi", "host": "goliath"}`}, `--data: key "host" given twice`},
		{"pub --data nested", []string{"pub", "deploy.requested", "host=koishi", "--data", `{"health_checks": ["a"], "x": {"y": 1, "y": 2}}`}, `--data: key "x.y" given twice`},
		{"silence add", []string{"silence", "add", "host=koishi", "host=goliath", "--for", "1h"}, `key "host" given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runPinkie(t, append(tt.args, op...)...)
			if code != 2 {
				t.Errorf("exit %d, want 2:\n%s", code, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output does not name the key (%q):\n%s", tt.want, out)
			}
		})
	}
	c := f.client()
	for _, s := range []string{streams.DeployStream, streams.AlertLogStream} {
		if n := countSubjects(t, c.JS, s, ">"); n != 0 {
			t.Errorf("%s holds %d messages after only repeated keys", s, n)
		}
	}
}

// TestPermissionRefusalExits2: a key without the right to do something is
// a configuration error, the same exit code and the same explanation
// from every verb. Each action here is refused to a reader key whatever
// else changes in the role table: requesting a deploy, adding or removing
// a silence, publishing the fleet, a test notification.
func TestPermissionRefusalExits2(t *testing.T) {
	deployNeedNix(t)
	f := newFleet(t, "goliath")
	f.startHub()
	flake := newDeployFlake(t, map[string]deployTestHost{"goliath": {}})
	reader := []string{"--server", f.natsURL(), "--nkey", streams.ReaderSeedFile(f.auth), "--timeout", "5s"}
	readerNoTimeout := reader[:4]
	// A silence for the reader to try to remove.
	out, code := runPinkie(t, "silence", "add", "host=goliath", "--for", "1h", "--json", "--server", f.natsURL(), "--nkey", f.operator())
	if code != 0 {
		t.Fatalf("operator silence add: exit %d\n%s", code, out)
	}
	var added struct{ ID string }
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.ID == "" {
		t.Fatalf("silence add --json printed %q (%v)", out, err)
	}
	c := f.client()
	before := map[string]uint64{}
	for _, s := range []string{streams.DeployStream, streams.AlertLogStream, streams.FleetStream} {
		before[s] = countSubjects(t, c.JS, s, ">")
	}
	tests := []struct {
		name string
		args []string
	}{
		{"pub", append([]string{"pub", "deploy.requested", "host=goliath"}, reader...)},
		{"deploy", append([]string{"deploy", "goliath", "--flake", flake.dir}, reader...)},
		{"silence add", append([]string{"silence", "add", "host=goliath", "--for", "1h"}, readerNoTimeout...)},
		{"silence rm", append([]string{"silence", "rm", added.ID}, readerNoTimeout...)},
		{"fleet sync", append([]string{"fleet", "sync", "--flake", flake.dir}, readerNoTimeout...)},
		{"notify test", append([]string{"notify", "test", "ops"}, readerNoTimeout...)},
		{"tail everything", append([]string{"tail", ">", "--count", "1"}, readerNoTimeout...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runPinkie(t, tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2:\n%s", code, out)
			}
			for _, want := range []string{"not permitted for the key " + streams.ReaderSeedFile(f.auth), "the key's role does not allow this", "need an operator key"} {
				if !strings.Contains(out, want) {
					t.Errorf("output does not say %q:\n%s", want, out)
				}
			}
		})
	}
	for s, n := range before {
		if got := countSubjects(t, c.JS, s, ">"); got != n {
			t.Errorf("%s went from %d to %d messages after only refused actions", s, n, got)
		}
	}
}

// TestCLIMistakesExit2: mistakes found along the way that used to exit 0
// (or run on as if nothing was wrong): each is now a usage error naming
// the problem.
func TestCLIMistakesExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"version with a stray word", []string{"version", "foo"}, `unexpected arguments ["foo"]`},
		{"collect --root that does not exist", []string{"collect", "heartbeat", "--root", "/nonexistent/pinkie-root"}, "--root: stat /nonexistent/pinkie-root: no such file or directory"},
		{"collect --root that is a file", []string{"collect", "heartbeat", "--root", "/etc/hostname"}, "--root /etc/hostname: not a directory"},
		{"agent --root that does not exist", []string{"agent", "--name", "x", "--data", t.TempDir(), "--root", "/nonexistent/pinkie-root"}, "--root: stat /nonexistent/pinkie-root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runPinkie(t, tt.args...)
			if code != 2 || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d (want 2), output should contain %q:\n%s", code, tt.want, out)
			}
			if strings.Contains(out, "agent started") {
				t.Errorf("the agent started before its flags were checked:\n%s", out)
			}
		})
	}
}
