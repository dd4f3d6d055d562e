package shell

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	w := NewWindow(10)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := w.Take(ctx, 4); n != 4 || err != nil {
		t.Fatalf("Take(4) = %d, %v; want 4", n, err)
	}
	if n, _ := w.Take(ctx, 100); n != 6 {
		t.Fatalf("Take(100) = %d; want the 6 left", n)
	}
	got := make(chan int64)
	go func() {
		n, _ := w.Take(ctx, 100)
		got <- n
	}()
	select {
	case n := <-got:
		t.Fatalf("Take with no credit returned %d", n)
	case <-time.After(50 * time.Millisecond):
	}
	w.Give(3)
	if n := <-got; n != 3 {
		t.Fatalf("after Give(3), Take = %d", n)
	}
	w.Close()
	w.Give(5) // a grant after the end is ignored, not a panic
	if _, err := w.Take(ctx, 1); err == nil {
		t.Fatal("Take on a closed window succeeded")
	}
}

func TestGranter(t *testing.T) {
	g := NewGranter(100)
	for i, tc := range []struct{ consumed, want int64 }{{10, 0}, {15, 25}, {1, 0}, {30, 31}} {
		if got := g.Consumed(tc.consumed); got != tc.want {
			t.Errorf("step %d: Consumed(%d) = %d, want %d", i, tc.consumed, got, tc.want)
		}
	}
}

func TestResolveUser(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		configured string
		euid       int
		wantUser   string
		wantShell  string
		wantErr    error
		errText    bool
	}{
		{name: "root agent, unset: refused", euid: 0, wantErr: ErrRootNotExplicit},
		{name: "root agent, root explicit", configured: "root", euid: 0, wantUser: "root", wantShell: "/bin/bash"},
		{name: "unknown user", configured: "no-such-user-xyz", euid: 0, errText: true},
		{name: "non-root agent cannot switch", configured: "root", euid: 4242, errText: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ResolveUser(tc.configured, tc.euid, passwd)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
			case tc.errText:
				if err == nil {
					t.Fatalf("resolved %+v, want an error", u)
				}
			case err != nil:
				t.Fatal(err)
			case u.Name != tc.wantUser || u.Shell != tc.wantShell:
				t.Fatalf("got %s with %s, want %s with %s", u.Name, u.Shell, tc.wantUser, tc.wantShell)
			}
		})
	}
}

// TestProcess runs real processes on pipes and on a pty as the current
// user.
func TestProcess(t *testing.T) {
	me := User{Name: "me", Home: t.TempDir(), Shell: "/bin/sh"}
	cases := []struct {
		name     string
		spec     Spec
		input    string
		wantOut  string
		wantErr  string
		wantCode int
	}{
		{name: "pipes apart", spec: Spec{Command: "cat; echo e >&2; exit 3"}, input: "in", wantOut: "in", wantErr: "e\n", wantCode: 3},
		{name: "not found", spec: Spec{Command: "no-such-command-xyz 2>/dev/null"}, wantCode: 127},
		{name: "pty size and TERM", spec: Spec{Command: "echo $TERM $(stty size)", TTY: true, Term: "xterm-test", Rows: 33, Cols: 77}, wantOut: "xterm-test 33 77\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.User, tc.spec.Path = me, os.Getenv("PATH")
			p, err := Start(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if !tc.spec.TTY {
				_, _ = io.WriteString(p.Stdin, tc.input)
				p.Stdin.Close()
			}
			errc := make(chan []byte, 1)
			if p.Stderr != nil {
				go func() { b, _ := io.ReadAll(p.Stderr); errc <- b }()
			} else {
				errc <- nil
			}
			out, _ := io.ReadAll(p.Stdout)
			code, _ := p.ExitCode()
			if code != tc.wantCode || string(out) != tc.wantOut || string(<-errc) != tc.wantErr {
				t.Errorf("exit %d out %q; want exit %d out %q err %q", code, out, tc.wantCode, tc.wantOut, tc.wantErr)
			}
		})
	}
}

// TestLookupPasswd: a container's passwd file is read as is, not the
// host's user database.
func TestLookupPasswd(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	body := "root:x:0:0:root:/root:/run/current-system/sw/bin/bash\nweb:x:990:980::/var/lib/web:\nbad:x:one:2::/:/bin/sh\n"
	if err := os.WriteFile(passwd, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, err string
		want      User
	}{
		{name: "root", want: User{Name: "root", Home: "/root", Shell: "/run/current-system/sw/bin/bash"}},
		{name: "web", want: User{Name: "web", UID: 990, GID: 980, Home: "/var/lib/web", Shell: "/bin/sh"}},
		{name: "bad", err: `uid "one"`},
		{name: "nobody-here", err: "no user nobody-here in " + passwd},
	} {
		got, err := LookupPasswd(passwd, tc.name)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}
