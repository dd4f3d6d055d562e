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
