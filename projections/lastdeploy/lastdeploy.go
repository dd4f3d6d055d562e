// Package lastdeploy is the last-deploy projection: a pure fold over the
// DEPLOY stream that keeps, per host, the last successful activation and
// the outcome of the last attempt. The hub writes each host's record to
// the KV bucket pinkie-last-deploy (nats kv get pinkie-last-deploy HOST);
// pinkie last-deploy and its CI job read it.
package lastdeploy

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// Bucket is the KV bucket the records live in.
const Bucket = events.BucketLastDeploy

// Record is one host's deploy state.
type Record struct {
	Host        string   `json:"host"`
	LastSuccess *Success `json:"last_success,omitempty"`
	LastAttempt *Attempt `json:"last_attempt,omitempty"`
	// Seq is the DEPLOY sequence of the last event that changed the record.
	Seq uint64 `json:"seq"`
}

// Success is the last activation that succeeded.
type Success struct {
	RequestID   string    `json:"request_id"`
	Time        time.Time `json:"time"`
	StorePath   string    `json:"store_path"`
	Flake       string    `json:"flake,omitempty"`
	Revision    string    `json:"revision,omitempty"`
	Goal        string    `json:"goal"`
	RequestedBy string    `json:"requested_by,omitempty"`
	BuildOn     string    `json:"build_on,omitempty"`
	// DurationSeconds is the activation's; TotalSeconds from request to
	// activated.
	DurationSeconds float64 `json:"duration_seconds"`
	TotalSeconds    float64 `json:"total_seconds,omitempty"`
}

// Outcomes of an attempt.
const (
	InProgress = "in-progress"
	Succeeded  = "succeeded"
	Failed     = "failed"
	Skipped    = "skipped"
)

// Attempt is the latest request and how far it got.
type Attempt struct {
	RequestID   string    `json:"request_id"`
	RequestedAt time.Time `json:"requested_at"`
	RequestedBy string    `json:"requested_by,omitempty"`
	Goal        string    `json:"goal,omitempty"`
	BuildOn     string    `json:"build_on,omitempty"`
	Revision    string    `json:"revision,omitempty"`
	StorePath   string    `json:"store_path,omitempty"`
	// Phase is the last phase seen ("requested", "built", "activated"…).
	Phase     string    `json:"phase"`
	PhaseTime time.Time `json:"phase_time"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason,omitempty"`
	Log       []string  `json:"log,omitempty"`
}

// Projection folds DEPLOY events into records.
type Projection struct {
	records  map[string]*Record
	requests map[string]request
	dirty    map[string]bool
}

type request struct {
	host, buildOn string
	at            time.Time
}

// New returns an empty projection.
func New() *Projection {
	return &Projection{records: map[string]*Record{}, requests: map[string]request{}, dirty: map[string]bool{}}
}

// Apply folds one event of DEPLOY at seq; subjectHost is its subject's
// host token (for an agent's phase, the host that sent it).
func (p *Projection) Apply(subjectHost string, seq uint64, e events.Event, kind string, data any) {
	switch d := data.(type) {
	case *events.DeployRequested:
		if kind != "deploy.requested" || d.Host != subjectHost {
			return
		}
		buildOn := d.BuildOn
		if buildOn == "" {
			buildOn = "target"
			if d.StorePath != "" {
				buildOn = "local"
			}
		}
		goal := d.Goal
		if goal == "" {
			goal = "switch"
		}
		p.requests[e.ID()] = request{host: d.Host, buildOn: buildOn, at: e.Time().UTC()}
		r := p.record(d.Host)
		r.LastAttempt = &Attempt{RequestID: e.ID(), RequestedAt: e.Time().UTC(), RequestedBy: d.RequestedBy, Goal: goal,
			BuildOn: buildOn, Revision: d.Revision, StorePath: d.StorePath, Phase: "requested", PhaseTime: e.Time().UTC(), Outcome: InProgress}
		p.touch(r, seq)
	case *events.DeployPhase:
		phase, ok := events.DeployPhaseOf(kind)
		if !ok {
			return
		}
		req, known := p.requests[d.RequestID]
		// The target reports its own phases; a builder's build phases
		// count only when the request named it as the builder.
		switch {
		case subjectHost == d.Host:
		case known && req.host == d.Host && req.buildOn == subjectHost && (phase == "build.started" || phase == "built" || phase == "build.failed"):
		default:
			return
		}
		r := p.record(d.Host)
		t := e.Time().UTC()
		if phase == "activated" && (r.LastSuccess == nil || !t.Before(r.LastSuccess.Time)) {
			s := &Success{RequestID: d.RequestID, Time: t, StorePath: d.StorePath, Flake: d.Flake, Revision: d.Revision,
				Goal: d.Goal, RequestedBy: d.RequestedBy, BuildOn: d.BuildOn, DurationSeconds: d.DurationSeconds}
			if d.RequestedAt != nil {
				s.TotalSeconds = t.Sub(*d.RequestedAt).Seconds()
			}
			r.LastSuccess = s
		}
		a := r.LastAttempt
		if a == nil || a.RequestID != d.RequestID {
			if a != nil && known && req.at.Before(a.RequestedAt) {
				// A late phase of an older request (a skip of a
				// superseded one) does not replace the newer attempt.
				p.touch(r, seq)
				return
			}
			a = &Attempt{RequestID: d.RequestID, RequestedBy: d.RequestedBy, Goal: d.Goal, BuildOn: d.BuildOn, Revision: d.Revision}
			if d.RequestedAt != nil {
				a.RequestedAt = d.RequestedAt.UTC()
			}
			r.LastAttempt = a
		}
		a.Phase, a.PhaseTime, a.Reason, a.Log = phase, t, d.Reason, d.Log
		if d.StorePath != "" {
			a.StorePath = d.StorePath
		}
		switch phase {
		case "activated":
			a.Outcome = Succeeded
		case "failed", "rolledback", "build.failed":
			a.Outcome = Failed
		case "skipped":
			a.Outcome = Skipped
		default:
			a.Outcome = InProgress
		}
		p.touch(r, seq)
	}
}

func (p *Projection) record(host string) *Record {
	r := p.records[host]
	if r == nil {
		r = &Record{Host: host}
		p.records[host] = r
	}
	return r
}

func (p *Projection) touch(r *Record, seq uint64) {
	r.Seq = seq
	p.dirty[r.Host] = true
}

// Records returns every host's record, sorted by host.
func (p *Projection) Records() []Record {
	out := make([]Record, 0, len(p.records))
	for _, r := range p.records {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

// Changed returns the JSON of the records changed since the last call,
// keyed by host, and forgets them.
func (p *Projection) Changed() map[string][]byte {
	out := map[string][]byte{}
	for h := range p.dirty {
		b, err := json.Marshal(p.records[h])
		if err == nil {
			out[h] = b
		}
	}
	p.dirty = map[string]bool{}
	return out
}
