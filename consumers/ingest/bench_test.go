package ingest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// BenchmarkCheck is the hub's whole per-event decision on the golden
// examples of the agent kinds that are sent most.
func BenchmarkCheck(b *testing.B) {
	set, err := schemas.Load()
	if err != nil {
		b.Fatal(err)
	}
	c := &Checker{Schemas: set, MaxSize: events.MaxSize}
	withClock(c)
	for _, kind := range []string{"heartbeat", "systemd", "profile", "smart"} {
		payload, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", kind+".v1.json"))
		if err != nil {
			b.Fatal(err)
		}
		m := Message{Subject: "pinkie.ingest.goliath." + kind + ".x",
			StreamSource: "OUTBOX:abc:C=def 17 evt.> pinkie.ingest.goliath.> evt." + kind + ".x ident", Payload: payload}
		b.Run(kind, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if d := c.Check(m); !d.Accepted() {
					b.Fatal(d.Reason)
				}
			}
		})
	}
}

func withClock(c *Checker) {
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	c.Now = func() time.Time { return now }
}
