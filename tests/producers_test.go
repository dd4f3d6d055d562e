package tests

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
	"github.com/pinkiefleet/pinkie/streams"
)

// sharedFixture returns a file under ../shared/fixtures (beside the main
// checkout, one level further up from a worktree), or skips.
func sharedFixture(t *testing.T, rel string) string {
	t.Helper()
	here, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for dir := here; dir != "/"; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, "shared", "fixtures", rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("shared fixture %s not available (../shared is provided beside the repo on pinkie's machines)", rel)
	return ""
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o644)
		}
		return nil // sockets and devices are not needed
	})
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixtureHost builds a host's root filesystem with something for every
// producer to see: the hand-made NixOS root (profile, network, systemd,
// guests), a btrfs sysfs tree, and, from ../shared/fixtures, a real
// /proc/mdstat, `zpool status` and `smartctl --json` outputs (recorded
// command outputs are answered by --replay-commands). It returns the
// root and the agent config enabling every producer on it.
func fixtureHost(t *testing.T) (root, config string) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "root")
	copyTree(t, filepath.Join("..", "producers", "testdata", "root-nixos"), root)
	copyTree(t, filepath.Join("..", "producers", "testdata", "btrfs", "new", "sys"), filepath.Join(root, "sys"))
	cmds := filepath.Join(root, "_commands")
	var lines map[string]string
	b, err := os.ReadFile(filepath.Join(cmds, "commands.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lines); err != nil {
		t.Fatal(err)
	}
	record := func(line, name, out string) {
		lines[line] = name
		writeFile(t, filepath.Join(cmds, name+".out"), out)
	}
	mdstat, err := os.ReadFile(sharedFixture(t, "mdstat/procfs-mdstat.txt"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "proc", "mdstat"), string(mdstat))
	zstatus, err := os.ReadFile(sharedFixture(t, "zpool/input-04-scrub-progress.txt"))
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(zstatus), "\n") // the first line is the fixture suite's harness
	record("zpool status -p", "zpool-status", body)
	record("zpool list -Hp -o name,size,alloc,free,frag,cap,health", "zpool-list", "neptune\t3985729650688\t1234567890123\t2751161760565\t3\t30\tONLINE\n")
	smart, err := os.ReadFile(sharedFixture(t, "smart/smart-fail2.json"))
	if err != nil {
		t.Fatal(err)
	}
	record("smartctl --json=c -a -n standby -d sat /dev/sdc", "smartctl-sdc", string(smart))
	b, _ = json.MarshalIndent(lines, "", "  ")
	writeFile(t, filepath.Join(cmds, "commands.json"), string(b))
	// One real mount: fs reads the mount table from the root and asks the
	// kernel (statfs) about the mount point, which is this machine's "/".
	writeFile(t, filepath.Join(root, "proc", "self", "mountinfo"), "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n")
	// Logs for the streaming producers.
	writeFile(t, filepath.Join(root, "var", "log", "auth.log"),
		"Nov 27 01:02:03 goliath sshd[4242]: Accepted publickey for alice from 192.0.2.10 port 50022 ssh2: ED25519 SHA256:abc\n"+
			"Nov 27 01:02:04 goliath sshd[4243]: Failed password for bob from 192.0.2.11 port 50023 ssh2\n")
	writeFile(t, filepath.Join(root, "var", "log", "fail2ban.log"),
		"2026-11-27 01:02:05,123 fail2ban.actions        [1234]: NOTICE  [sshd] Ban 192.0.2.66\n")
	if err := os.MkdirAll(filepath.Join(root, "etc", "fail2ban"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "srv", "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "srv", "data", "blob"), strings.Repeat("x", 4096))
	config = filepath.Join(t.TempDir(), "agent.json")
	writeFile(t, config, `{"producers": {
  "login": {"file": "/var/log/auth.log", "from_start": true},
  "fail2ban": {"file": "/var/log/fail2ban.log", "from_start": true},
  "smart": {"smartctl": "always", "devices": [], "smartctl_devices": [{"device": "/dev/sdc", "type": "sat"}]},
  "path": {"paths": ["/srv/data"]},
  "postgres": {"enabled": false}
}}`)
	return root, config
}

// wantKinds are the kinds the fixture host must produce.
var wantKinds = []string{"btrfs", "fail2ban", "fs", "guest", "heartbeat", "login", "mdraid", "network", "path", "profile", "smart", "systemd", "zfs"}

func TestCollectFixtureHost(t *testing.T) {
	root, config := fixtureHost(t)
	cmd := exec.Command(pinkieBin, "collect", "--root", root, "--replay-commands", filepath.Join(root, "_commands"),
		"--config", config, "--name", "goliath", "--json")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !(errors_As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("collect: %v\n%s", err, out)
	}
	if ee == nil || ee.ExitCode() != 1 {
		t.Errorf("collect exit: want 1 (the fixtures hold failing drives and arrays), got %v", err)
	}
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		e, k, err := set.Validate([]byte(line))
		if err != nil {
			t.Fatalf("collect printed an invalid event: %v\n%s", err, line)
		}
		if e.Source() != "pinkie://goliath/"+sourceProducer(e.Source()) {
			t.Errorf("source %s", e.Source())
		}
		kinds[k.Name]++
	}
	for _, k := range wantKinds {
		if kinds[k] == 0 {
			t.Errorf("collect produced no %s event (got %v)", k, kinds)
		}
	}
}

