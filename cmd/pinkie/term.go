package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/pinkiefleet/pinkie/events"
)

// Terminal hygiene. Every command prints through a cli.SafeWriter (installed
// once, in main), so no value from an event or a stream can move the
// cursor, clear the screen, retitle the window or reorder a line, whatever
// verb prints it: control characters other than newline and tab are
// written as escapes. Table cells and one-line fields additionally go
// through show, which escapes newline and tab too, so a value cannot fake
// a row or a column.

// show is a value from an event, made safe for one cell or line.
func show(s string) string { return events.Escape(s) }

// printJSON prints v as indented JSON.
func printJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
}

// orDash shows an empty field as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
