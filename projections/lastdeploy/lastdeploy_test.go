package lastdeploy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

type stored struct {
	host string
	e    events.Event
	kind string
}

func TestFoldAndRebuild(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	var log []stored
	req := func(host, buildOn string, at time.Time) string {
		k, _ := events.Lookup("deploy.requested")
		d := &events.DeployRequested{Host: host, BuildOn: buildOn, Goal: "switch", RequestedBy: "alice", Revision: "abc"}
		e, err := events.New(k, "laptop", "cli", at, d)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, stored{host, e, k.Name})
		return e.ID()
	}
	phase := func(sender, p, id, target string, at time.Time, mod func(*events.DeployPhase)) {
		k, _ := events.Lookup("deploy." + p)
		ra := t0
		d := &events.DeployPhase{RequestID: id, Host: target, Goal: "switch", StorePath: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-sys", RequestedAt: &ra}
		if mod != nil {
			mod(d)
		}
		e, err := events.New(k, sender, "deploy", at, d)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, stored{sender, e, k.Name})
	}
	r1 := req("goliath", "tower", t0)
	phase("tower", "built", r1, "goliath", t0.Add(time.Minute), nil)
	phase("koishi", "built", r1, "goliath", t0.Add(time.Minute), nil) // not the named builder: ignored
	phase("goliath", "activated", r1, "goliath", t0.Add(2*time.Minute), func(d *events.DeployPhase) { d.DurationSeconds = 3 })
	r2 := req("goliath", "local", t0.Add(time.Hour))
	r3 := req("goliath", "local", t0.Add(2*time.Hour))
	phase("goliath", "rolledback", r3, "goliath", t0.Add(2*time.Hour+time.Minute), func(d *events.DeployPhase) { d.Reason = "stc failed" })
	phase("goliath", "skipped", r2, "goliath", t0.Add(2*time.Hour+2*time.Minute), func(d *events.DeployPhase) { d.Reason = "superseded" })
	phase("koishi", "activated", "unknown", "goliath", t0, nil) // another host's claim: ignored

	fold := func() (*Projection, map[string][]byte) {
		p := New()
		for i, s := range log {
			k, _ := events.Lookup(s.kind)
			p.Apply(events.Stored{Stream: "DEPLOY", Seq: uint64(i + 1), Subject: events.DeploySubject(s.host, strings.TrimPrefix(s.kind, "deploy.")), Event: s.e, Kind: k})
		}
		return p, p.Changed()
	}
	p, kv := fold()
	recs := p.Records()
	if len(recs) != 1 {
		t.Fatalf("records for %d hosts, want goliath only: %+v", len(recs), recs)
	}
	g := recs[0]
	if g.LastSuccess == nil || g.LastSuccess.RequestID != r1 || g.LastSuccess.DurationSeconds != 3 || g.LastSuccess.TotalSeconds != 120 {
		t.Errorf("last success %+v, want request 1 activated after 120s", g.LastSuccess)
	}
	if a := g.LastAttempt; a == nil || a.RequestID != r3 || a.Outcome != Failed || a.Phase != "rolledback" || a.Reason != "stc failed" {
		t.Errorf("last attempt %+v, want request 3 rolled back (the skip of the older request 2 must not replace it)", g.LastAttempt)
	}
	// Rebuilding from the same stream gives the same bytes.
	_, again := fold()
	if diff := cmp.Diff(kv, again); diff != "" {
		t.Errorf("rebuild differs (-first +second):\n%s", diff)
	}
	var r Record
	if err := json.Unmarshal(kv["goliath"], &r); err != nil || r.Host != "goliath" {
		t.Errorf("KV value %s: %v", kv["goliath"], err)
	}
	if len(p.Changed()) != 0 {
		t.Error("Changed returned records twice")
	}
}

// TestFlushLoadResumes: at every cut of the stream, a projection flushed,
// restored with Load into a fresh one and fed the rest has the records of
// one that folded the whole stream — a builder's phase after the cut is
// judged by the request restored from before it.
func TestFlushLoadResumes(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	var log []events.Stored
	add := func(sender, kind string, d any, at time.Time) string {
		k, _ := events.Lookup(kind)
		e, err := events.New(k, sender, "deploy", at, d)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, events.Stored{Stream: "DEPLOY", Seq: uint64(len(log) + 1), Subject: events.DeploySubject(sender, strings.TrimPrefix(kind, "deploy.")), Event: e, Kind: k})
		return e.ID()
	}
	ra := t0
	ph := func(id, host string) *events.DeployPhase {
		return &events.DeployPhase{RequestID: id, Host: host, Goal: "switch", StorePath: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-sys", RequestedAt: &ra}
	}
	r1 := add("goliath", "deploy.requested", &events.DeployRequested{Host: "goliath", BuildOn: "tower", Goal: "switch"}, t0)
	r2 := add("koishi", "deploy.requested", &events.DeployRequested{Host: "koishi"}, t0)
	add("tower", "deploy.build.started", ph(r1, "goliath"), t0.Add(time.Second))
	add("tower", "deploy.built", ph(r1, "goliath"), t0.Add(time.Minute))
	add("koishi", "deploy.activated", ph(r2, "koishi"), t0.Add(time.Minute))
	add("goliath", "deploy.activated", ph(r1, "goliath"), t0.Add(2*time.Minute))
	r3 := add("goliath", "deploy.requested", &events.DeployRequested{Host: "goliath", BuildOn: "tower"}, t0.Add(time.Hour))
	add("tower", "deploy.build.failed", ph(r3, "goliath"), t0.Add(time.Hour+time.Minute))

	whole := New()
	for _, s := range log {
		whole.Apply(s)
	}
	want := whole.Records()
	for cut := 0; cut <= len(log); cut++ {
		first := New()
		f := first.Fold()
		for _, s := range log[:cut] {
			f.Apply(s)
		}
		kv, err := f.Flush()
		if err != nil {
			t.Fatal(err)
		}
		kv[events.CheckpointKey] = []byte(`{"DEPLOY":1}`) // the runner's, skipped by Load
		next := New()
		g := next.Fold()
		for k, v := range kv {
			if k != events.CheckpointKey && !strings.HasPrefix(k, RequestKeyPrefix) && events.IsStateKey(k) {
				t.Errorf("cut %d: unexpected state key %s", cut, k)
			}
			if err := g.Load(k, v); err != nil {
				t.Fatalf("cut %d: load %s: %v", cut, k, err)
			}
		}
		for _, s := range log[cut:] {
			g.Apply(s)
		}
		if diff := cmp.Diff(want, next.Records()); diff != "" {
			t.Errorf("cut %d: records after Load and the rest differ from a full fold (-want +got):\n%s", cut, diff)
		}
	}
	if g := want[0]; g.Host != "goliath" || g.LastAttempt.Outcome != Failed || g.LastAttempt.RequestID != r3 {
		t.Errorf("goliath %+v: want request 3's build failed by tower", g.LastAttempt)
	}
}
