package main

import (
	"log/slog"

	"github.com/pinkiefleet/pinkie/cmd/pinkie/notifyhub"
	"github.com/pinkiefleet/pinkie/consumers/alerter"
	"github.com/pinkiefleet/pinkie/consumers/notifier"
	"github.com/pinkiefleet/pinkie/streams"
)

// alertHubServices builds the projector (one service per projection), the
// alerter and, when channels are configured, the notifier from the hub
// configuration's "alerts" and "notify" sections.
func alertHubServices(cfg hubConfig, log *slog.Logger) ([]streams.HubService, error) {
	ac, err := alerter.ParseConfig(cfg.Alerts)
	if err != nil {
		return nil, errConfig("alerts", err)
	}
	al, err := streams.AlerterService(streams.AlerterOptions{Config: ac, Log: log})
	if err != nil {
		return nil, errConfig("alerts", err)
	}
	s := append(streams.ProjectorServices(cfg.rebuildProjections, log), al)
	nc, chans, err := notifier.ParseConfig(cfg.Notify)
	if err != nil {
		return nil, errConfig("notify", err)
	}
	if len(chans) > 0 {
		s = append(s, notifyhub.Service(nc, chans, log))
	}
	return s, nil
}
