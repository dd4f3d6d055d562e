package events

import (
	"strings"
	"testing"
)

func TestTextHygiene(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		nameErr    string // "" = a valid name
		textErr    string // "" = valid free text
		escaped    string
		escapedTxt string
	}{
		{"plain", "sda", "", "", "sda", "sda"},
		{"unicode", "ünïcödé ✓", "", "", "ünïcödé ✓", "ünïcödé ✓"},
		{"CR LF", "evil.service\r\nBcc: x", "U+000D at byte 12", "U+000D at byte 12", `evil.service\r\nBcc: x`, "evil.service\\r\nBcc: x"},
		{"tab and newline", "a\tb\nc", "U+0009 at byte 1", "", `a\tb\nc`, "a\tb\nc"},
		{"ESC", "\x1b[2J", "U+001B", "U+001B", `\x1b[2J`, `\x1b[2J`},
		{"NUL", "a\x00", "U+0000", "U+0000", `a\x00`, `a\x00`},
		{"DEL", "a\x7f", "U+007F", "U+007F", `a\x7f`, `a\x7f`},
		{"C1 NEL", "a\u0085", "U+0085", "U+0085", `a\u0085`, `a\u0085`},
		{"bidi override", "a\u202eb", "U+202E", "U+202E", `a\u202eb`, `a\u202eb`},
		{"bidi isolate", "a\u2066b", "U+2066", "U+2066", `a\u2066b`, `a\u2066b`},
		{"line separator", "a\u2028b", "U+2028", "U+2028", `a\u2028b`, `a\u2028b`},
		{"invalid UTF-8", "a\xffb", "invalid UTF-8 at byte 1", "invalid UTF-8", `a\xffb`, `a\xffb`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				what string
				err  error
				want string
			}{{"CheckName", CheckName(tt.in), tt.nameErr}, {"CheckText", CheckText(tt.in), tt.textErr}} {
				switch {
				case c.want == "" && c.err != nil:
					t.Errorf("%s(%q) = %v, want nil", c.what, tt.in, c.err)
				case c.want != "" && (c.err == nil || !strings.Contains(c.err.Error(), c.want)):
					t.Errorf("%s(%q) = %v, want an error mentioning %q", c.what, tt.in, c.err, c.want)
				}
			}
			if got := Escape(tt.in); got != tt.escaped {
				t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.escaped)
			}
			if got := EscapeText(tt.in); got != tt.escapedTxt {
				t.Errorf("EscapeText(%q) = %q, want %q", tt.in, got, tt.escapedTxt)
			}
			if CheckName(Escape(tt.in)) != nil || CheckText(EscapeText(tt.in)) != nil {
				t.Errorf("escaped %q still carries a control character", tt.in)
			}
		})
	}
}
