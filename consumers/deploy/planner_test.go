package deploy

import (
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
