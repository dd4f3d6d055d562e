package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

// deployHubConfig is the hub config file's "deploy" section.
type deployHubConfig struct {
	// Tick is how often new hosts get their deploy consumer and the folds
	// over DEPLOY are ticked (default "2s").
	Tick string `json:"tick,omitempty"`
}

// deployHubServices are the hub's deploy services: a consumer on DEPLOY per
// host for its agent's inbox, the planner and the last-deploy projection.
func deployHubServices(raw json.RawMessage, log *slog.Logger) ([]streams.HubService, error) {
	var c deployHubConfig
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, errConfig("deploy", err)
		}
	}
	tick := 2 * time.Second
	if c.Tick != "" {
		d, err := time.ParseDuration(c.Tick)
		if err != nil || d <= 0 {
			return nil, errConfig("deploy", err)
		}
		tick = d
	}
	return append([]streams.HubService{streams.DeployHubService{Tick: tick}}, deployFoldServices(tick, log)...), nil
}
