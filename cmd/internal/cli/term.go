package cli

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/pinkiefleet/pinkie/events"
)

// Terminal hygiene. Every command prints through a SafeWriter (installed
// once, in main), so no value from an event or a stream can move the
// cursor, clear the screen, retitle the window or reorder a line, whatever
// verb prints it: control characters other than newline and tab are
// written as escapes.

// SafeWriter escapes control characters (events.IsControl) except newline
// and tab: C0 as Go escapes (\r, \x1b), DEL, C1 and the bidi controls as
// \u007f, \u0085, \u202e. The latter form is also a JSON escape of the
// same character, so --json output stays valid JSON with the same meaning
// (encoding/json never writes a raw C0 control). Bytes that are not UTF-8
// pass unchanged: a rune split across two writes arrives whole.
type SafeWriter struct{ W io.Writer }

func (s SafeWriter) Write(p []byte) (int, error) {
	if !needsEscape(p) {
		return s.W.Write(p)
	}
	out := make([]byte, 0, len(p)+16)
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		switch {
		case r == '\n' || r == '\t' || !events.IsControl(r) || (r == utf8.RuneError && size == 1):
			out = append(out, p[i:i+size]...)
		case r < 0x20:
			q := strconv.QuoteRune(r)
			out = append(out, q[1:len(q)-1]...)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += size
	}
	if _, err := s.W.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func needsEscape(p []byte) bool {
	for i := 0; i < len(p); i++ {
		if c := p[i]; (c < 0x20 && c != '\n' && c != '\t') || c >= 0x7f {
			return bytes.ContainsFunc(p, func(r rune) bool { return r != '\n' && r != '\t' && events.IsControl(r) })
		}
	}
	return false
}
