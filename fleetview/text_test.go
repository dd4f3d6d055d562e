package fleetview

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
)

// Every table prints its header and one line per row, whatever a value
// from an event holds: a line break or a tab is shown escaped, so it
// cannot fake a row or a column.
func TestTextTables(t *testing.T) {
	const bad = "web\n1\tx"
	at := now.Add(-time.Hour)
	for _, tc := range []struct {
		name   string
		write  func(io.Writer) error
		header string
		lines  int
		has    []string
	}{
		{"guests", func(w io.Writer) error {
			return WriteGuests(w, now, []GuestView{{GuestRecord: projections.GuestRecord{Host: "goliath", Name: bad, Time: at,
				Guest: events.Guest{Type: "container", MemoryBytes: 1 << 20, MemoryMaxBytes: 4 << 20, MemoryPercent: 25, Restarts: 2}}, Status: "running", Stale: true}})
		}, "HOST     GUEST", 2, []string{`web\n1\tx`, "1.0 MiB (25%)", "running (2 restarts)", "1h00m ago (stale)"}},
		{"silences", func(w io.Writer) error {
			return WriteSilences(w, now, []Silence{{SilenceAdded: events.SilenceAdded{ID: "ab12", Matchers: map[string]string{"host": "goliath"}, EndsAt: now.Add(2 * time.Hour), Comment: bad}, Silencing: 3}})
		}, "ID    MATCHERS", 2, []string{"ab12", "host=goliath", `web\n1\tx`, "  3  ", "  -  "}},
		{"last deploys", func(w io.Writer) error {
			return WriteLastDeploys(w, now, []LastDeploy{
				{Host: "goliath", Status: "ok", Record: &lastdeploy.Record{LastSuccess: &lastdeploy.Success{Time: at, Revision: "0123456789abcdef"}}},
				{Host: "koishi", Status: "never"},
			})
		}, "HOST     STATUS", 3, []string{"0123456789ab ", "koishi   never"}},
		{"deploy plan", func(w io.Writer) error {
			return WriteDeployPlan(w, Deploy{Flake: "/infra", Hosts: []DeployHost{{Host: "goliath", BuildOn: "local", Goal: bad}}})
		}, "flake /infra", 5, []string{"(no revision: dirty or not a git tree)", "HOST     BUILD ON", `web\n1\tx`}},
		{"deploy outcomes", func(w io.Writer) error {
			return WriteDeployOutcomes(w, Deploy{Hosts: []DeployHost{{Host: "goliath", Outcome: "failed", Reason: bad}}})
		}, "\nHOST     OUTCOME", 3, []string{`web\n1\tx`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.write(&b); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if !strings.HasPrefix(out, tc.header) || strings.Count(out, "\n") != tc.lines {
				t.Errorf("want %d lines starting %q:\n%s", tc.lines, tc.header, out)
			}
			for _, s := range tc.has {
				if !strings.Contains(out, s) {
					t.Errorf("no %q in:\n%s", s, out)
				}
			}
		})
	}
}
