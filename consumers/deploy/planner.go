package deploy

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
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
	dirty    map[string]bool   // request ids changed since the last Flush
}

type plannedRequest struct {
	job            events.DeployPhase
	buildOrdered   bool
	built          *events.DeployPhase
	activateIssued bool
	// first is the DEPLOY sequence the request was first seen at (its
	// place in order), seq the one it was last requested at (which
	// request is a host's latest).
	first, seq uint64
}

// NewPlanner returns an empty planner.
func NewPlanner() *Planner {
	return &Planner{requests: map[string]*plannedRequest{}, latest: map[string]string{}, dirty: map[string]bool{}}
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
		first := s.Seq
		if old, seen := p.requests[job.RequestID]; !seen {
			p.order = append(p.order, job.RequestID)
		} else {
			first = old.first
		}
		p.requests[job.RequestID] = &plannedRequest{job: job, first: first, seq: s.Seq}
		p.latest[d.Host] = job.RequestID
		p.dirty[job.RequestID] = true
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
		default:
			return
		}
		p.dirty[d.RequestID] = true
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
				p.dirty[id] = true
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
				p.dirty[id] = true
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
// time it has caught up with DEPLOY, and publishes the orders then due.
// The runner checkpoints it in its bucket (events.BucketDeployPlanner), one
// key per request (RequestKeyPrefix): Flush returns the requests changed
// since the last Flush, Load restores them. The orders it issued are
// recorded in both the bucket and DEPLOY, so a restart, from the
// checkpoint or from the start, issues none twice.
func (p *Planner) Fold() events.Fold { return plannerFold{p} }

// RequestKeyPrefix begins the key of each request in the planner's bucket,
// followed by a digest of the request id (ids need not be valid keys).
const RequestKeyPrefix = "request."

// storedRequest is a request as its key holds it.
type storedRequest struct {
	Job            events.DeployPhase  `json:"job"`
	BuildOrdered   bool                `json:"build_ordered,omitempty"`
	Built          *events.DeployPhase `json:"built,omitempty"`
	ActivateIssued bool                `json:"activate_issued,omitempty"`
	First          uint64              `json:"first"`
	Seq            uint64              `json:"seq"`
}

func plannerKey(id string) string {
	return RequestKeyPrefix + events.DeterministicID("deploy-planner-request", id)
}

type plannerFold struct{ p *Planner }

func (f plannerFold) Apply(s events.Stored) []events.Output { f.p.Apply(s); return nil }
func (f plannerFold) Tick(now time.Time) []events.Output    { return f.p.orders(now) }

func (f plannerFold) Flush() (map[string][]byte, error) {
	out := map[string][]byte{}
	for id := range f.p.dirty {
		r := f.p.requests[id]
		b, err := json.Marshal(storedRequest{Job: r.job, BuildOrdered: r.buildOrdered, Built: r.built, ActivateIssued: r.activateIssued, First: r.first, Seq: r.seq})
		if err != nil {
			return nil, fmt.Errorf("deploy planner: request %s: %w", id, err)
		}
		out[plannerKey(id)] = b
	}
	f.p.dirty = map[string]bool{}
	return out, nil
}

// Load restores one request; the order of requests and each host's latest
// follow from the sequences they were seen at.
func (f plannerFold) Load(key string, value []byte) error {
	if !strings.HasPrefix(key, RequestKeyPrefix) {
		return nil
	}
	var sr storedRequest
	if err := json.Unmarshal(value, &sr); err != nil {
		return fmt.Errorf("deploy planner: request %s: %w", key, err)
	}
	p, id := f.p, sr.Job.RequestID
	r := &plannedRequest{job: sr.Job, buildOrdered: sr.BuildOrdered, built: sr.Built, activateIssued: sr.ActivateIssued, first: sr.First, seq: sr.Seq}
	if _, seen := p.requests[id]; !seen {
		// Keys load in any order: insert by first sequence.
		i := sort.Search(len(p.order), func(i int) bool { return p.requests[p.order[i]].first > r.first })
		p.order = slices.Insert(p.order, i, id)
	}
	p.requests[id] = r
	if cur, ok := p.requests[p.latest[r.job.Host]]; !ok || cur.seq <= r.seq {
		p.latest[r.job.Host] = id
	}
	return nil
}
