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
		m := sourcedMessage("goliath", kind+".x", payload)
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

// sourcedMessage is host's event on evt.<kindPath> as INGEST holds it
// after the hub's source stamped it.
func sourcedMessage(host, kindPath string, payload []byte) events.IngestMessage {
	h := map[string][]string{events.HeaderStreamSource: {"OUTBOX:abc:C=def 17 > pinkie.ingest." + host + ".> evt." + kindPath + " ident"}}
	return events.IngestMessage{Subject: "pinkie.ingest." + host + ".evt." + kindPath, Seq: 17, Header: h, HeaderSize: HeaderBlockSize(h), Payload: payload}
}
