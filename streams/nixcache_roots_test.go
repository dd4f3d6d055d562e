package streams

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// rootsEvent is one DEPLOY event for the roots fold: its subject's host,
// its id (a request's id) and its data.
type rootsEvent struct {
	subjectHost, kind, id string
	at                    time.Time
	data                  any
}

func TestNixRootsFold(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	later := t0.Add(2 * time.Hour)
	sys := func(n string) string { return "/nix/store/" + n + "-nixos-system" }
	req := func(host, id, path, buildOn string) rootsEvent {
		return rootsEvent{host, "deploy.requested", id, t0, &events.DeployRequested{Host: host, StorePath: path, BuildOn: buildOn}}
	}
	phase := func(subjectHost, phase, id, host, path, prev string) rootsEvent {
		return rootsEvent{subjectHost, "deploy." + phase, "ev-" + id + phase, t0, &events.DeployPhase{RequestID: id, Host: host, StorePath: path, PreviousPath: prev}}
	}
	tests := []struct {
		name string
		in   []rootsEvent
		now  time.Time
		want map[string][]string
	}{
		{name: "current and previous, the replaced generation too", in: []rootsEvent{
			phase("goliath", "activated", "r1", "goliath", sys("a"), ""),
			phase("goliath", "activated", "r2", "goliath", sys("b"), sys("a")),
			phase("goliath", "activated", "r3", "goliath", sys("c"), sys("manual")),
		}, now: t0, want: map[string][]string{sys("c"): {"current:goliath"}, sys("b"): {"previous:goliath"}, sys("manual"): {"previous:goliath"}}},
		{name: "the same path again keeps the previous one", in: []rootsEvent{
			phase("goliath", "activated", "r1", "goliath", sys("a"), ""),
			phase("goliath", "activated", "r2", "goliath", sys("b"), sys("a")),
			phase("goliath", "activated", "r3", "goliath", sys("b"), sys("b")),
		}, now: t0, want: map[string][]string{sys("b"): {"current:goliath"}, sys("a"): {"previous:goliath"}}},
		{name: "a local build is pending until activated", in: []rootsEvent{
			req("koishi", "r1", sys("k"), "local"),
		}, now: t0, want: map[string][]string{sys("k"): {"pending:koishi"}}},
		{name: "a builder's build is pending, then current", in: []rootsEvent{
			req("koishi", "r1", "", "tower"),
			phase("tower", "built", "r1", "koishi", sys("k"), ""),
			phase("koishi", "activated", "r1", "koishi", sys("k"), ""),
		}, now: t0, want: map[string][]string{sys("k"): {"current:koishi"}}},
		{name: "a host that was not named builder pins nothing", in: []rootsEvent{
			req("koishi", "r1", "", "tower"),
			phase("mallory", "built", "r1", "koishi", sys("evil"), ""),
			phase("mallory", "activated", "r1", "koishi", sys("evil"), ""),
		}, now: t0, want: map[string][]string{}},
		{name: "the planner's activation order", in: []rootsEvent{
			req("koishi", "r1", "", "tower"),
			{"koishi", "deploy.activation.ordered", "o1", t0, &events.DeployPhase{RequestID: "r1", Host: "koishi", StorePath: sys("k")}},
		}, now: t0, want: map[string][]string{sys("k"): {"pending:koishi"}}},
		{name: "failed, skipped and build.failed end a request", in: []rootsEvent{
			req("koishi", "r1", sys("k1"), "local"),
			req("koishi", "r2", sys("k2"), "local"),
			req("koishi", "r3", "", "tower"),
			phase("tower", "built", "r3", "koishi", sys("k3"), ""),
			phase("koishi", "failed", "r1", "koishi", "", ""),
			phase("koishi", "skipped", "r2", "koishi", "", ""),
			phase("tower", "build.failed", "r3", "koishi", "", ""),
		}, now: t0, want: map[string][]string{}},
		{name: "an expired request keeps nothing", in: []rootsEvent{
			req("koishi", "r1", sys("k"), "local"),
		}, now: t0.Add(defaultRequestExpiry + time.Minute), want: map[string][]string{}},
		{name: "a request for another host than its subject's is not one", in: []rootsEvent{
			req("mallory", "r1", sys("k"), "local"),
			{"mallory", "deploy.requested", "r2", t0, &events.DeployRequested{Host: "koishi", StorePath: sys("k2")}},
		}, now: later, want: map[string][]string{sys("k"): {"pending:mallory"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newNixRoots()
			for _, ev := range tt.in {
				k, ok := events.Lookup(ev.kind)
				if !ok {
					t.Fatalf("no kind %s", ev.kind)
				}
				e, err := events.New(k, ev.subjectHost, "test", ev.at, ev.data, events.WithID(ev.id))
				if err != nil {
					t.Fatal(err)
				}
				r.apply(ev.subjectHost, e, ev.kind, ev.data)
			}
			if diff := cmp.Diff(tt.want, r.roots(tt.now)); diff != "" {
				t.Errorf("roots (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNixCachePlan: orphan NARs go first; then paths oldest upload first,
// each with what refers to it; kept paths and NARs a kept path names stay.
func TestNixCachePlan(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ent := func(hash string, age int, url string, kept bool, refs ...string) *NixCacheEntry {
		e := &NixCacheEntry{StorePath: "/nix/store/" + hash, Uploaded: t0.Add(time.Duration(age) * time.Minute), hash: hash, url: url, info: 10, refs: refs}
		if kept {
			e.KeptBecause = []string{"current:goliath"}
		}
		return e
	}
	newView := func() *nixCacheView {
		v := &nixCacheView{byHash: map[string]*NixCacheEntry{}, nars: map[string]*jetstream.ObjectInfo{}}
		for _, e := range []*NixCacheEntry{
			ent("old", 1, "nar/old", false),
			ent("kept", 2, "nar/shared", true),
			ent("twin", 3, "nar/shared", false), // its NAR is kept's too
			ent("lib", 4, "nar/lib", false),
			ent("app", 9, "nar/app", false, "lib", "app"), // refers to lib (and itself)
			ent("new", 10, "nar/new", false),
		} {
			v.entries = append(v.entries, e)
			v.byHash[e.hash] = e
			v.nars[e.url] = &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: e.url}, Size: 100}
			v.total += e.info
		}
		v.nars["nar/orphan"] = &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: "nar/orphan"}, Size: 100}
		v.orphans = []string{"nar/orphan"}
		v.total += 6 * 100 // five NARs of entries (one shared) and the orphan
		return v
	}
	tests := []struct {
		name      string
		budget    int64
		wantPaths []string
		wantNars  []string
	}{
		{name: "under budget", budget: 1000, wantPaths: nil, wantNars: nil},
		{name: "the orphan is enough", budget: 600, wantPaths: nil, wantNars: []string{"nar/orphan"}},
		{name: "then the oldest", budget: 559, wantPaths: []string{"old"}, wantNars: []string{"nar/orphan", "nar/old"}},
		{name: "a twin frees its narinfo only", budget: 445, wantPaths: []string{"old", "twin"}, wantNars: []string{"nar/orphan", "nar/old"}},
		{name: "lib goes with app, though new is older than app", budget: 400, wantPaths: []string{"old", "twin", "lib", "app"}, wantNars: []string{"nar/orphan", "nar/old", "nar/lib", "nar/app"}},
		{name: "never what is kept", budget: 0, wantPaths: []string{"old", "twin", "lib", "app", "new"}, wantNars: []string{"nar/orphan", "nar/old", "nar/lib", "nar/app", "nar/new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newView()
			drop, nars, after := v.plan(tt.budget)
			var got []string
			for _, e := range drop {
				got = append(got, e.hash)
			}
			if diff := cmp.Diff(tt.wantPaths, got); diff != "" {
				t.Errorf("dropped paths (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantNars, nars); diff != "" {
				t.Errorf("dropped NARs (-want +got):\n%s", diff)
			}
			want := v.total - int64(len(tt.wantPaths))*10 - int64(len(tt.wantNars))*100
			if after != want {
				t.Errorf("after = %d, want %d", after, want)
			}
			if tt.budget > 0 && after > tt.budget && !slices.Contains(got, "new") {
				t.Errorf("stopped at %d, over the budget %d", after, tt.budget)
			}
		})
	}
}

// TestHubNixSigningKeyFlag: with --nix-signing-key the hub signs and tells
// agents the key in that file, though its auth directory holds none.
func TestHubNixSigningKeyFlag(t *testing.T) {
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"koishi"}); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "credential")
	if err := os.Rename(NixSecretKeyFile(auth), keyFile); err != nil {
		t.Fatal(err)
	}
	pub := must(os.ReadFile(NixPublicKeyFile(auth)))
	if err := os.Remove(NixPublicKeyFile(auth)); err != nil {
		t.Fatal(err)
	}
	hub, err := StartHub(context.Background(), HubOptions{IngestCheck: testIngestCheck,
		DataDir: t.TempDir(), NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		AuthDir: auth, Log: testLog(t), NixSigningKeyFile: keyFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	a, ks := startSubstitutingAgent(t, "koishi", hub.LeafURL(), HostSeedFile(auth, "koishi"), "")
	defer a.Close()
	key, err := ks.TrustedKey(context.Background())
	if err != nil || key+"\n" != string(pub) {
		t.Errorf("the key agents learn: %q %v, want %q", key, err, pub)
	}
	if sec, err := hub.fleetNixSecretKey(); err != nil || sec == nil {
		t.Errorf("the hub's signing key: %v %v", sec, err)
	}
}

// TestNixCacheAdminNotForHosts: no host's leaf key may call the cache's
// admin service.
func TestNixCacheAdminNotForHosts(t *testing.T) {
	p := leafPermissions("admin")
	for _, subject := range []string{NixCacheAdminLs, NixCacheAdminStats, NixCacheAdminGC} {
		for _, allow := range p.Publish.Allow {
			if server.SubjectMatchesFilter(subject, allow) {
				t.Errorf("a host called admin may publish %s (allowed by %s)", subject, allow)
			}
		}
	}
}
