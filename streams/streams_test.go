package streams

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/consumers/ingest"
	"github.com/pinkiefleet/pinkie/events"
)

// testIngestCheck is the hub's ingest check, wired as cmd/pinkie wires it.
func testIngestCheck(env IngestCheckEnv) IngestCheck {
	return &ingest.Checker{Schemas: env.Schemas, MaxSize: env.MaxEventBytes, Known: env.Known, Orders: env.Orders, Now: time.Now}
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("PINKIE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testLogWriter is where test logs go besides a test's own buffer.
func testLogWriter() io.Writer {
	if os.Getenv("PINKIE_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

func startTestHub(t *testing.T, authDir, dataDir string) *Hub {
	t.Helper()
	h, err := StartHub(context.Background(), HubOptions{IngestCheck: testIngestCheck,
		DataDir: dataDir, NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		AuthDir: authDir, Log: testLog(t),
	})
	if err != nil {
		t.Fatalf("StartHub: %v", err)
	}
	return h
}

// startAuthedTestHub starts a hub whose auth directory (returned) holds
// keys for hosts; it is closed when the test ends.
func startAuthedTestHub(t *testing.T, hosts ...string) (*Hub, string) {
	t.Helper()
	auth := t.TempDir()
	if _, err := KeysInit(auth, hosts); err != nil {
		t.Fatal(err)
	}
	hub := startTestHub(t, auth, t.TempDir())
	t.Cleanup(hub.Close)
	return hub, auth
}

func startTestAgent(t *testing.T, host, hubURL, nkey string) *Agent {
	t.Helper()
	a, err := StartAgent(context.Background(), AgentOptions{
		Host: host, HubURLs: []string{hubURL}, NkeyFile: nkey, DataDir: t.TempDir(),
		ReconnectInterval: 100 * time.Millisecond, Log: testLog(t),
	})
	if err != nil {
		t.Fatalf("StartAgent: %v", err)
	}
	return a
}

func heartbeat(t *testing.T, host string, n uint64) events.Event {
	t.Helper()
	k, _ := events.Lookup("heartbeat")
	e, err := events.New(k, host, "heartbeat", time.Now(), events.Heartbeat{Counter: n, Instance: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// waitMsgs waits until stream holds want messages on subject filter.
func waitMsgs(t *testing.T, js jetstream.JetStream, stream, filter string, want uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got uint64
	for time.Now().Before(deadline) {
		st, err := js.Stream(context.Background(), stream)
		if err == nil {
			info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(filter))
			if err == nil {
				got = 0
				for _, n := range info.State.Subjects {
					got += n
				}
				if got >= want {
					if got > want {
						t.Fatalf("%s holds %d messages on %s, want %d", stream, got, filter, want)
					}
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s holds %d messages on %s after %s, want %d", stream, got, filter, within, want)
}

func TestAgentEventsReachHosts(t *testing.T) {
	hub, auth := startAuthedTestHub(t, "goliath", "koishi")
	ctx := context.Background()
	for _, host := range []string{"goliath", "koishi"} {
		a := startTestAgent(t, host, hub.LeafURL(), HostSeedFile(auth, host))
		defer a.Close()
		for i := 1; i <= 10; i++ {
			if err := a.Publish(ctx, heartbeat(t, host, uint64(i)), ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, host := range []string{"goliath", "koishi"} {
		waitMsgs(t, hub.JetStream(), HostsStream, fmt.Sprintf("pinkie.host.%s.heartbeat", host), 10, 20*time.Second)
	}
}

// lockedBuffer is a log sink tests can read while agents write.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTwoAgentsWithOneKeyAreReported: two agents with the same name and
// key push each other off the hub; that is said once, plainly, instead of
// a connected/unreachable pair in the log every few hundred milliseconds.
func TestTwoAgentsWithOneKeyAreReported(t *testing.T) {
	hub, auth := startAuthedTestHub(t, "goliath")
	var logs [2]*lockedBuffer
	for i := range logs {
		logs[i] = &lockedBuffer{}
		a, err := StartAgent(context.Background(), AgentOptions{
			Host: "goliath", HubURLs: []string{hub.LeafURL()}, NkeyFile: HostSeedFile(auth, "goliath"), DataDir: t.TempDir(),
			ReconnectInterval: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(logs[i], nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
	}
	const want = "is another agent connected with the same name or key?"
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range logs {
			if strings.Contains(l.String(), want) {
				if n := strings.Count(l.String(), "hub unreachable"); n > 3 {
					t.Errorf("the flapping was logged %d times before it was reported", n)
				}
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no agent reported the clash within 30s:\n%s\n---\n%s", logs[0].String(), logs[1].String())
}
