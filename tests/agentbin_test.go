package tests

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

// agentBinary builds pinkie-agent once, next to the pinkie binary TestMain
// built; only the tests that run it pay for the build.
var agentBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(pinkieBin), "pinkie-agent")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/pinkie-agent").CombinedOutput()
	if err != nil {
		return "", &buildError{err: err, out: string(out)}
	}
	return bin, nil
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "build pinkie-agent: " + e.err.Error() + "\n" + e.out }

// TestAgentBinaryDeliversHeartbeats runs the agent-only binary as a host's
// agent: it takes pinkie agent's flags, says the same on --help, reaches
// the hub over the leaf link and its heartbeats land in HOSTS.
func TestAgentBinaryDeliversHeartbeats(t *testing.T) {
	bin, err := agentBinary()
	if err != nil {
		t.Fatal(err)
	}
	help := func(argv ...string) string {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
		return string(out)
	}
	want := help(pinkieBin, "agent", "--help")
	got := help(bin, "--help")
	if !strings.HasPrefix(got, "Usage: pinkie-agent [flags]") {
		t.Errorf("pinkie-agent --help begins %q, want Usage: pinkie-agent [flags]", strings.SplitN(got, "\n", 2)[0])
	}
	if strings.Replace(got, "pinkie-agent", "pinkie agent", 1) != want {
		t.Errorf("pinkie-agent --help differs from pinkie agent --help:\n%s\nwant:\n%s", got, want)
	}
	out, err := exec.Command(bin, "--heartbeat", "0").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "pinkie-agent: --heartbeat must be positive") {
		t.Errorf("pinkie-agent --heartbeat 0: err %v, output %q; want exit 2 and the usage error", err, out)
	}

	f := newFleet(t, "goliath")
	f.startHub()
	agent := startCommand(t, "pinkie-agent", exec.Command(bin, "--name", "goliath", "--hub", f.leafURL(), "--data", t.TempDir(),
		"--nkey", streams.HostSeedFile(f.auth, "goliath"), "--reconnect", "200ms",
		"--producers", "heartbeat", "--heartbeat", "200ms"))
	agent.waitFor("agent started", 30*time.Second)
	c := f.client()
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", 3, 30*time.Second)
}
