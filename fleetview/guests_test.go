package fleetview

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
)

// TestGuests: records and the declaration meet: domains proxied to a
// guest's address or served inside it are routed to it, a declared guest
// that never reported is missing, a report older than 15 minutes is stale.
func TestGuests(t *testing.T) {
	rec := func(host string, g events.Guest, age float64) []byte {
		b, _ := json.Marshal(projections.GuestRecord{Host: host, Name: g.Name, Status: projections.GuestStatus(g), Guest: g, Time: now.Add(-secs(age))})
		return b
	}
	recs := map[string][]byte{
		projections.CheckpointKey: []byte(`{"HOSTS":9}`),
		"goliath.web":             rec("goliath", events.Guest{Name: "web", Type: "container", ActiveState: "active", Healthy: true, Addresses: []string{"10.233.1.2"}}, 60),
		"goliath.db":              rec("goliath", events.Guest{Name: "db", Type: "microvm", ActiveState: "failed"}, 3600),
		"koishi.web":              rec("koishi", events.Guest{Name: "web", Type: "container", ActiveState: "active", Healthy: true}, 60),
	}
	decl := &events.FleetDeclared{Hosts: []events.DeclaredHost{
		{Name: "goliath", Domains: []events.DeclaredDomain{
			{Name: "shop.example.org", Upstreams: []string{"http://10.233.1.2:8080"}},
			{Name: "db.example.org", Upstreams: []string{"http://db:5432"}},
			{Name: "local.example.org", Upstreams: []string{"http://127.0.0.1:3000", "unix:/run/app.sock"}},
		}, Guests: []events.DeclaredGuest{
			{Name: "web", Type: "container", Services: []string{"nginx.service"}, Domains: []events.DeclaredDomain{{Name: "inner.example.org"}}},
			{Name: "mail", Type: "microvm", Addresses: []string{"10.0.0.9/24"}},
		}},
	}}
	type row struct {
		Host, Name, Status string
		Domains            []string
		Declared, Stale    bool
	}
	brief := func(gs []GuestView) []row {
		var out []row
		for _, g := range gs {
			out = append(out, row{g.Host, g.Name, g.Status, g.Domains, g.Declared, g.Stale})
		}
		return out
	}
	tests := []struct {
		name string
		decl *events.FleetDeclared
		host string
		want []row
	}{
		{"with the declaration", decl, "", []row{
			{"goliath", "db", "failed", []string{"db.example.org"}, false, true},
			{"goliath", "mail", "missing", []string{}, true, false},
			{"goliath", "web", "running", []string{"inner.example.org", "shop.example.org"}, true, false},
			{"koishi", "web", "running", []string{}, false, false},
		}},
		{"one host, no declaration", nil, "koishi", []row{{"koishi", "web", "running", []string{}, false, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Guests(recs, tc.decl, tc.host, now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, brief(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := Guests(map[string][]byte{"goliath.x": []byte("{")}, nil, "", now); err == nil {
		t.Error("a broken record gave no error")
	}
}

func TestUpstreamHost(t *testing.T) {
	for in, want := range map[string]string{
		"http://10.0.0.5:8080/x": "10.0.0.5", "10.0.0.5:8080": "10.0.0.5", "http://[fc00::2]:80": "fc00::2",
		"unix:/run/x.sock": "", "https://web": "web", "http://localhost": "localhost",
	} {
		if got := UpstreamHost(in); got != want {
			t.Errorf("UpstreamHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func TestServiceDisks(t *testing.T) {
	got := ServiceDisks(map[string][]string{
		"postgresql.service": {"/var/lib/postgresql"},
		"shop.service":       {"/var/lib/shop", "/var/lib/shop-cache"},
		"idle.service":       {"/var/lib/idle"},
	}, map[string]uint64{"/var/lib/postgresql": 500, "/var/lib/shop": 100, "/var/lib/shop-cache": 1000, "/var/lib/other": 7})
	want := []ServiceDisk{
		{Service: "shop.service", Dirs: []string{"/var/lib/shop", "/var/lib/shop-cache"}, Bytes: 1100, Measured: true},
		{Service: "postgresql.service", Dirs: []string{"/var/lib/postgresql"}, Bytes: 500, Measured: true},
		{Service: "idle.service", Dirs: []string{"/var/lib/idle"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
