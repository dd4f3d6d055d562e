package notifier

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

func declared(tags map[string][]string) events.FleetDeclared {
	d := events.FleetDeclared{Flake: "git+https://git.example.org/infra"}
	for _, h := range []string{"goliath", "koishi", "untagged"} {
		if t, ok := tags[h]; ok {
			d.Hosts = append(d.Hosts, events.DeclaredHost{Name: h, Deployment: events.DeclaredDeployment{Tags: t, Goal: "switch"},
				Roles: []string{"agent"}, Services: []string{}, Domains: []events.DeclaredDomain{}})
		}
	}
	return d
}

func TestTagRoutes(t *testing.T) {
	fleet := NewFleet(3, declared(map[string][]string{"goliath": {"web", "prod"}, "koishi": {"db"}, "untagged": {}}))
	alert := func(host string) events.Alert {
		return events.Alert{Host: host, Rule: "fs.usage", Object: "/", Severity: "warning", Status: "firing"}
	}
	tests := []struct {
		name  string
		route Route
		host  string
		fleet Fleet
		want  bool
	}{
		{"tag", Route{Tags: []string{"web"}}, "goliath", fleet, true},
		{"any of the host's tags", Route{Tags: []string{"prod"}}, "goliath", fleet, true},
		{"other host's tag", Route{Tags: []string{"web"}}, "koishi", fleet, false},
		{"pattern", Route{Tags: []string{"d?"}}, "koishi", fleet, true},
		{"any pattern", Route{Tags: []string{"web", "db"}}, "koishi", fleet, true},
		{"pattern miss", Route{Tags: []string{"we*b*x"}}, "goliath", fleet, false},
		{"host not in the declared fleet", Route{Tags: []string{"*"}}, "remilia", fleet, false},
		{"host without tags", Route{Tags: []string{"*"}}, "untagged", fleet, false},
		{"no declared fleet", Route{Tags: []string{"web"}}, "goliath", Fleet{}, false},
		{"no tags key ignores the fleet", Route{}, "remilia", fleet, true},
		{"tags and hosts both must match", Route{Tags: []string{"web"}, Hosts: []string{"koishi"}}, "goliath", fleet, false},
		{"tags and severity", Route{Tags: []string{"web"}, MinSeverity: "critical"}, "goliath", fleet, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.route.Matches(alert(tt.host), tt.fleet); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTagsConfig(t *testing.T) {
	_, chans, err := ParseConfig([]byte(`{"channels": {"p": {"type": "ntfy", "url": "http://x", "topic": "t", "tags": ["web", "db-*"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(chans[0].Route().Tags, ","); got != "web,db-*" {
		t.Errorf("tags %q", got)
	}
	for _, tt := range []struct{ name, raw, want string }{
		{"bad pattern", `{"channels": {"p": {"type": "ntfy", "url": "http://x", "topic": "t", "tags": ["[web"]}}}`, `pattern "[web"`},
		{"not a list", `{"channels": {"p": {"type": "ntfy", "url": "http://x", "topic": "t", "tags": "web"}}}`, "cannot unmarshal string"},
		{"misspelt", `{"channels": {"p": {"type": "ntfy", "url": "http://x", "topic": "t", "tag": ["web"]}}}`, `unknown field "tag"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ParseConfig([]byte(tt.raw)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func fleetEvent(t *testing.T, d any) []byte {
	t.Helper()
	k, _ := events.Lookup("fleet.declared")
	e, err := events.New(k, "laptop", "fleet", time.Now(), d, events.WithSubject("fleet"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFleetFromEvent(t *testing.T) {
	f, err := FleetFromEvent(7, fleetEvent(t, declared(map[string][]string{"goliath": {"web"}, "koishi": {"db"}})))
	if err != nil {
		t.Fatal(err)
	}
	if f.Seq != 7 || len(f.Tags) != 2 || strings.Join(f.Tags["goliath"], ",") != "web" || strings.Join(f.Tags["koishi"], ",") != "db" {
		t.Errorf("fleet %+v", f)
	}
	// Strict: unknown data fields and other event types are refused.
	bad := map[string]any{"flake": "x", "hosts": []any{}, "surprise": 1}
	if _, err := FleetFromEvent(8, fleetEvent(t, bad)); err == nil || !strings.Contains(err.Error(), `unknown field "surprise"`) {
		t.Errorf("unknown field: %v", err)
	}
	if _, err := FleetFromEvent(9, alertEvent(t, "goliath", "login", "info", "firing", 1)); err == nil || !strings.Contains(err.Error(), "want a fleet.declared event") {
		t.Errorf("alert event as fleet: %v", err)
	}
	if _, err := FleetFromEvent(10, []byte(`{"not": "an event"}`)); err == nil {
		t.Error("garbage decoded as a fleet")
	}
}

func TestSetFleetKeepsTheLatest(t *testing.T) {
	n := New(Options{Channels: []Channel{&recorder{name: "web", route: Route{Tags: []string{"web"}}}}, Store: &memStore{m: map[string][]byte{}}, Pub: &auditLog{}})
	if !n.RoutesByTag() {
		t.Fatal("RoutesByTag false with a tags route")
	}
	if !n.SetFleet(NewFleet(5, declared(map[string][]string{"goliath": {"web"}}))) {
		t.Error("first fleet not taken")
	}
	if n.SetFleet(NewFleet(4, declared(map[string][]string{"goliath": {"db"}}))) {
		t.Error("an older fleet replaced a newer one")
	}
	if !n.SetFleet(NewFleet(6, declared(map[string][]string{"koishi": {"web"}}))) || n.Fleet().Seq != 6 {
		t.Errorf("newer fleet not taken: %+v", n.Fleet())
	}
}

// failingStore fails writes of keys with a prefix, a number of times.
type failingStore struct {
	*memStore
	prefix string
	fails  int
}

func (s *failingStore) fail(k string) bool {
	if s.fails > 0 && strings.HasPrefix(k, s.prefix) {
		s.fails--
		return true
	}
	return false
}

func (s *failingStore) Put(ctx context.Context, k string, v []byte) error {
	if s.fail(k) {
		return errors.New("kv: timeout")
	}
	return s.memStore.Put(ctx, k, v)
}

func (s *failingStore) Update(ctx context.Context, k string, v []byte, rev uint64) (uint64, error) {
	if s.fail(k) {
		return 0, errors.New("kv: timeout")
	}
	return s.memStore.Update(ctx, k, v, rev)
}

// TestTagRoutingDecisionSurvivesInterruption: an alert whose handling was
// interrupted after one channel's job was stored goes, when it comes again
// after a restart, to the channels it was routed to then, even though a
// newer declared fleet would route it elsewhere; and no channel gets it
// twice.
func TestTagRoutingDecisionSurvivesInterruption(t *testing.T) {
	ctx := context.Background()
	st := &failingStore{memStore: &memStore{m: map[string][]byte{}}, prefix: "job.b-db.", fails: 1}
	chans := func() []Channel {
		return []Channel{&recorder{name: "a-web", route: Route{Tags: []string{"web"}}}, &recorder{name: "b-db", route: Route{Tags: []string{"db"}}},
			&recorder{name: "c-all"}}
	}
	n := New(Options{Config: Config{GroupWait: dur(time.Hour)}, Channels: chans(), Store: st, Pub: &auditLog{}})
	if err := n.Load(ctx); err != nil {
		t.Fatal(err)
	}
	n.SetFleet(NewFleet(1, declared(map[string][]string{"goliath": {"web", "db"}})))
	ev := alertEvent(t, "goliath", "fs.usage", "critical", "firing", 1)
	if err := n.HandleAlert(ctx, 11, ev); err == nil {
		t.Fatal("the store failure was not reported (the alert would be acknowledged)")
	}
	// The restarted notifier has a newer fleet: goliath is no longer a db
	// host. The alert comes again.
	n2 := New(Options{Config: Config{GroupWait: dur(time.Hour)}, Channels: chans(), Store: st, Pub: &auditLog{}})
	if err := n2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	n2.SetFleet(NewFleet(2, declared(map[string][]string{"goliath": {"web"}})))
	if err := n2.HandleAlert(ctx, 11, ev); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, j := range n2.Pending() {
		got[j.Channel] += len(j.Alerts)
	}
	if got["a-web"] != 1 || got["b-db"] != 1 || got["c-all"] != 1 || len(got) != 3 {
		t.Errorf("alerts per channel after the redelivery: %v, want each of a-web, b-db, c-all once", got)
	}
	// A new alert is routed by the new fleet.
	if err := n2.HandleAlert(ctx, 12, alertEvent(t, "goliath", "fs.usage", "critical", "firing", 2)); err != nil {
		t.Fatal(err)
	}
	got = map[string]int{}
	for _, j := range n2.Pending() {
		got[j.Channel] += len(j.Alerts)
	}
	if got["a-web"] != 2 || got["b-db"] != 1 || got["c-all"] != 2 {
		t.Errorf("alerts per channel after a new alert: %v, want a-web 2, b-db 1, c-all 2", got)
	}
}
