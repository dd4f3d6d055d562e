package main

import (
	"log/slog"
	"time"

	"github.com/pinkiefleet/pinkie/consumers/alerter"
	"github.com/pinkiefleet/pinkie/consumers/deploy"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
	"github.com/pinkiefleet/pinkie/streams"
)

// The hub's folds, each run by streams.FoldService: the projections, the
// alerter, the deploy planner and last-deploy.

// projectorServices returns one fold service per projection (inventory,
// drives, alerts, guests). With rebuild, each purges its bucket on its
// first run and replays its streams from the start.
func projectorServices(rebuild bool, log *slog.Logger) []streams.HubService {
	var out []streams.HubService
	for i, p := range projections.All() {
		var sources []streams.FoldSource
		for _, src := range p.Sources() {
			sources = append(sources, streams.FoldSource{Stream: src.Stream, Subjects: []string{src.Subject}})
		}
		out = append(out, streams.FoldService(streams.FoldOptions{
			Name: "projector-" + p.Name(), Bucket: p.Bucket(), Sources: streams.GroupFoldSources(sources), Rebuild: rebuild, Log: log,
			// Each run starts from a fresh projection restored from the
			// bucket.
			New: func() (events.Fold, error) { return projections.Fold(projections.All()[i]), nil },
		}))
	}
	return out
}

// alerterService returns the alerter: it reads HOSTS, DEPLOY, silences and
// the fleet declaration (declared services), and publishes alerts on
// pinkie.alert.<host>.<rule>.
func alerterService(c alerter.Config, log *slog.Logger) (streams.HubService, error) {
	rules, err := c.Compile()
	if err != nil {
		return nil, err
	}
	every, grace := c.Schedule()
	opts := c.Options()
	return streams.FoldService(streams.FoldOptions{
		Name: "alerter", Bucket: streams.AlerterBucket, Log: log, TickEvery: every, TickGrace: grace,
		Sources: []streams.FoldSource{{Stream: streams.HostsStream, Subjects: []string{events.HostSubjects}}, {Stream: streams.DeployStream, Subjects: []string{events.DeploySubjects}},
			{Stream: streams.AlertLogStream, Subjects: []string{events.SilenceSubjects}}, {Stream: streams.FleetStream, Subjects: []string{events.FleetDeclaredSubject}}},
		// Rules are compiled once; each run starts from a fresh engine
		// restored from the bucket.
		New: func() (events.Fold, error) {
			return alerter.NewEngine(append([]alerter.Rule(nil), rules...), opts).Fold(), nil
		},
	}), nil
}

// deployFoldServices returns the folds over DEPLOY: the deploy planner
// (orders to builder hosts and back) and the last-deploy projection. Both
// are checkpointed like the projections and resume after their checkpoint;
// a bucket without one (a hub upgraded from when they replayed DEPLOY at
// every start) is rebuilt once from the start of DEPLOY. The planner ticks
// each time it has caught up, and then every tick.
func deployFoldServices(tick time.Duration, log *slog.Logger) []streams.HubService {
	return deployFoldServicesWith(tick, log, func(_ string, f events.Fold) events.Fold { return f })
}

// deployFoldServicesWith is deployFoldServices with each fold passed
// through wrap with its service's name (a test's observer).
func deployFoldServicesWith(tick time.Duration, log *slog.Logger, wrap func(name string, f events.Fold) events.Fold) []streams.HubService {
	deployStream := []streams.FoldSource{{Stream: streams.DeployStream}}
	return []streams.HubService{
		streams.FoldService(streams.FoldOptions{
			Name: "deploy-planner", Bucket: events.BucketDeployPlanner, Sources: deployStream, TickOnCatchUp: true, Validate: true, TickEvery: tick, Log: log,
			New: func() (events.Fold, error) { return wrap("deploy-planner", deploy.NewPlanner().Fold()), nil },
		}),
		streams.FoldService(streams.FoldOptions{
			Name: "last-deploy", Bucket: lastdeploy.Bucket, Sources: deployStream, Validate: true, Log: log,
			New: func() (events.Fold, error) { return wrap("last-deploy", lastdeploy.New().Fold()), nil },
		}),
	}
}
