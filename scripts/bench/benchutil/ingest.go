package benchutil

import (
	"time"

	"github.com/pinkiefleet/pinkie/consumers/ingest"
	"github.com/pinkiefleet/pinkie/streams"
)

// IngestCheck is the hub's ingest check as `pinkie hub` wires it
// (ingestCheck in cmd/pinkie/hubservices.go), for the benchmarks' embedded hubs.
func IngestCheck(env streams.IngestCheckEnv) streams.IngestCheck {
	return &ingest.Checker{Schemas: env.Schemas, MaxSize: env.MaxEventBytes, Known: env.Known, Orders: env.Orders, Now: time.Now}
}
