package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/cmd/pinkie/notifyhub"
	"github.com/pinkiefleet/pinkie/consumers/alerter"
	"github.com/pinkiefleet/pinkie/consumers/ingest"
	"github.com/pinkiefleet/pinkie/consumers/notifier"
	"github.com/pinkiefleet/pinkie/fleetmetrics"
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
	if err := decodeStrict(b, &c); err != nil {
		return c, cli.Usagef("--config %s: %v (known sections: alerts, notify, deploy, dashboard)", path, err)
	}
	return c, nil
}

// decodeStrict decodes JSON refusing unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// errConfig wraps a configuration error of one section.
func errConfig(section string, err error) error {
	return cli.Usagef("--config: %s: %v", section, err)
}

// withHubParts completes o with what runs inside a hub besides its
// streams, from the configuration: the ingest check, the services
// (projections, alerter, notifier when channels are configured, deploy
// planner and last-deploy, fleet metrics, dashboard), the dashboard's HTTP
// handler and /metrics/fleet. `pinkie hub` and `pinkie demo` share it;
// the dashboard's one-time login link goes to stderr.
func withHubParts(o streams.HubOptions, cfg hubConfig, stderr io.Writer) (streams.HubOptions, error) {
	log := o.Log
	o.Version, o.IngestCheck = version, ingestCheck
	tick, err := deployTick(cfg.Deploy)
	if err != nil {
		return o, err
	}
	o.Services = append([]streams.HubService{streams.DeployHubService{Tick: tick}}, deployFoldServices(tick, log)...)
	ac, err := alerter.ParseConfig(cfg.Alerts)
	if err != nil {
		return o, errConfig("alerts", err)
	}
	al, err := alerterService(ac, log)
	if err != nil {
		return o, errConfig("alerts", err)
	}
	o.Services = append(append(o.Services, projectorServices(cfg.rebuildProjections, log)...), al)
	nc, chans, err := notifier.ParseConfig(cfg.Notify)
	if err != nil {
		return o, errConfig("notify", err)
	}
	if len(chans) > 0 {
		o.Services = append(o.Services, notifyhub.Service(nc, chans, log))
	}
	fleetStore := streams.NewHubStore()
	o.FleetMetrics = fleetmetrics.Handler(fleetStore, time.Now, log)
	o.Services = append(o.Services, &storeService{name: "fleet-metrics", store: fleetStore})
	dash, dashSvc, err := dashboardSetup(cfg.Dashboard, o.HTTPAddr, log, stderr)
	if err != nil {
		return o, err
	}
	if dash != nil {
		o.Services, o.HTTPHandler = append(o.Services, dashSvc), dash
	}
	return o, nil
}

// deployTick reads the config's "deploy" section: how often new hosts get
// their deploy consumer and the folds over DEPLOY are ticked ("tick",
// default 2s).
func deployTick(raw json.RawMessage) (time.Duration, error) {
	var c struct {
		Tick string `json:"tick,omitempty"`
	}
	if len(raw) > 0 {
		if err := decodeStrict(raw, &c); err != nil {
			return 0, errConfig("deploy", err)
		}
	}
	if c.Tick == "" {
		return 2 * time.Second, nil
	}
	d, err := time.ParseDuration(c.Tick)
	if err != nil || d <= 0 {
		return 0, errConfig("deploy", err)
	}
	return d, nil
}

// ingestCheck is the hub's check of every event an agent sends (package
// consumers/ingest), on what the running hub knows (HubOptions.IngestCheck).
func ingestCheck(env streams.IngestCheckEnv) streams.IngestCheck {
	return &ingest.Checker{Schemas: env.Schemas, MaxSize: env.MaxEventBytes, Known: env.Known, Orders: env.Orders, Now: time.Now}
}

// storeService binds a HubStore to the running hub, on every node of a
// cluster, once; then bound runs (if set), then run until the hub stops
// (restarted by the hub if it fails; nil: nothing to run).
type storeService struct {
	name  string
	store *streams.HubStore
	bound func(*streams.Hub)
	run   func(context.Context) error
	once  sync.Once
}

func (s *storeService) Name() string  { return s.name }
func (*storeService) EveryNode() bool { return true }

func (s *storeService) Run(ctx context.Context, h *streams.Hub) error {
	s.once.Do(func() {
		s.store.Bind(h)
		if s.bound != nil {
			s.bound(h)
		}
	})
	if s.run == nil {
		<-ctx.Done()
		return nil
	}
	return s.run(ctx)
}

// maxSecretFile bounds the secrets the dashboard reads whole (session
// keys, client secrets: bytes): far above real ones, far below what would
// hurt (a wrong path such as /dev/zero is an error).
const maxSecretFile = 64 * bounded.KiB
