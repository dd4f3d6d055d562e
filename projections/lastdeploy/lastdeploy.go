// Package lastdeploy is the last-deploy projection: a pure fold over the
// DEPLOY stream that keeps, per host, the last successful activation and
// the outcome of the last attempt. The hub writes each host's record to
// the KV bucket pinkie-last-deploy (nats kv get pinkie-last-deploy HOST);
// pinkie last-deploy and its CI job read it.
//
// The bucket also holds the fold's own keys, which readers skip
// (events.IsStateKey): its checkpoint (events.CheckpointKey) and one key per
// deploy request it has seen (RequestKeyPrefix), which it needs to judge a
// builder's phases after a restart.
package lastdeploy

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
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
	// newRequests are the request ids seen since the last Flush.
	newRequests map[string]bool
}

type request struct {
	host, buildOn string
	at            time.Time
}

// RequestKeyPrefix begins the key of each request the fold keeps in its
// bucket, followed by a digest of the request id (ids need not be valid
// keys). It begins with events.StateKeyPrefix, so readers skip it.
const RequestKeyPrefix = events.StateKeyPrefix + "request."

// storedRequest is a request as its key holds it.
type storedRequest struct {
	ID      string    `json:"id"`
	Host    string    `json:"host"`
	BuildOn string    `json:"build_on"`
	At      time.Time `json:"at"`
}

func requestKey(id string) string {
	return RequestKeyPrefix + events.DeterministicID("last-deploy-request", id)
}

// New returns an empty projection.
func New() *Projection {
	return &Projection{records: map[string]*Record{}, requests: map[string]request{}, dirty: map[string]bool{}, newRequests: map[string]bool{}}
}

// Apply folds one event of DEPLOY in. Its subject's host token is, for an
// agent's phase, the host that sent it (ingest sees to that).
func (p *Projection) Apply(s events.Stored) {
	subjectHost, data, ok := s.Deploy()
	if !ok {
		return
	}
	seq, e, kind := s.Seq, s.Event, s.Kind.Name
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
		p.newRequests[e.ID()] = true
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

// Fold adapts the projection to the fold runner, which checkpoints it:
// Flush returns the changed records and the requests seen since the last
// Flush, Load restores both.
func (p *Projection) Fold() events.Fold { return fold{p} }

type fold struct{ p *Projection }

func (f fold) Apply(s events.Stored) []events.Output { f.p.Apply(s); return nil }
func (fold) Tick(time.Time) []events.Output          { return nil }

func (f fold) Flush() (map[string][]byte, error) {
	out := f.p.Changed()
	for id := range f.p.newRequests {
		r := f.p.requests[id]
		b, err := json.Marshal(storedRequest{ID: id, Host: r.host, BuildOn: r.buildOn, At: r.at})
		if err != nil {
			return nil, fmt.Errorf("last-deploy: request %s: %w", id, err)
		}
		out[requestKey(id)] = b
	}
	f.p.newRequests = map[string]bool{}
	return out, nil
}

func (f fold) Load(key string, value []byte) error {
	switch {
	case strings.HasPrefix(key, RequestKeyPrefix):
		var r storedRequest
		if err := json.Unmarshal(value, &r); err != nil {
			return fmt.Errorf("last-deploy: request %s: %w", key, err)
		}
		f.p.requests[r.ID] = request{host: r.Host, buildOn: r.BuildOn, at: r.At}
	case events.IsStateKey(key):
	default:
		var r Record
		if err := json.Unmarshal(value, &r); err != nil {
			return fmt.Errorf("last-deploy: record %s: %w", key, err)
		}
		f.p.records[key] = &r
	}
	return nil
}
