package events

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Text hygiene: what an event's strings may contain, and how a string
// from an event is shown where a control character would do harm (a
// terminal, a mail header). The hub refuses events whose names carry
// control characters; printers escape them anyway, for events stored
// before the rule and for values that never went through the hub.

// IsControl reports whether r must not appear in a name: C0 controls,
// DEL, C1 controls, the Unicode line and paragraph separators, and the
// bidirectional formatting characters that reorder what a reader sees
// (the "Trojan Source" characters, CVE-2021-42574).
func IsControl(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r < 0x061c:
		return false
	}
	switch r {
	case 0x061c, 0x200e, 0x200f, 0x2028, 0x2029,
		0x202a, 0x202b, 0x202c, 0x202d, 0x202e,
		0x2066, 0x2067, 0x2068, 0x2069:
		return true
	}
	return false
}

// isTextControl is IsControl except for tab and newline, which free text
// (logs, reasons, descriptions) may carry.
func isTextControl(r rune) bool { return r != '\t' && r != '\n' && IsControl(r) }

// CheckName returns an error naming the first control character in s
// (see IsControl) and its byte offset, or nil. Names are host names,
// objects, units, devices, users, paths: anything printed as one token.
func CheckName(s string) error { return check(s, IsControl) }

// CheckText is CheckName for free text: tab and newline are allowed.
func CheckText(s string) error { return check(s, isTextControl) }

func check(s string, bad func(rune) bool) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("invalid UTF-8 at byte %d", i)
		}
		if bad(r) {
			return fmt.Errorf("control character %U at byte %d", r, i)
		}
		i += size
	}
	return nil
}

// Escape returns s with every control character (IsControl) and every
// invalid UTF-8 byte written as a Go escape (\r, \x1b, \u202e), for
// printing a name on a terminal or into a one-line header. Everything
// else is kept as it is, so ordinary values print unchanged.
func Escape(s string) string { return escape(s, IsControl) }

// EscapeText is Escape for multi-line text: tab and newline are kept.
func EscapeText(s string) string { return escape(s, isTextControl) }

func escape(s string, bad func(rune) bool) string {
	if check(s, bad) == nil {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case bad(r):
			q := strconv.QuoteRune(r) // '\r', '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
