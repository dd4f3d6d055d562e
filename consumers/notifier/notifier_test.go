package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/consumers/alerter"
	"github.com/pinkiefleet/pinkie/events"
)

// memStore keeps jobs in memory (the hub uses a KV bucket; tests/ and
// streams/ run that), with revisions as a KV bucket counts them.
type memStore struct {
	mu  sync.Mutex
	m   map[string][]byte
	rev map[string]uint64
	seq uint64
}

func (s *memStore) List(context.Context) (map[string]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Entry{}
	for k, v := range s.m {
		out[k] = Entry{Value: v, Rev: s.rev[k]}
	}
	return out, nil
}

func (s *memStore) Get(_ context.Context, k string) (Entry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return Entry{Value: v, Rev: s.rev[k]}, ok, nil
}

func (s *memStore) Put(_ context.Context, k string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(k, v)
	return nil
}

func (s *memStore) put(k string, v []byte) uint64 {
	if s.rev == nil {
		s.rev = map[string]uint64{}
	}
	s.seq++
	s.m[k], s.rev[k] = append([]byte(nil), v...), s.seq
	return s.seq
}

func (s *memStore) Update(_ context.Context, k string, v []byte, rev uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; (rev == 0 && ok) || (rev != 0 && s.rev[k] != rev) {
		return 0, ErrConflict
	}
	return s.put(k, v), nil
}

func (s *memStore) Delete(_ context.Context, k string, rev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; ok && rev != 0 && s.rev[k] != rev {
		return ErrConflict
	}
	delete(s.m, k)
	delete(s.rev, k)
	return nil
}

type auditLog struct {
	mu  sync.Mutex
	got []string
}

func (a *auditLog) Publish(_ context.Context, subject string, e events.Event) (events.Ack, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, subject)
	return events.Ack{}, nil
}

func (a *auditLog) subjects() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got...)
}

// recorder is a channel that records messages and fails as told.
type recorder struct {
	name  string
	route Route
	mu    sync.Mutex
	msgs  []Message
	fail  func(attempt int) error
	tries int
}

func (r *recorder) Name() string { return r.name }
func (r *recorder) Type() string { return "ntfy" }
func (r *recorder) Route() Route { return r.route }
func (r *recorder) Send(_ context.Context, m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries++
	if r.fail != nil {
		if err := r.fail(r.tries); err != nil {
			return err
		}
	}
	r.msgs = append(r.msgs, m)
	return nil
}

func (r *recorder) messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

func alertEvent(t *testing.T, host, rule, sev, status string, i int) []byte {
	t.Helper()
	k, _ := events.Lookup("alert." + status)
	a := events.Alert{Host: host, Rule: rule, Object: fmt.Sprint("obj", i), Severity: sev, Summary: fmt.Sprintf("%s: %s #%d", host, rule, i),
		Status: status, Reason: "started", StartsAt: time.Now().UTC(), Fingerprint: alerter.Fingerprint(host, rule, fmt.Sprint(i))}
	if status == "resolved" {
		a.Reason = "resolved"
		now := time.Now().UTC()
		a.EndsAt = &now
	}
	e, err := events.New(k, host, "alerter", time.Now(), a)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := events.Encode(e)
	return b
}

func dur(d time.Duration) *alerter.Duration { x := alerter.Duration(d); return &x }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func start(t *testing.T, cfg Config, chans ...Channel) (*Notifier, *memStore, *auditLog) {
	t.Helper()
	st, au := &memStore{m: map[string][]byte{}}, &auditLog{}
	n := New(Options{Config: cfg, Channels: chans, Store: st, Pub: au})
	if err := n.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n, st, au
}

