package ingest

import (
	"fmt"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// MaxFuture is how far ahead of the hub's clock an event's time may be:
// room for clocks that disagree a little, not for an event from next year
// that would sort after everything and read as "last seen in -292 years".
const MaxFuture = 5 * time.Minute

// hygiene checks what a schema cannot: the event's time against the
// hub's clock (Checker.Now). The rest of output hygiene — UTF-8, repeated
// keys, numbers that fit their Go type, control characters in names — is
// the schemas' (schemas/hygiene.go), so agents apply it before sending.
func (c *Checker) hygiene(e events.Event) string {
	if c.Now == nil {
		return ""
	}
	now := c.Now()
	if t := e.Time(); t.After(now.Add(MaxFuture)) {
		return fmt.Sprintf("event time %s is ahead of the hub's clock (%s) by more than %s",
			t.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339), MaxFuture)
	}
	return ""
}
