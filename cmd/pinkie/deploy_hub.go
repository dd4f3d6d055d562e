package main

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/pinkiefleet/pinkie/consumers/deploy"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
	"github.com/pinkiefleet/pinkie/streams"
)

// deployHubConfig is the hub config file's "deploy" section.
type deployHubConfig struct {
	// Tick is how often new hosts get their deploy consumer and the folds
	// are flushed (default "2s").
	Tick string `json:"tick,omitempty"`
}

// deployHubService is the hub's deploy service: a consumer on DEPLOY per
// host for its agent's inbox, the planner and the last-deploy projection.
func deployHubService(raw json.RawMessage) (streams.HubService, error) {
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
	return streams.DeployHubService{Tick: tick, Folds: []streams.DeployFold{
		&deployPlannerFold{p: deploy.NewPlanner()},
		&deployLastFold{p: lastdeploy.New()},
	}}, nil
}

type deployPlannerFold struct{ p *deploy.Planner }

func (f *deployPlannerFold) Name() string   { return "deploy-planner" }
func (f *deployPlannerFold) Bucket() string { return "" }
func (f *deployPlannerFold) Apply(s streams.DeployStored) {
	host, _, _ := events.HostFromSubject(s.Subject)
	f.p.Apply(host, s.Event, s.Kind.Name, s.Data)
}
func (f *deployPlannerFold) Flush(now time.Time) streams.DeployOutput {
	return streams.DeployOutput{Publish: f.p.Orders(now)}
}

type deployLastFold struct{ p *lastdeploy.Projection }

func (f *deployLastFold) Name() string   { return "last-deploy" }
func (f *deployLastFold) Bucket() string { return lastdeploy.Bucket }
func (f *deployLastFold) Apply(s streams.DeployStored) {
	host, _, _ := events.HostFromSubject(s.Subject)
	f.p.Apply(host, s.Seq, s.Event, s.Kind.Name, s.Data)
}
func (f *deployLastFold) Flush(time.Time) streams.DeployOutput {
	return streams.DeployOutput{KV: f.p.Changed()}
}
