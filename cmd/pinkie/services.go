package main

import (
	"bytes"
	"encoding/json"
	"log/slog"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/streams"
)

// hubConfig is the hub's configuration file (--config, JSON). Each section
// belongs to one part of the hub and is decoded strictly by it; an unknown
// top-level key is an error naming it.
type hubConfig struct {
	// Alerts configures the alerter: user rules, repeat interval.
	Alerts json.RawMessage `json:"alerts,omitempty"`
	// Notify configures the notifier's channels (ntfy, Matrix, email).
	Notify json.RawMessage `json:"notify,omitempty"`
	// Deploy configures the deploy planner and the last-deploy record.
	Deploy json.RawMessage `json:"deploy,omitempty"`
	// Dashboard configures the web dashboard and its login.
	Dashboard json.RawMessage `json:"dashboard,omitempty"`
	// rebuildProjections is hub --rebuild-projections: replay the
	// projections' streams from the start into emptied buckets.
	rebuildProjections bool
}

func loadHubConfig(path string) (hubConfig, error) {
	var c hubConfig
	if path == "" {
		return c, nil
	}
	b, err := bounded.ReadPath(path, cli.MaxConfigFile)
	if err != nil {
		return c, cli.Usagef("--config: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, cli.Usagef("--config %s: %v (known sections: alerts, notify, deploy, dashboard)", path, err)
	}
	return c, nil
}

// hubServices builds the consumers the hub runs (projections, alerter,
// notifier, deploy planner) from its configuration. One line per service.
func hubServices(cfg hubConfig, log *slog.Logger) ([]streams.HubService, error) {
	s, err := deployHubServices(cfg.Deploy, log)
	if err != nil {
		return nil, err
	}
	alertSvcs, err := alertHubServices(cfg, log)
	if err != nil {
		return nil, err
	}
	s = append(s, alertSvcs...)
	return s, nil
}

// errConfig wraps a configuration error of one section.
func errConfig(section string, err error) error {
	return cli.Usagef("--config: %s: %v", section, err)
}
