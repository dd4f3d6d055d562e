package producers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
)

func TestExecRunner(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skipf("no sh on this machine: %v", err)
	}
	ctx := context.Background()
	r := ExecRunner{Timeout: 5 * time.Second}
	tests := []struct {
		name     string
		cmd      string
		args     []string
		wantOut  string
		wantCode int
		wantErr  bool
	}{
		{name: "success", cmd: "sh", args: []string{"-c", "echo hello; echo noise >&2"}, wantOut: "hello\n"},
		{name: "non-zero exit is a code, not an error", cmd: "sh", args: []string{"-c", "echo partial; exit 3"}, wantOut: "partial\n", wantCode: 3},
		{name: "missing command is an error", cmd: "pinkie-no-such-command", wantCode: -1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code, err := r.Run(ctx, tt.cmd, tt.args...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if string(out) != tt.wantOut || code != tt.wantCode {
				t.Errorf("got (%q, %d), want (%q, %d)", out, code, tt.wantOut, tt.wantCode)
			}
		})
	}
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		_, _, err := ExecRunner{Timeout: 100 * time.Millisecond}.Run(ctx, "sleep", "10")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("timeout took %v", d)
		}
	})
	t.Run("endless output is an error, not all of memory", func(t *testing.T) {
		start := time.Now()
		// 64 MiB through a race-instrumented buffer on a loaded machine can
		// take longer than the 5 s above (it once got 16 MiB): a longer
		// timeout, so what is tested is the cap, not the clock.
		r := ExecRunner{Timeout: time.Minute}
		out, code, err := r.Run(ctx, "cat", "/dev/zero")
		if !errors.Is(err, bounded.ErrTooLarge) || out != nil || code != -1 {
			t.Fatalf("got (%d bytes, %d, %v), want (0, -1, ErrTooLarge)", len(out), code, err)
		}
		if want := "run cat: stdout larger than 64 MiB"; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %q, want it to start %q", err, want)
		}
		if d := time.Since(start); d > time.Minute {
			t.Errorf("took %v", d)
		}
	})
	t.Run("stream", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		out, wait, err := r.Start(ctx, "sh", "-c", "echo one; echo two")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(out)
		if err := wait(); err != nil {
			t.Errorf("wait: %v", err)
		}
		if strings.TrimSpace(string(b)) != "one\ntwo" {
			t.Errorf("stream read %q", b)
		}
	})
}

// execFakeRunner answers commands from a table keyed by the command line
// ("ip -j addr"); a missing entry is a command that cannot run.
type execFakeRunner struct {
	mu      sync.Mutex
	answers map[string]execFakeAnswer
	calls   []string
	// stream, when set, is the stdout Start returns for any command.
	stream func(args []string) string
}

type execFakeAnswer struct {
	out  string
	code int
	err  error
}

func (r *execFakeRunner) Run(ctx context.Context, name string, args ...string) ([]byte, int, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	r.mu.Lock()
	r.calls = append(r.calls, line)
	a, ok := r.answers[line]
	r.mu.Unlock()
	if !ok {
		return nil, -1, fmt.Errorf("run %s: %w", name, exec.ErrNotFound)
	}
	return []byte(a.out), a.code, a.err
}

func (r *execFakeRunner) Start(ctx context.Context, name string, args ...string) (io.ReadCloser, func() error, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	r.mu.Lock()
	r.calls = append(r.calls, line)
	r.mu.Unlock()
	if r.stream == nil {
		return nil, nil, fmt.Errorf("start %s: %w", name, exec.ErrNotFound)
	}
	return io.NopCloser(strings.NewReader(r.stream(args))), func() error { return nil }, nil
}

func (r *execFakeRunner) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// execMemState is an in-memory State.
type execMemState struct {
	mu  sync.Mutex
	m   map[string][]byte
	err error
}

func (s *execMemState) Get(key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, false, s.err
	}
	v, ok := s.m[key]
	return append([]byte(nil), v...), ok, nil
}

func (s *execMemState) Put(key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[key] = append([]byte(nil), value...)
	return nil
}

// execSharedFixture returns the path of a file under ../shared/fixtures, or
// skips the test when the shared folder is absent.
func execSharedFixture(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "fixtures", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared fixture %s not available (the ../shared folder is provided beside the repo on pinkie's machines): %v", rel, err)
	}
	return p
}

// execCapturedCommands maps the command lines the producers run to the
// names under which scripts/capture-root (or the hand-made roots) keep
// their output in <root>/_commands/<name>.{out,code}.
var execCapturedCommands = map[string]string{
	"ip -j addr show":             "ip-addr",
	"ip -j route show default":    "ip-route",
	"ip -j -6 route show default": "ip-route6",
	"ip -j neigh show":            "ip-neigh",
	"wg show all dump":            "wg-dump",
	"systemctl list-units --failed --all --output=json --no-pager": "systemctl-failed",
	"systemctl is-system-running":                                  "systemctl-state",
	"nixos-version --json":                                         "nixos-version",
	"darwin-version --json":                                        "darwin-version",
	"nix-store --query --requisites /run/current-system":           "nix-store-requisites",
	"systemctl show --property=Id,Description,LoadState,ActiveState,SubState,NRestarts -- restic-backups-b2.service":                                              "systemctl-show-failed",
	"systemctl show --property=Id,Description,LoadState,ActiveState,SubState,NRestarts -- nginx.service nope.service":                                             "systemctl-show-watched",
	"systemctl show --property=Id,Description,LoadState,ActiveState,SubState,NRestarts,ActiveEnterTimestampMonotonic -- microvm@db.service container@web.service": "systemctl-show-guests",
}

// execCapturedRunner answers the producers' commands from a fixture
// root's recorded outputs; a command with no recording cannot run.
func execCapturedRunner(t testing.TB, root string) *execFakeRunner {
	t.Helper()
	r := &execFakeRunner{answers: map[string]execFakeAnswer{}}
	for line, name := range execCapturedCommands {
		out, err := os.ReadFile(filepath.Join(root, "_commands", name+".out"))
		if err != nil {
			continue
		}
		code := 0
		if c, err := os.ReadFile(filepath.Join(root, "_commands", name+".code")); err == nil {
			code, _ = strconv.Atoi(strings.TrimSpace(string(c)))
		}
		r.answers[line] = execFakeAnswer{out: string(out), code: code}
	}
	return r
}
