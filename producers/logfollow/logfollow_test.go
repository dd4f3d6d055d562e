package logfollow

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// memState is an in-memory State.
type memState struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memState) Get(key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return append([]byte(nil), v...), ok, nil
}

func (s *memState) Put(key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[key] = append([]byte(nil), value...)
	return nil
}

// streamRunner answers journalctl with a fixed output.
type streamRunner struct{ out string }

func (r streamRunner) Run(context.Context, string, ...string) ([]byte, int, error) {
	return []byte(r.out), 0, nil
}

func (r streamRunner) Start(context.Context, string, ...string) (io.ReadCloser, func() error, error) {
	return io.NopCloser(strings.NewReader(r.out)), func() error { return nil }, nil
}

// acceptedRE finds the user of an sshd login ("Accepted password for
// USER from ..."), as the login producer does.
var acceptedRE = regexp.MustCompile(`^Accepted \S+ for (\S+) from `)

// logins is a Handler that reads syslog headers from file lines and hands
// the user of each sshd login to got; a login counts as emitted.
func logins(journal bool, got func(user string)) Handler {
	return func(_ context.Context, e Entry) (bool, error) {
		if !journal {
			var ok bool
			if e, ok = e.WithSyslogHeader(testNow); !ok {
				return false, nil
			}
		}
		m := acceptedRE.FindStringSubmatch(e.Message)
		if m == nil {
			return false, nil
		}
		got(m[1])
		return true, nil
	}
}

// logfollowTester follows a file in a temp dir and hands its logins to the
// test as they come.
type logfollowTester struct {
	t      *testing.T
	dir    string
	state  *memState
	got    chan string
	cancel context.CancelFunc
	done   chan error
}

func newLogfollowTester(t *testing.T) *logfollowTester {
	dir := t.TempDir()
	return &logfollowTester{t: t, dir: dir, state: &memState{}}
}

func (lt *logfollowTester) start() {
	o := Options{File: "/auth.log", Poll: 5 * time.Millisecond, Follow: true, FromStart: true}
	ctx, cancel := context.WithCancel(context.Background())
	lt.cancel, lt.got, lt.done = cancel, make(chan string, 100), make(chan error, 1)
	env := Env{Root: os.DirFS(lt.dir), State: lt.state}
	go func() {
		lt.done <- Follow(ctx, env, o, logins(false, func(u string) { lt.got <- u }))
	}()
}

func (lt *logfollowTester) stop() {
	lt.cancel()
	if err := <-lt.done; err != nil {
		lt.t.Fatalf("stream: %v", err)
	}
	close(lt.got)
	for u := range lt.got {
		lt.t.Errorf("unexpected extra login %s", u)
	}
}

// expect waits for exactly these logins, in order.
func (lt *logfollowTester) expect(users ...string) {
	lt.t.Helper()
	deadline := time.After(10 * time.Second)
	for _, want := range users {
		select {
		case u := <-lt.got:
			if u != want {
				lt.t.Fatalf("login %s, want %s", u, want)
			}
		case err := <-lt.done:
			lt.t.Fatalf("stream ended waiting for %s: %v", want, err)
		case <-deadline:
			lt.t.Fatalf("no login %s within 10s", want)
		}
	}
}

func (lt *logfollowTester) write(name, content string, flag int) {
	lt.t.Helper()
	f, err := os.OpenFile(filepath.Join(lt.dir, name), flag|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		lt.t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		lt.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		lt.t.Fatal(err)
	}
}

func logfollowLine(user string) string {
	return fmt.Sprintf("Nov 27 01:58:03 g sshd[1]: Accepted password for %s from 192.0.2.1 port 2 ssh2\n", user)
}

// TestLogfollowLikeTailF follows a file through growth, a line written in
// two parts, rename-and-create rotation, copytruncate rotation, a restart,
// and a rotation while the producer was stopped.
func TestLogfollowLikeTailF(t *testing.T) {
	lt := newLogfollowTester(t)
	lt.write("auth.log", logfollowLine("a1")+"Nov 27 01:58:03 g sshd[1]: Failed password for x from 192.0.2.1 port 2 ssh2\n"+logfollowLine("a2"), os.O_TRUNC)
	lt.start()
	lt.expect("a1", "a2")

	// A line written in two parts is read once, whole.
	l := logfollowLine("a3")
	lt.write("auth.log", l[:30], os.O_APPEND)
	lt.write("auth.log", l[30:], os.O_APPEND)
	lt.expect("a3")

	// logrotate's default: rename, the daemon writes on to the renamed
	// file until told, then the new file.
	if err := os.Rename(filepath.Join(lt.dir, "auth.log"), filepath.Join(lt.dir, "auth.log.1")); err != nil {
		t.Fatal(err)
	}
	lt.write("auth.log.1", logfollowLine("b1"), os.O_APPEND)
	lt.write("auth.log", logfollowLine("b2"), os.O_EXCL)
	lt.expect("b1", "b2")
	lt.write("auth.log", logfollowLine("b3"), os.O_APPEND)
	lt.expect("b3")

	// copytruncate: copy, truncate in place, write on.
	old, err := os.ReadFile(filepath.Join(lt.dir, "auth.log"))
	if err != nil {
		t.Fatal(err)
	}
	lt.write("auth.log.1", string(old), os.O_TRUNC)
	if err := os.Truncate(filepath.Join(lt.dir, "auth.log"), 0); err != nil {
		t.Fatal(err)
	}
	lt.write("auth.log", logfollowLine("c1"), os.O_APPEND)
	lt.expect("c1")
	lt.write("auth.log", logfollowLine("c2"), os.O_APPEND)
	lt.expect("c2")
	lt.stop()

	// A restart continues where the last emitted login left off.
	lt.write("auth.log", logfollowLine("d1"), os.O_APPEND)
	lt.start()
	lt.expect("d1")
	lt.stop()

	// Rotated while stopped: the rest of the old file, then the new one.
	lt.write("auth.log", logfollowLine("e1"), os.O_APPEND)
	if err := os.Rename(filepath.Join(lt.dir, "auth.log"), filepath.Join(lt.dir, "auth.log.1")); err != nil {
		t.Fatal(err)
	}
	lt.write("auth.log", logfollowLine("e2"), os.O_EXCL)
	lt.start()
	lt.expect("e1", "e2")
	lt.write("auth.log", logfollowLine("e3"), os.O_APPEND)
	lt.expect("e3")
	lt.stop()
}

