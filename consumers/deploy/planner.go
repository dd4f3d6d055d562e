package deploy

import (
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// Planner is the hub's part of a deploy built on a builder host: a pure
// fold over the DEPLOY stream. For a request whose build_on names another
// host it orders that host to build (deploy.build.ordered); when that
// builder reports built it hands the store path to the target
// (deploy.activation.ordered). Its own orders are in the stream too, so a
// replay after a restart issues nothing twice.
type Planner struct {
	requests map[string]*plannedRequest
	order    []string
	latest   map[string]string // host → newest request id
}

type plannedRequest struct {
	job            events.DeployPhase
	buildOrdered   bool
	built          *events.DeployPhase
	activateIssued bool
}

// NewPlanner returns an empty planner.
func NewPlanner() *Planner {
	return &Planner{requests: map[string]*plannedRequest{}, latest: map[string]string{}}
}

// Apply folds one DEPLOY event in. The host token of its subject
// (pinkie.deploy.<host>.…) is, by ingest, the host that sent an agent's
// phase.
func (p *Planner) Apply(s events.Stored) {
	subjectHost, data, ok := s.Deploy()
	if !ok {
		return
	}
	e, kind := s.Event, s.Kind.Name
	switch d := data.(type) {
	case *events.DeployRequested:
		if kind != "deploy.requested" || d.Host != subjectHost {
			return
		}
		job := jobFromRequest(e, d, DefaultExpiry)
		if _, seen := p.requests[job.RequestID]; !seen {
			p.order = append(p.order, job.RequestID)
		}
		p.requests[job.RequestID] = &plannedRequest{job: job}
		p.latest[d.Host] = job.RequestID
	case *events.DeployPhase:
		r := p.requests[d.RequestID]
		if r == nil {
			return
		}
		switch kind {
		case "deploy.build.ordered":
			r.buildOrdered = true
		case "deploy.activation.ordered":
			r.activateIssued = true
		case "deploy.built":
			// Only the builder the request named may hand over a build.
			if subjectHost == r.job.BuildOn && d.Host == r.job.Host && d.StorePath != "" {
				b := *d
				r.built = &b
			}
		}
	}
}

// needsBuilder reports whether a request is built on another host.
func needsBuilder(j events.DeployPhase) bool {
	switch j.BuildOn {
	case "", "local", "target", j.Host:
		return false
	}
	return j.StorePath == ""
}

// Orders returns the orders due now, and remembers them as issued.
func (p *Planner) Orders(now time.Time) []events.Event {
	var out []events.Event
	for _, o := range p.orders(now) {
		out = append(out, o.Event)
	}
	return out
}

// orders returns the orders due now with the subjects they go to.
func (p *Planner) orders(now time.Time) []events.Output {
	var out []events.Output
	for _, id := range p.order {
		r := p.requests[id]
		if !needsBuilder(r.job) {
			continue
		}
		if !r.buildOrdered && p.latest[r.job.Host] == id && (r.job.ExpiresAt == nil || now.Before(*r.job.ExpiresAt)) {
			o := r.job
			o.Builder = r.job.BuildOn
			if e, err := orderEvent("deploy.build.ordered", now, &o); err == nil {
				out = append(out, e)
				r.buildOrdered = true
			}
		}
		if r.built != nil && !r.activateIssued {
			o := r.job
			o.Builder, o.StorePath, o.Cache, o.DurationSeconds = r.built.Builder, r.built.StorePath, r.built.Cache, r.built.DurationSeconds
			if o.Builder == "" {
				o.Builder = r.job.BuildOn
			}
			if e, err := orderEvent("deploy.activation.ordered", now, &o); err == nil {
				out = append(out, e)
				r.activateIssued = true
			}
		}
	}
	return out
}

// orderEvent is an order of kind at now, with the subject it goes to.
func orderEvent(kind string, now time.Time, o *events.DeployPhase) (events.Output, error) {
	k, _ := events.Lookup(kind)
	e, err := events.New(k, "hub", "deploy-planner", now, o, events.WithSubject(o.Host),
		events.WithID(events.DeterministicID("deploy-order", o.RequestID, kind)))
	if err != nil {
		return events.Output{}, err
	}
	return events.Output{Subject: k.HubSubject(o), Event: e}, nil
}

// Fold adapts the planner to the fold runner: the runner ticks it each
// time it has caught up with DEPLOY, and publishes the orders then due. It
// is rebuilt from the whole stream at every start (its own orders are in
// it), so it keeps no records.
func (p *Planner) Fold() events.Fold { return plannerFold{p} }

type plannerFold struct{ p *Planner }

func (f plannerFold) Apply(s events.Stored) []events.Output { f.p.Apply(s); return nil }
func (f plannerFold) Tick(now time.Time) []events.Output    { return f.p.orders(now) }
func (plannerFold) Flush() (map[string][]byte, error)       { return nil, nil }
func (plannerFold) Load(string, []byte) error               { return nil }
