package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
	"github.com/pinkiefleet/pinkie/streams"
)

// orderLog records every order a planner fold returns, across restarts.
type orderLog struct {
	mu     sync.Mutex
	issued map[string]int // order event id → times returned
}

type countingFold struct {
	events.Fold
	log *orderLog
}

func (f countingFold) Tick(now time.Time) []events.Output {
	outs := f.Fold.Tick(now)
	f.log.mu.Lock()
	defer f.log.mu.Unlock()
	for _, o := range outs {
		f.log.issued[o.Event.ID()]++
	}
	return outs
}

// TestDeployFoldsResumeAfterRestart: the hub is stopped in the middle of
// deploys on builder hosts and started again on the same store; the
// planner and last-deploy resume from their checkpoints. The planner
// issues every order exactly once over both runs, DEPLOY holds exactly
// those a full replay issues, and the last-deploy records are those a fold
// of the whole stream gives.
func TestDeployFoldsResumeAfterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ol := &orderLog{issued: map[string]int{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() *streams.Hub {
		t.Helper()
		h, err := streams.StartHub(ctx, streams.HubOptions{DataDir: dir, NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			IngestCheck: ingestCheck, Log: log,
			Services: deployFoldServicesWith(50*time.Millisecond, log, func(name string, f events.Fold) events.Fold {
				if name == "deploy-planner" {
					return countingFold{f, ol}
				}
				return f
			})})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	publish := func(h *streams.Hub, sender, kind string, d any) string {
		t.Helper()
		k, _ := events.Lookup(kind)
		e, err := events.New(k, sender, "test", time.Now(), d)
		if err != nil {
			t.Fatal(err)
		}
		m, err := streams.EventMsg(events.DeploySubject(sender, strings.TrimPrefix(kind, "deploy.")), e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.JetStream().PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish %s: %v", kind, err)
		}
		return e.ID()
	}
	// stream reads DEPLOY whole.
	stream := func(h *streams.Hub) []events.Stored {
		t.Helper()
		st, err := h.JetStream().Stream(ctx, streams.DeployStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []events.Stored
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				t.Fatalf("DEPLOY %d: %v", seq, err)
			}
			e, k, err := events.Decode(m.Data)
			if err != nil {
				t.Fatalf("DEPLOY %d: %v", seq, err)
			}
			out = append(out, events.Stored{Stream: streams.DeployStream, Seq: seq, Subject: m.Subject, At: m.Time, Event: e, Kind: k})
		}
		return out
	}
	ordersIn := func(s []events.Stored) map[string]int {
		out := map[string]int{}
		for _, m := range s {
			if strings.HasSuffix(m.Kind.Name, ".ordered") {
				out[m.Event.ID()]++
			}
		}
		return out
	}
	waitOrders := func(h *streams.Hub, n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := ordersIn(stream(h))
			if len(got) == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("DEPLOY holds %d orders, want %d", len(got), n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	store := "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-sys"
	phase := func(id, host string) *events.DeployPhase {
		return &events.DeployPhase{RequestID: id, Host: host, Goal: "switch", StorePath: store}
	}

	h := start()
	g1 := publish(h, "goliath", "deploy.requested", &events.DeployRequested{Host: "goliath", BuildOn: "tower"})
	k1 := publish(h, "koishi", "deploy.requested", &events.DeployRequested{Host: "koishi"})
	e1 := publish(h, "edge", "deploy.requested", &events.DeployRequested{Host: "edge", BuildOn: "tower"})
	waitOrders(h, 2) // build orders for goliath and edge
	publish(h, "tower", "deploy.built", phase(g1, "goliath"))
	waitOrders(h, 3) // goliath's activation order
	publish(h, "goliath", "deploy.activated", phase(g1, "goliath"))
	publish(h, "koishi", "deploy.activated", phase(k1, "koishi"))
	// Let last-deploy commit, then stop in the middle of edge's deploy.
	waitRecords(ctx, t, h, func(r map[string]*lastdeploy.Record) bool {
		return r["goliath"] != nil && r["goliath"].LastSuccess != nil
	})
	h.Close()

	h = start()
	defer h.Close()
	publish(h, "tower", "deploy.built", phase(e1, "edge"))
	g2 := publish(h, "goliath", "deploy.requested", &events.DeployRequested{Host: "goliath", BuildOn: "tower"})
	waitOrders(h, 5) // edge's activation, goliath's second build
	publish(h, "tower", "deploy.built", phase(g2, "goliath"))
	waitOrders(h, 6)
	publish(h, "edge", "deploy.activated", phase(e1, "edge"))
	publish(h, "goliath", "deploy.failed", phase(g2, "goliath"))
	all := stream(h)
	want := lastdeploy.New()
	for _, s := range all {
		want.Apply(s)
	}
	wantRecs := map[string]*lastdeploy.Record{}
	for _, r := range want.Records() {
		wantRecs[r.Host] = &r
	}
	got := waitRecords(ctx, t, h, func(r map[string]*lastdeploy.Record) bool { return cmp.Equal(r, wantRecs) })
	if diff := cmp.Diff(wantRecs, got); diff != "" {
		t.Errorf("last-deploy records differ from a fold of the whole of DEPLOY (-want +got):\n%s", diff)
	}
	time.Sleep(300 * time.Millisecond) // a few more planner ticks
	all = stream(h)
	inStream := ordersIn(all)
	if len(inStream) != 6 {
		t.Errorf("DEPLOY holds %d distinct orders, want 6: %v", len(inStream), inStream)
	}
	for id, n := range inStream {
		if n != 1 {
			t.Errorf("order %s is in DEPLOY %d times", id, n)
		}
	}
	ol.mu.Lock()
	if !cmp.Equal(ol.issued, inStream) {
		t.Errorf("the planner issued %v over both runs, want each of DEPLOY's orders once: %v", ol.issued, inStream)
	}
	ol.mu.Unlock()
	// Both buckets are checkpointed; last-deploy's readers see records
	// only.
	for _, b := range []string{events.BucketDeployPlanner, lastdeploy.Bucket} {
		kv, err := h.JetStream().KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		e, err := kv.Get(ctx, events.CheckpointKey)
		if err != nil {
			t.Fatalf("%s checkpoint: %v", b, err)
		}
		var cp map[string]uint64
		if err := json.Unmarshal(e.Value(), &cp); err != nil || cp[streams.DeployStream] == 0 {
			t.Errorf("%s checkpoint %s (%v)", b, e.Value(), err)
		}
	}
	raw, err := streams.ReadBucket(ctx, h.JetStream(), lastdeploy.Bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	var keys, hidden []string
	for k := range raw {
		if events.IsStateKey(k) {
			hidden = append(hidden, k)
		} else {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	// Beside each host's record: the checkpoint and four requests.
	if !cmp.Equal(keys, []string{"edge", "goliath", "koishi"}) || len(hidden) != 1+4 {
		t.Errorf("keys of %s: records %v and state %v, want three hosts' and the checkpoint and four requests", lastdeploy.Bucket, keys, hidden)
	}
	proj, err := streams.ReadProjection(ctx, h.JetStream(), lastdeploy.Bucket, "")
	if err != nil || len(proj) != 3 {
		t.Errorf("ReadProjection of %s: %d keys (%v), want the three records", lastdeploy.Bucket, len(proj), err)
	}
}

// waitRecords polls the last-deploy records as readers see them until ok.
func waitRecords(ctx context.Context, t *testing.T, h *streams.Hub, ok func(map[string]*lastdeploy.Record) bool) map[string]*lastdeploy.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		raw, err := streams.ReadBucket(ctx, h.JetStream(), lastdeploy.Bucket, "")
		if err != nil {
			t.Fatal(err)
		}
		recs, err := fleetview.LastDeploys(raw)
		if err != nil {
			t.Fatal(err)
		}
		if ok(recs) || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLastDeployWithoutCheckpointRebuildsOnce: a hub upgraded from when
// last-deploy replayed DEPLOY at every start has records but no
// checkpoint; the fold rebuilds them from the start of DEPLOY (a stale
// record is replaced, not folded into) and checkpoints, and the planner,
// with an empty bucket, orders once.
func TestLastDeployWithoutCheckpointRebuildsOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := streams.HubOptions{DataDir: dir, NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", IngestCheck: ingestCheck, Log: log}
	h, err := streams.StartHub(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(sender, kind string, d any) string {
		t.Helper()
		k, _ := events.Lookup(kind)
		e, err := events.New(k, sender, "test", time.Now(), d)
		if err != nil {
			t.Fatal(err)
		}
		m, err := streams.EventMsg(events.DeploySubject(sender, strings.TrimPrefix(kind, "deploy.")), e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.JetStream().PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish %s: %v", kind, err)
		}
		return e.ID()
	}
	g1 := publish("goliath", "deploy.requested", &events.DeployRequested{Host: "goliath", BuildOn: "tower"})
	publish("tower", "deploy.built", &events.DeployPhase{RequestID: g1, Host: "goliath", StorePath: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-sys"})
	// A record as an older hub wrote it, newer than DEPLOY says.
	stale, _ := json.Marshal(lastdeploy.Record{Host: "goliath", Seq: 99, LastSuccess: &lastdeploy.Success{RequestID: "old", Time: time.Now().Add(time.Hour), StorePath: "/nix/store/x", Goal: "switch"}})
	kv, err := h.JetStream().KeyValue(ctx, lastdeploy.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "goliath", stale); err != nil {
		t.Fatal(err)
	}
	h.Close()

	opts.Services = deployFoldServices(50*time.Millisecond, log)
	if h, err = streams.StartHub(ctx, opts); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got := waitRecords(ctx, t, h, func(r map[string]*lastdeploy.Record) bool {
		return r["goliath"] != nil && r["goliath"].LastSuccess == nil && r["goliath"].LastAttempt != nil && r["goliath"].LastAttempt.Phase == "built"
	})
	if g := got["goliath"]; g == nil || g.LastSuccess != nil || g.LastAttempt == nil || g.LastAttempt.RequestID != g1 || g.LastAttempt.Phase != "built" {
		t.Fatalf("goliath after the rebuild: %+v, want request 1 built and no success (the stale record dropped)", g)
	}
	if kv, err = h.JetStream().KeyValue(ctx, lastdeploy.Bucket); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		e, err := kv.Get(ctx, events.CheckpointKey)
		if err == nil {
			var cp map[string]uint64
			if json.Unmarshal(e.Value(), &cp) == nil && cp[streams.DeployStream] >= 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no checkpoint after the rebuild (%v)", lastdeploy.Bucket, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The planner orders the activation once, with no build order (the
	// build is in).
	time.Sleep(300 * time.Millisecond)
	st, err := h.JetStream().Stream(ctx, streams.DeployStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		_, k, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, k.Name)
	}
	if want := []string{"deploy.requested", "deploy.built", "deploy.build.ordered", "deploy.activation.ordered"}; !cmp.Equal(kinds, want) {
		t.Errorf("DEPLOY holds %v, want %v", kinds, want)
	}
}
