package streams

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// What the hub's Nix cache must keep (its retention roots), folded from
// the DEPLOY stream: per host, the system it activated last (current) and
// the one before it (previous, plus the generation the agent reported it
// replaced), and the store paths of requests still under way (built or
// requested with a path, not yet activated, failed, skipped or expired),
// so a closure is not collected between its upload and its activation.

// Kept-because tokens of a path in the cache (NixCacheEntry.KeptBecause).
const (
	keptCurrent  = "current"  // current:<host>
	keptPrevious = "previous" // previous:<host>
	keptPending  = "pending"  // pending:<host>: a deploy under way
	keptRecent   = "recent"   // uploaded within the grace window
)

// nixRoots is the fold: pure, fed in DEPLOY order.
type nixRoots struct {
	hosts   map[string]*hostRoots
	pending map[string]*pendingDeploy // by request id
}

type hostRoots struct {
	current, previous string
	// replaced is the generation the agent replaced with current (the
	// activation's previous_path): what a rollback on the host returns to.
	replaced string
}

type pendingDeploy struct {
	host, buildOn string
	paths         []string
	expires       time.Time
}

// defaultRequestExpiry is how long an agent waits for a request that names
// no expiry (consumers/deploy: 24 h after the request).
const defaultRequestExpiry = 24 * time.Hour

func newNixRoots() *nixRoots {
	return &nixRoots{hosts: map[string]*hostRoots{}, pending: map[string]*pendingDeploy{}}
}

// apply folds one DEPLOY event; subjectHost is its subject's host token.
func (r *nixRoots) apply(subjectHost string, e events.Event, kind string, data any) {
	switch d := data.(type) {
	case *events.DeployRequested:
		if kind != "deploy.requested" || d.Host != subjectHost {
			return
		}
		p := &pendingDeploy{host: d.Host, buildOn: d.BuildOn, expires: e.Time().Add(defaultRequestExpiry)}
		if d.ExpiresAt != nil {
			p.expires = *d.ExpiresAt
		}
		if d.StorePath != "" {
			p.paths = append(p.paths, d.StorePath)
		}
		r.pending[e.ID()] = p
	case *events.DeployPhase:
		if kind == "deploy.activation.ordered" {
			// The planner hands the target its builder's path.
			if p := r.pending[d.RequestID]; p != nil && p.host == d.Host && d.StorePath != "" {
				p.paths = append(p.paths, d.StorePath)
			}
			return
		}
		phase, ok := events.DeployPhaseOf(kind)
		if !ok {
			return
		}
		p := r.pending[d.RequestID]
		// A target reports its own phases; a builder its build phases of
		// the requests that named it.
		if subjectHost != d.Host && (p == nil || p.host != d.Host || p.buildOn != subjectHost ||
			(phase != "built" && phase != "build.failed")) {
			return
		}
		switch phase {
		case "built":
			if p != nil && d.StorePath != "" {
				p.paths = append(p.paths, d.StorePath)
			}
		case "activated":
			delete(r.pending, d.RequestID)
			if d.StorePath == "" {
				return
			}
			h := r.hosts[d.Host]
			if h == nil {
				h = &hostRoots{}
				r.hosts[d.Host] = h
			}
			if h.current != d.StorePath {
				h.previous, h.current = h.current, d.StorePath
			}
			h.replaced = d.PreviousPath
		case "failed", "rolledback", "skipped", "build.failed":
			delete(r.pending, d.RequestID)
		}
	}
}

// roots returns every store path to keep with why, at now (pending
// deploys past their expiry no longer count).
func (r *nixRoots) roots(now time.Time) map[string][]string {
	out := map[string][]string{}
	add := func(path, why string) {
		if path != "" {
			out[path] = append(out[path], why)
		}
	}
	for host, h := range r.hosts {
		add(h.current, keptCurrent+":"+host)
		add(h.previous, keptPrevious+":"+host)
		if h.replaced != h.previous && h.replaced != h.current {
			add(h.replaced, keptPrevious+":"+host)
		}
	}
	for _, p := range r.pending {
		if now.After(p.expires) {
			continue
		}
		for _, path := range p.paths {
			add(path, keptPending+":"+p.host)
		}
	}
	for path := range out {
		sort.Strings(out[path])
		out[path] = dedupStrings(out[path])
	}
	return out
}

func dedupStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// deployRootsFilter are the DEPLOY subjects the roots need.
func deployRootsFilter() []string {
	f := []string{events.DeploySubject("*", "requested"), events.DeploySubject("*", "activation.ordered")}
	for _, p := range []string{"built", "build.failed", "activated", "failed", "rolledback", "skipped"} {
		f = append(f, events.DeploySubject("*", p))
	}
	return f
}

// nixRootsReader keeps the fold current: each call reads what DEPLOY
// stored since the last one.
type nixRootsReader struct {
	h       *Hub
	mu      sync.Mutex
	lastSeq uint64
	roots   *nixRoots
}

// current catches up with DEPLOY and returns the roots at now.
func (x *nixRootsReader) current(ctx context.Context, now time.Time) (map[string][]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	last, err := catchUpDeploy(ctx, x.h.js, deployRootsFilter(), x.lastSeq, func(subject string, e events.Event, k events.Kind, data any) {
		host, _, _ := events.HostFromSubject(subject)
		x.roots.apply(host, e, k.Name, data)
	})
	x.lastSeq = last
	if err != nil {
		return nil, fmt.Errorf("read the deploy record: %w", err)
	}
	return x.roots.roots(now), nil
}
