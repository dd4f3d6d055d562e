package streams

import (
	"context"
	"encoding/json"
	"os/user"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/shell"
)

// TestShellWindow is the agent's side of flow control, seen by a receiver
// that grants by hand: the agent never has more output in flight than the
// credit granted, stops when it is used up, resumes by exactly the next
// grant, and reports the total with the exit code.
func TestShellWindow(t *testing.T) {
	h := startTestHub(t, "", t.TempDir())
	defer h.Close()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	a, err := StartAgent(context.Background(), AgentOptions{Host: "alpha", HubURLs: []string{h.LeafURL()}, DataDir: t.TempDir(),
		ReconnectInterval: 100 * time.Millisecond, Log: testLog(t),
		Services: []AgentService{NewShellService(ShellOptions{Enabled: true, User: me.Username, Log: testLog(t)})}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	nc, err := nats.Connect(h.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	const window, total = 64 << 10, 4 << 20
	sid := NewShellSession()
	out := make(chan *nats.Msg, 4096)
	status := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe(events.ShellSubject("alpha", sid, events.ShellOut), out); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.ChanSubscribe(events.ShellSubject("alpha", sid, events.ShellStatus), status); err != nil {
		t.Fatal(err)
	}
	open, _ := json.Marshal(shell.Open{Session: sid, Command: "head -c 4194304 /dev/zero", Window: window})
	control := func(c shell.Control) {
		b, _ := json.Marshal(c)
		if err := nc.Publish(events.ShellSubject("alpha", sid, events.ShellCtl), b); err != nil {
			t.Fatal(err)
		}
	}
	var exit *shell.Control
	next := func(wait time.Duration) (*nats.Msg, bool) {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			select {
			case m := <-out:
				return m, true
			case m := <-status:
				var c shell.Control
				_ = json.Unmarshal(m.Data, &c)
				if c.Type == shell.Exit {
					exit = &c
					// Output and status come on two subscriptions: the
					// select may pick the exit before output already here.
					if len(out) > 0 {
						continue
					}
					return nil, false
				}
			case <-timer.C:
				return nil, false
			}
		}
	}
	// The agent's subscription reaches the hub shortly after it connects:
	// repeat the open request until it answers, as pinkie shell does.
	var got int64
	for try := 0; got == 0; try++ {
		if try == 30 {
			t.Fatal("the agent did not answer the open request")
		}
		if err := nc.Publish(events.ShellOpenSubject("alpha"), open); err != nil {
			t.Fatal(err)
		}
		if m, ok := next(time.Second); ok {
			got += int64(len(m.Data))
		}
	}
	for _, step := range []struct {
		name  string
		grant int64
		until int64
	}{
		{"first window", 0, window},
		{"one more window", window, 2 * window},
	} {
		control(shell.Control{Type: shell.Grant, N: step.grant})
		for got < step.until {
			m, ok := next(10 * time.Second)
			if !ok {
				t.Fatalf("%s: stalled at %d bytes, want %d", step.name, got, step.until)
			}
			got += int64(len(m.Data))
		}
		if got != step.until {
			t.Fatalf("%s: the agent sent %d bytes on %d of credit", step.name, got, step.until)
		}
		// Nothing more may come while the credit is used up.
		if m, ok := next(300 * time.Millisecond); ok {
			t.Fatalf("%s: %d more bytes arrived beyond the credit of %d", step.name, len(m.Data), step.until)
		}
	}
	control(shell.Control{Type: shell.Grant, N: total})
	for got < total {
		m, ok := next(10 * time.Second)
		if !ok {
			t.Fatalf("stalled at %d of %d bytes", got, total)
		}
		got += int64(len(m.Data))
	}
	if exit == nil {
		if _, ok := next(10 * time.Second); ok || exit == nil {
			t.Fatal("no exit status after the output")
		}
	}
	if exit.Code == nil || *exit.Code != 0 || exit.Out != total || got != total {
		t.Fatalf("exit %+v after %d bytes; want code 0 and %d bytes", exit, got, total)
	}
}

// TestRecorderKeepsCharactersWhole: output cut inside a UTF-8 character
// is recorded whole, in the next event.
func TestRecorderKeepsCharactersWhole(t *testing.T) {
	h := startTestHub(t, "", t.TempDir())
	defer h.Close()
	ctx := context.Background()
	js := h.JetStream()
	if _, err := js.CreateOrUpdateStream(ctx, shellRecConfig(1<<20)); err != nil {
		t.Fatal(err)
	}
	sid := NewShellSession()
	r := newRecorder(js, sid, shell.Open{Session: sid}, "/bin/sh", time.Now())
	euro := []byte("€") // 3 bytes
	r.output(append([]byte("a"), euro[:1]...))
	r.output(euro[1:2])
	r.output(append(euro[2:], 'b'))
	r.output(euro[:2]) // left open at the end: written as it is
	if err := r.wait(ctx); err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, ShellRecStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{shellRecSubject(sid)}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := 0; i < 4; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if i == 0 {
			continue // the header
		}
		var ev []any
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, ev[2].(string))
	}
	want := []string{"a", "€b", "\uFFFD"}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("events %q, want %q", got, want)
	}
}
