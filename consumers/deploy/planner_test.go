package deploy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

func TestPlannerOrdersOnceAndOnlyFromTheNamedBuilder(t *testing.T) {
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	k, _ := events.Lookup("deploy.requested")
	reqEvent := func(host, buildOn string, at time.Time) (events.Event, *events.DeployRequested) {
		d := &events.DeployRequested{Host: host, BuildOn: buildOn, Flake: "git+file:///x?rev=1"}
		e, err := events.New(k, "laptop", "cli", at, d)
		if err != nil {
			t.Fatal(err)
		}
		return e, d
	}
	// stored is e as DEPLOY stores it under subjectHost's subject.
	stored := func(subjectHost string, e events.Event) events.Stored {
		k, ok := events.Lookup(e.Type())
		if !ok {
			t.Fatalf("unknown type %s", e.Type())
		}
		return events.Stored{Stream: "DEPLOY", Subject: events.DeploySubject(subjectHost, strings.TrimPrefix(k.Name, "deploy.")), Event: e, Kind: k}
	}
	phase := func(sender, kind string, d *events.DeployPhase) events.Event {
		k, _ := events.Lookup(kind)
		e, err := events.New(k, sender, "builder", now, d)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	p := NewPlanner()
	e1, _ := reqEvent("goliath", "tower", now)
	p.Apply(stored("goliath", e1))
	e2, _ := reqEvent("koishi", "target", now)
	p.Apply(stored("koishi", e2))
	orders := p.Orders(now)
	if len(orders) != 1 || orders[0].Type() != "pinkie.deploy.build.ordered.v1" {
		t.Fatalf("orders %v, want one build order (koishi builds itself)", orders)
	}
	var o events.DeployPhase
	if err := orders[0].DataAs(&o); err != nil || o.Builder != "tower" || o.Host != "goliath" || o.RequestID != e1.ID() {
		t.Fatalf("build order %+v (%v)", o, err)
	}
	if again := p.Orders(now); len(again) != 0 {
		t.Fatalf("build order issued twice: %v", again)
	}
	// The order echoes back from the stream; a replayed planner that
	// sees it issues nothing.
	replay := NewPlanner()
	replay.Apply(stored("goliath", e1))
	replay.Apply(stored("tower", orders[0]))
	if got := replay.Orders(now); len(got) != 0 {
		t.Fatalf("replay issued %v", got)
	}
	// built from another host than the named builder is ignored.
	built := o
	built.StorePath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-sys"
	p.Apply(stored("koishi", phase("koishi", "deploy.built", &built)))
	if got := p.Orders(now); len(got) != 0 {
		t.Fatalf("a build claimed by koishi led to %v", got)
	}
	p.Apply(stored("tower", phase("tower", "deploy.built", &built)))
	got := p.Orders(now)
	if len(got) != 1 || got[0].Type() != "pinkie.deploy.activation.ordered.v1" {
		t.Fatalf("after tower's built: %v, want an activation order", got)
	}
	var a events.DeployPhase
	_ = got[0].DataAs(&a)
	if a.StorePath != built.StorePath || a.Host != "goliath" {
		t.Errorf("activation order %+v", a)
	}
	// An expired or superseded request gets no build order.
	e3, _ := reqEvent("edge", "tower", now.Add(-48*time.Hour))
	p.Apply(stored("edge", e3))
	if got := p.Orders(now); len(got) != 0 {
		t.Errorf("expired request ordered: %v", got)
	}
}

// TestPlannerFlushLoadResumes: at every cut of DEPLOY, a planner flushed
// (after ticking, as the runner does once caught up), restored with Load
// into a fresh one and fed the rest issues exactly the orders a planner
// that folded the whole stream issues, and none it already issued.
func TestPlannerFlushLoadResumes(t *testing.T) {
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	var log []events.Stored
	add := func(sender string, e events.Event) {
		k, ok := events.Lookup(e.Type())
		if !ok {
			t.Fatalf("unknown type %s", e.Type())
		}
		log = append(log, events.Stored{Stream: "DEPLOY", Seq: uint64(len(log) + 1), Subject: events.DeploySubject(sender, strings.TrimPrefix(k.Name, "deploy.")), Event: e, Kind: k})
	}
	req := func(host, buildOn string) string {
		k, _ := events.Lookup("deploy.requested")
		e, err := events.New(k, "laptop", "cli", now, &events.DeployRequested{Host: host, BuildOn: buildOn, Flake: "git+file:///x?rev=1"})
		if err != nil {
			t.Fatal(err)
		}
		add(host, e)
		return e.ID()
	}
	built := func(builder, id, host string) {
		k, _ := events.Lookup("deploy.built")
		e, err := events.New(k, builder, "builder", now, &events.DeployPhase{RequestID: id, Host: host, StorePath: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-sys"})
		if err != nil {
			t.Fatal(err)
		}
		add(builder, e)
	}
	// run folds log from a planner restored from kv (nil: fresh), ticking
	// after each event as a caught-up runner would, echoing its orders
	// into the stream it reads; it returns the orders by id, and kv.
	type run struct {
		orders []string
		kv     map[string][]byte
	}
	fold := func(p *Planner, from int, stream []events.Stored) run {
		f := p.Fold()
		var r run
		for _, s := range stream[from:] {
			f.Apply(s)
			for _, o := range f.Tick(now) {
				r.orders = append(r.orders, o.Event.ID())
				// The order is in DEPLOY: the planner reads it back.
				f.Apply(events.Stored{Stream: "DEPLOY", Subject: o.Subject, Event: o.Event, Kind: func() events.Kind { k, _ := events.Lookup(o.Event.Type()); return k }()})
			}
		}
		kv, err := f.Flush()
		if err != nil {
			t.Fatal(err)
		}
		r.kv = kv
		return r
	}
	g1 := req("goliath", "tower")
	req("koishi", "target")
	built("tower", g1, "goliath")
	e1 := req("edge", "tower")
	g2 := req("goliath", "tower") // supersedes g1's build, not its activation
	built("tower", e1, "edge")
	built("tower", g2, "goliath")
	whole := fold(NewPlanner(), 0, log)
	if len(whole.orders) != 6 {
		t.Fatalf("a full fold issued %d orders, want 6 (build and activation for goliath 1, edge and goliath 2)", len(whole.orders))
	}
	for cut := 0; cut <= len(log); cut++ {
		first := fold(NewPlanner(), 0, log[:cut])
		next := NewPlanner()
		f := next.Fold()
		for k, v := range first.kv {
			if !strings.HasPrefix(k, RequestKeyPrefix) {
				t.Errorf("cut %d: key %s", cut, k)
			}
			if err := f.Load(k, v); err != nil {
				t.Fatalf("cut %d: load %s: %v", cut, k, err)
			}
		}
		rest := fold(next, cut, log)
		got := append(append([]string(nil), first.orders...), rest.orders...)
		if !slices.Equal(got, whole.orders) {
			t.Errorf("cut %d: orders %v before and %v after the restart, want %v", cut, first.orders, rest.orders, whole.orders)
		}
	}
}
