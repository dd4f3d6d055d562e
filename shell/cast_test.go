package shell

import (
	"strings"
	"testing"
	"time"
)

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"none", nil, ""},
		{"one is a command line", []string{"ls -l | wc"}, "ls -l | wc"},
		{"several quoted each", []string{"echo", "a b", "it's", "x=1,y@z"}, `echo 'a b' 'it'\''s' x=1,y@z`},
		{"empty argument", []string{"printf", ""}, "printf ''"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CommandLine(tc.args); got != tc.want {
				t.Errorf("CommandLine(%q) = %q, want %q", tc.args, got, tc.want)
			}
		})
	}
}

func TestCastPlayer(t *testing.T) {
	var out strings.Builder
	p := NewCastPlayer(&out, time.Millisecond)
	cast := "{\"version\":2}\n[0.1,\"o\",\"hello \"]\n[0.2,\"i\",\"typed\"]\nnot json\n[0.3,\"o\",\"world\"]\n[0.4,\"o\",\"cut"
	for _, chunk := range []string{cast[:20], cast[20:]} {
		if n, err := p.Write([]byte(chunk)); err != nil || n != len(chunk) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got := out.String(); got != "hello world" {
		t.Errorf("played %q, want %q", got, "hello world")
	}
}