func TestGroupingWithinGroupWait(t *testing.T) {
	rec := &recorder{name: "phone"}
	n, st, au := start(t, Config{GroupWait: dur(300 * time.Millisecond)}, rec)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if err := n.HandleAlert(ctx, uint64(i), alertEvent(t, "goliath", "fs.usage", "warning", "firing", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The same stored alert redelivered is not added twice.
	if err := n.HandleAlert(ctx, 2, alertEvent(t, "goliath", "fs.usage", "warning", "firing", 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the grouped message", func() bool { return len(rec.messages()) == 1 })
	m := rec.messages()[0]
	if len(m.Alerts) != 3 || m.Title() != "[3 FIRING, 0 RESOLVED] 3 alerts" {
		t.Errorf("grouped message: %q with %d alerts", m.Title(), len(m.Alerts))
	}
	if err := n.HandleAlert(ctx, 4, alertEvent(t, "goliath", "fs.usage", "warning", "resolved", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next message", func() bool { return len(rec.messages()) == 2 })
	if got := rec.messages()[1].Title(); got != "[RESOLVED] goliath fs.usage obj1" {
		t.Errorf("title %q", got)
	}
	waitFor(t, "audit", func() bool { return len(au.subjects()) == 2 })
	if s := au.subjects(); s[0] != "pinkie.notify.phone.delivered" {
		t.Errorf("audit %v", s)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for k := range st.m {
		if strings.HasPrefix(k, "job.") {
			t.Errorf("delivered job %s still stored", k)
		}
	}
}

func TestRetryBackoffAndGiveUp(t *testing.T) {
	flaky := &recorder{name: "flaky", fail: func(n int) error {
		if n <= 2 {
			return errors.New("503 Service Unavailable")
		}
		return nil
	}}
	refused := &recorder{name: "refused", fail: func(int) error { return permanent(errors.New("401 Unauthorized")) }}
	down := &recorder{name: "down", fail: func(int) error { return errors.New("connection refused") }}
	n, _, au := start(t, Config{GroupWait: dur(0), MaxRetry: alerter.Duration(2 * time.Second)}, flaky, refused, down)
	if err := n.HandleAlert(context.Background(), 1, alertEvent(t, "goliath", "guest.down", "warning", "firing", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "flaky delivered on its third attempt", func() bool { return len(flaky.messages()) == 1 })
	// flaky's last attempt and down's may end at the same moment: wait
	// for both audits (a message is recorded before it is audited).
	waitFor(t, "down given up after max_retry, flaky's delivery audited", func() bool {
		var down, flakyDone bool
		for _, s := range au.subjects() {
			down = down || s == "pinkie.notify.down.failed"
			flakyDone = flakyDone || s == "pinkie.notify.flaky.delivered"
		}
		return down && flakyDone
	})
	count := map[string]int{}
	for _, s := range au.subjects() {
		count[s]++
	}
	if count["pinkie.notify.flaky.retrying"] != 2 || count["pinkie.notify.flaky.delivered"] != 1 {
		t.Errorf("flaky audit: %v", count)
	}
	if count["pinkie.notify.refused.failed"] != 1 || count["pinkie.notify.refused.retrying"] != 0 || refused.tries != 1 {
		t.Errorf("a permanent refusal must fail at once: %v, %d tries", count, refused.tries)
	}
	if down.tries < 2 || count["pinkie.notify.down.failed"] != 1 {
		t.Errorf("down: %d tries, audit %v", down.tries, count)
	}
	if len(n.Pending()) != 0 {
		t.Errorf("pending after all outcomes: %+v", n.Pending())
	}
}

func TestRestartResumesPendingWithSameMessageID(t *testing.T) {
	st := &memStore{m: map[string][]byte{}}
	rec := &recorder{name: "ops", fail: func(int) error { return errors.New("down") }}
	n := New(Options{Config: Config{GroupWait: dur(0)}, Channels: []Channel{rec}, Store: st, Pub: &auditLog{}})
	if err := n.HandleAlert(context.Background(), 7, alertEvent(t, "goliath", "login", "info", "firing", 1)); err != nil {
		t.Fatal(err)
	}
	id := n.Pending()[0].ID
	// A new notifier on the same store (a restarted hub) has the job, and
	// ignores the alert if it is delivered again.
	rec2 := &recorder{name: "ops"}
	n2, _, _ := func() (*Notifier, *memStore, *auditLog) {
		n2 := New(Options{Config: Config{GroupWait: dur(0)}, Channels: []Channel{rec2}, Store: st, Pub: &auditLog{}})
		if err := n2.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		return n2, st, nil
	}()
	if err := n2.HandleAlert(context.Background(), 7, alertEvent(t, "goliath", "login", "info", "firing", 1)); err != nil {
		t.Fatal(err)
	}
	if p := n2.Pending(); len(p) != 1 || p[0].ID != id {
		t.Fatalf("pending after restart: %+v, want the one job %s", p, id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = n2.Run(ctx) }()
	waitFor(t, "delivery after restart", func() bool { return len(rec2.messages()) == 1 })
	if rec2.messages()[0].ID != id {
		t.Errorf("message id %s after restart, want %s (the Matrix txnId must not change)", rec2.messages()[0].ID, id)
	}
}

func TestRoutes(t *testing.T) {
	a := events.Alert{Host: "edge-1", Rule: "fs.usage", Object: "/", Severity: "warning", Status: "firing", Labels: map[string]string{"kind": "fs"}}
	tests := []struct {
		name  string
		route Route
		want  bool
	}{
		{"empty route takes all", Route{}, true},
		{"min severity critical drops a warning", Route{MinSeverity: "critical"}, false},
		{"min severity warning", Route{MinSeverity: "warning"}, true},
		{"host pattern", Route{Hosts: []string{"web-*", "edge-*"}}, true},
		{"host pattern miss", Route{Hosts: []string{"web-*"}}, false},
		{"rule pattern", Route{Rules: []string{"fs.*"}}, true},
		{"label", Route{Labels: map[string]string{"kind": "smart"}}, false},
		{"label match", Route{Labels: map[string]string{"kind": "f?"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.route.Matches(a, Fleet{}); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
	r := a
	r.Status = "resolved"
	if (Route{SkipResolved: true}).Matches(r, Fleet{}) {
		t.Error("skip_resolved took a resolved alert")
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, raw, want string }{
		{"unknown key", `{"chanels": {}}`, `unknown field "chanels"`},
		{"unknown channel key", `{"channels": {"p": {"type": "ntfy", "url": "http://x", "topic": "t", "token": "secret"}}}`, `unknown field "token"`},
		{"no type", `{"channels": {"p": {"url": "http://x"}}}`, "type is required"},
		{"bad type", `{"channels": {"p": {"type": "slack"}}}`, `type "slack"`},
		{"bad name", `{"channels": {"p.x": {"type": "ntfy", "url": "http://x", "topic": "t"}}}`, `channel name "p.x"`},
		{"missing secret file", `{"channels": {"m": {"type": "matrix", "homeserver": "http://x", "room_id": "!r:x", "access_token_file": "` + dir + `/nope"}}}`, "access_token_file"},
		{"email tls", `{"channels": {"e": {"type": "email", "smtp_host": "h", "from": "a@b", "to": ["c@d"], "tls": "maybe"}}}`, `tls "maybe"`},
		{"bad severity", `{"channels": {"p": {"type": "ntfy", "url": "http://x", "topic": "t", "min_severity": "urgent"}}}`, `min_severity "urgent"`},
		{"bad duration", `{"group_wait": "soon", "channels": {}}`, `duration "soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseConfig([]byte(tt.raw))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNtfyPriorityAndTags(t *testing.T) {
	for _, tt := range []struct {
		sev, status string
		prio        int
		tag         string
	}{{"critical", "firing", 5, "rotating_light"}, {"warning", "firing", 4, "warning"}, {"info", "firing", 3, "information_source"}, {"critical", "resolved", 2, "white_check_mark"}} {
		a := events.Alert{Host: "h", Rule: "r", Severity: tt.sev, Status: tt.status}
		if p := NtfyPriority(a); p != tt.prio {
			t.Errorf("%s/%s: priority %d, want %d", tt.sev, tt.status, p, tt.prio)
		}
		if tags := NtfyTags(a); tags[0] != tt.tag {
			t.Errorf("%s/%s: tags %v", tt.sev, tt.status, tags)
		}
	}
	b, _ := json.Marshal(MatrixSendPath("!room:example.org", "pinkie-1"))
	if string(b) != `"/_matrix/client/v3/rooms/%21room:example.org/send/m.room.message/pinkie-1"` {
		t.Errorf("matrix path %s", b)
	}
}

// TestLeaseOfAnEarlierRunIsVoid: a job whose send lease an earlier run
// on the same node took (a hub killed mid-delivery) is due at once for the
// restarted notifier; another node waits until the lease ends.
func TestLeaseOfAnEarlierRunIsVoid(t *testing.T) {
	ctx := context.Background()
	st := &memStore{m: map[string][]byte{}}
	held := make(chan struct{})
	rec := &recorder{name: "ops", fail: func(int) error { <-held; return errors.New("killed") }}
	n := New(Options{Config: Config{GroupWait: dur(0)}, Channels: []Channel{rec}, Store: st, Pub: &auditLog{}, Node: "hub1"})
	if err := n.HandleAlert(ctx, 1, alertEvent(t, "goliath", "login", "info", "firing", 1)); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer close(held)
	defer cancel()
	go func() { _ = n.Run(rctx) }()
	// The attempt is stored, with its lease, before the send.
	waitFor(t, "the attempt's lease stored", func() bool {
		all, _ := st.List(ctx)
		for k, e := range all {
			var j Job
			if strings.HasPrefix(k, "job.") && json.Unmarshal(e.Value, &j) == nil && j.SendingUntil != nil {
				return true
			}
		}
		return false
	})
	for _, tt := range []struct {
		node   string
		atOnce bool
	}{{"hub1", true}, {"hub2", false}} {
		other := New(Options{Config: Config{GroupWait: dur(0)}, Channels: []Channel{&recorder{name: "ops"}}, Store: st, Pub: &auditLog{}, Node: tt.node})
		if err := other.Load(ctx); err != nil {
			t.Fatal(err)
		}
		p := other.Pending()
		if len(p) != 1 {
			t.Fatalf("%s: pending %+v, want the one job", tt.node, p)
		}
		due := p[0].due()
		if atOnce := !due.After(time.Now()); atOnce != tt.atOnce {
			t.Errorf("%s after hub1's run: job due %s (in %s); want at once: %t", tt.node, due.Format(time.RFC3339), time.Until(due).Round(time.Second), tt.atOnce)
		}
	}
}