// TestLogfollowFirstStartAtEnd: a follower meeting a log for the first
// time does not report its old lines, only what is written from then on.
func TestLogfollowFirstStartAtEnd(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "auth.log"), []byte(logfollowLine("old")), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{File: "/auth.log", Poll: 5 * time.Millisecond, Follow: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 10)
	state := &memState{}
	go func() {
		_ = Follow(ctx, Env{Root: os.DirFS(dir), State: state}, o, logins(false, func(u string) { got <- u }))
	}()
	// Wait until the follower has saved its starting position, then grow the log.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok, _ := state.Get(PositionKey); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower saved no starting position")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f, err := os.OpenFile(filepath.Join(dir, "auth.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(logfollowLine("new"))
	f.Close()
	select {
	case u := <-got:
		if u != "new" {
			t.Fatalf("first login reported is %s, want new (old lines are not news)", u)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no login reported")
	}
}

// TestLogfollowCutsLongLines: a log line longer than any real one (64 MiB
// without a newline, in a file or from the journal) is passed over with
// bounded memory, and the lines after it are still read.
func TestLogfollowCutsLongLines(t *testing.T) {
	const long = 64 << 20
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "auth.log")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(logfollowLine("before")); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(int64(len(logfollowLine("before"))) + long); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("\n" + logfollowLine("after")); err != nil {
			t.Fatal(err)
		}
		f.Close()
		env := Env{Root: os.DirFS(dir), State: &memState{}}
		got, alloc := logfollowUsers(t, env, Options{File: "/auth.log"})
		if want := []string{"before", "after"}; !slices.Equal(got, want) {
			t.Errorf("logins %q, want %q", got, want)
		}
		if alloc > 16<<20 {
			t.Errorf("allocated %d MiB passing a %d MiB line", alloc>>20, long>>20)
		}
	})
	t.Run("journal", func(t *testing.T) {
		entry := func(i int, user string) string {
			return fmt.Sprintf(`{"__CURSOR":"s=1;i=%d","__REALTIME_TIMESTAMP":"1795752000000000","_HOSTNAME":"g","SYSLOG_IDENTIFIER":"sshd","_PID":"1","MESSAGE":"Accepted publickey for %s from 192.0.2.1 port 2 ssh2: ED25519 SHA256:x"}`+"\n", i, user)
		}
		huge := `{"__CURSOR":"s=1;i=2","MESSAGE":"` + strings.Repeat("x", long) + `"}` + "\n"
		out := entry(1, "before") + huge + entry(3, "after")
		env := Env{Root: os.DirFS(t.TempDir()), Run: streamRunner{out}, State: &memState{}}
		got, alloc := logfollowUsers(t, env, Options{Journal: true, Follow: true})
		if want := []string{"before", "after"}; !slices.Equal(got, want) {
			t.Errorf("logins %q, want %q", got, want)
		}
		if alloc > 16<<20 {
			t.Errorf("allocated %d MiB passing a %d MiB entry", alloc>>20, long>>20)
		}
	})
}

// logfollowUsers follows the log to its end and returns the users who
// logged in and the bytes allocated meanwhile.
func logfollowUsers(t *testing.T, env Env, o Options) ([]string, uint64) {
	t.Helper()
	var got []string
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := Follow(context.Background(), env, o, logins(o.Journal, func(u string) { got = append(got, u) }))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("follow: %v", err)
	}
	return got, after.TotalAlloc - before.TotalAlloc
}

func TestSyslogYearWrap(t *testing.T) {
	jan1 := time.Date(2027, 1, 1, 0, 5, 0, 0, time.UTC)
	e, ok := ParseSyslog("Dec 31 23:59:58 goliath sshd[1]: x", jan1)
	if !ok || !e.Time.Equal(time.Date(2026, 12, 31, 23, 59, 58, 0, time.UTC)) {
		t.Errorf("Dec 31 read on Jan 1: got %v %v, want the year before", e.Time, ok)
	}
	e, ok = ParseSyslog("Jan  1 00:04:00 goliath sshd[1]: x", jan1)
	if !ok || !e.Time.Equal(time.Date(2027, 1, 1, 0, 4, 0, 0, time.UTC)) {
		t.Errorf("Jan 1: got %v %v", e.Time, ok)
	}
	e, ok = ParseSyslog("<38>1 2019-07-08T17:40:16.954167-04:00 h.example.com sshd 57915 - [a x=\"]\"] msg here", jan1)
	if !ok || e.Ident != "sshd" || e.PID != 57915 || e.Message != "msg here" {
		t.Errorf("RFC 5424 with structured data: %+v %v", e, ok)
	}
}
