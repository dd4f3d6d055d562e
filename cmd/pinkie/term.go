package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
)

// Terminal hygiene. Every command prints through a safeWriter (installed
// once, in main), so no value from an event or a stream can move the
// cursor, clear the screen, retitle the window or reorder a line, whatever
// verb prints it: control characters other than newline and tab are
// written as escapes. Table cells and one-line fields additionally go
// through show, which escapes newline and tab too, so a value cannot fake
// a row or a column.

// show is a value from an event, made safe for one cell or line.
func show(s string) string { return events.Escape(s) }

// safeWriter escapes control characters (events.IsControl) except newline
// and tab: C0 as Go escapes (\r, \x1b), DEL, C1 and the bidi controls as
// \u007f, \u0085, \u202e. The latter form is also a JSON escape of the
// same character, so --json output stays valid JSON with the same meaning
// (encoding/json never writes a raw C0 control). Bytes that are not UTF-8
// pass unchanged: a rune split across two writes arrives whole.
type safeWriter struct{ w io.Writer }

func (s safeWriter) Write(p []byte) (int, error) {
	if !needsEscape(p) {
		return s.w.Write(p)
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
	if _, err := s.w.Write(out); err != nil {
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

// printJSON prints v as indented JSON.
func printJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
}

// printList prints a list a read verb shows: with --json as indented JSON
// (an empty list as []), else the line none when it is empty, else its
// table.
func printList[T any](a *app, asJSON bool, list []T, none string, now time.Time, table func(io.Writer, time.Time, []T) error) error {
	switch {
	case asJSON && list == nil:
		printJSON(a.stdout, []T{})
	case asJSON:
		printJSON(a.stdout, list)
	case len(list) == 0:
		fmt.Fprintln(a.stdout, none)
	default:
		return table(a.stdout, now, list)
	}
	return nil
}

// printLine prints v as one line of JSON with --json, else calls text:
// the verbs that act (pub, deploy, keys, cache) print their result so.
func printLine(a *app, asJSON bool, v any, text func()) error {
	if asJSON {
		return json.NewEncoder(a.stdout).Encode(v)
	}
	text()
	return nil
}

// orDash shows an empty field as "-".
func orDash(s string) string { return fleetview.OrDash(s) }
