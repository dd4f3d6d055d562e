package streams

import (
	"bytes"
	"context"
	"errors"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestShellClientDashboard: the dashboard terminal's in-process user opens
// a session with pinkie shell's client on an agent with a host key (which
// accepts only a request the hub stamped as coming from the operators'
// account), and may do nothing else: no events, no JetStream, no other
// subjects.
func TestShellClientDashboard(t *testing.T) {
	h, auth := startAuthedTestHub(t, "alpha")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	a, err := StartAgent(context.Background(), AgentOptions{Host: "alpha", HubURLs: []string{h.LeafURL()}, NkeyFile: HostSeedFile(auth, "alpha"),
		DataDir: t.TempDir(), ReconnectInterval: 100 * time.Millisecond, Log: testLog(t),
		Services: []AgentService{NewShellService(ShellOptions{Enabled: true, User: me.Username, Log: testLog(t)})}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c, err := h.ShellClient(strings.Repeat("x", 300))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Conn.Close()
	if name := c.Conn.Opts.Name; !strings.HasPrefix(name, ShellConnNamePrefix) || len(name) != maxConnName {
		t.Errorf("connection name %q (%d bytes): want the prefix, cut to %d bytes", name, len(name), maxConnName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	code, err := c.Shell(ctx, ShellRequest{Host: "alpha", Command: "echo hi; exit 3", Stdout: &out, OpenTimeout: 20 * time.Second})
	if err != nil || code != 3 || out.String() != "hi\n" {
		t.Fatalf("Shell: code %d, output %q, err %v; want 3, %q", code, out.String(), err, "hi\n")
	}

	for _, try := range []struct {
		what string
		do   func() error
	}{
		{"publish an event", func() error { return c.Conn.Publish("pinkie.host.alpha.heartbeat", []byte("{}")) }},
		{"subscribe to events", func() error { _, err := c.Conn.SubscribeSync("pinkie.>"); return err }},
		{"call the JetStream API", func() error { return c.Conn.PublishRequest("$JS.API.INFO", "_INBOX.x", nil) }},
	} {
		if err := try.do(); err != nil {
			t.Fatalf("%s: %v", try.what, err)
		}
		select {
		case err := <-c.denied:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("%s: %v, want a permission violation", try.what, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: not refused", try.what)
		}
	}
}
