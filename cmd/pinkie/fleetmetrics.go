package main

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/fleetmetrics"
	"github.com/pinkiefleet/pinkie/streams"
)

// fleetMetricsSetup builds /metrics/fleet: the handler, and the hub service
// that binds its store to the hub's JetStream on every node.
func fleetMetricsSetup(log *slog.Logger) (http.Handler, streams.HubService) {
	svc := &fleetMetricsService{store: streams.NewHubStore()}
	return fleetmetrics.Handler(svc.store, time.Now, log), svc
}

// fleetMetricsService binds the store once the hub runs.
type fleetMetricsService struct {
	store *streams.HubStore
	once  sync.Once
}

func (*fleetMetricsService) Name() string    { return "fleet-metrics" }
func (*fleetMetricsService) EveryNode() bool { return true }

func (f *fleetMetricsService) Run(ctx context.Context, h *streams.Hub) error {
	f.once.Do(func() { f.store.Bind(h) })
	<-ctx.Done()
	return nil
}
