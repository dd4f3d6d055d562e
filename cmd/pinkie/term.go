package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
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