func sourceProducer(src string) string {
	_, p, _ := events.ParseSource(src)
	return p
}

// TestAgentFixtureHostEndToEnd: an agent started on a fixture root
// publishes every kind, and the hub's HOSTS stream holds them, valid.
func TestAgentFixtureHostEndToEnd(t *testing.T) {
	root, config := fixtureHost(t)
	f := newFleet(t, "goliath")
	f.startHub()
	f.startAgent("goliath", t.TempDir(), "", "--root", root, "--replay-commands", filepath.Join(root, "_commands"), "--config", config)
	c := f.client()
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var missing []string
	for {
		got := map[string]bool{}
		for _, se := range readStream(t, c.JS, streams.HostsStream, "pinkie.host.goliath.>") {
			if err := set.ValidateData(se.event.Type(), se.event.Data()); err != nil {
				t.Fatalf("%s in HOSTS does not match its schema: %v", se.subject, err)
			}
			if !strings.HasPrefix(se.subject, "pinkie.host.goliath."+se.kind.Name) {
				t.Errorf("%s event on %s", se.kind.Name, se.subject)
			}
			got[se.kind.Name] = true
		}
		missing = missing[:0]
		for _, k := range wantKinds {
			if !got[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			t.Fatalf("HOSTS has no %v events from the fixture host after 60s", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The login event names alice and nothing was refused.
	logins := readStream(t, c.JS, streams.HostsStream, "pinkie.host.goliath.login")
	if len(logins) != 1 || !strings.Contains(string(logins[0].event.Data()), `"user":"alice"`) {
		t.Errorf("logins: %d, want alice's one", len(logins))
	}
	if n := countSubjects(t, c.JS, streams.DeadLetterStream, ">"); n != 0 {
		dl := readStream(t, c.JS, streams.DeadLetterStream, ">")
		t.Errorf("%d dead letters, first: %s", n, fmt.Sprint(string(dl[0].event.Data())))
	}
}

func TestCollectCLI(t *testing.T) {
	smartFail := sharedFixture(t, "smart/smart-fail2.json")
	smartPass := sharedFixture(t, "smart/smart-pass.json")
	mdstat := sharedFixture(t, "mdstat/procfs-mdstat.txt")
	sshd := sharedFixture(t, "logs/fail2ban-tests-sshd.log")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"unknown producer", []string{"collect", "nope"}, 2, "unknown producer \"nope\"; known producers: btrfs, fail2ban"},
		{"failing drive", []string{"collect", "smart", "--smartctl-json", smartFail}, 1, "failing  the drive's overall SMART self-assessment is FAILED"},
		{"passing drive", []string{"collect", "smart", "--smartctl-json", smartPass}, 0, " ok"},
		{"not smartctl output", []string{"collect", "smart", "--smartctl-json", mdstat}, 2, "not smartctl --json output"},
		{"not zpool status", []string{"collect", "zfs", "--zpool-status", smartFail}, 2, "not 'zpool status' output"},
		{"not mdstat", []string{"collect", "mdraid", "--mdstat", smartFail}, 2, "not a /proc/mdstat"},
		{"arrays with failures", []string{"collect", "mdraid", "--mdstat", mdstat}, 1, "failing"},
		{"flag for another producer", []string{"collect", "zfs", "--smartctl-json", smartFail}, 2, "judges the smart producer's input"},
		{"--from without a streamer", []string{"collect", "--from", sshd}, 2, "--from feeds one streaming producer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runPinkie(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d (want %d), output should contain %q:\n%s", code, tt.wantCode, tt.want, out)
			}
		})
	}
	// A saved log fed to the login producer: every Accepted line, nothing else.
	out, code := runPinkie(t, "collect", "login", "--from", sshd, "--json")
	if code != 0 {
		t.Fatalf("collect login --from: exit %d\n%s", code, out)
	}
	log, _ := os.ReadFile(sshd)
	want := 0
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "]: Accepted ") {
			want++
		}
	}
	got := strings.Count(out, `"type":"pinkie.login.v1"`)
	if want == 0 || got != want {
		t.Errorf("collect login --from found %d logins, the log has %d Accepted lines", got, want)
	}
}
