package main

import (
	"time"

	"github.com/pinkiefleet/pinkie/consumers/ingest"
	"github.com/pinkiefleet/pinkie/streams"
)

// ingestCheck is the hub's check of every event an agent sends (package
// consumers/ingest), on what the running hub knows (HubOptions.IngestCheck).
func ingestCheck(env streams.IngestCheckEnv) streams.IngestCheck {
	return &ingest.Checker{Schemas: env.Schemas, MaxSize: env.MaxEventBytes, Known: env.Known, Orders: env.Orders, Now: time.Now}
}
