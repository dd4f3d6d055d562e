package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// Event and Decode round-trip a declared fleet; data the schema refuses is
// the user's error, and a fleet too big for the FLEET stream is refused.
func TestEventAndDecode(t *testing.T) {
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	decl := events.FleetDeclared{Flake: "git+https://example.org/infra", Hosts: []events.DeclaredHost{}}
	e, err := Event(set, decl, "laptop", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(set, e.Data())
	if err != nil || got.Flake != decl.Flake {
		t.Errorf("Decode(Event(...)) = %+v, %v", got, err)
	}
	var ue *UserError
	if _, err := Decode(set, []byte(`{"flake":"x","hosts":[{"nome":"goliath"}]}`)); !errors.As(err, &ue) {
		t.Errorf("Decode of data the schema refuses: err %v, want a *UserError", err)
	}
	if _, err := Decode(set, []byte(`not json`)); !errors.As(err, &ue) {
		t.Errorf("Decode of malformed data: err %v, want a *UserError", err)
	}
	services := make([]string, 200)
	for j := range services {
		services[j] = "service-with-a-long-name.service"
	}
	big := decl
	for i := 0; len(mustJSON(t, big)) <= MaxEventBytes; i++ {
		big.Hosts = append(big.Hosts, events.DeclaredHost{Name: fmt.Sprintf("host-%d", i), Roles: []string{}, Services: services, Domains: []events.DeclaredDomain{},
			Deployment: events.DeclaredDeployment{Tags: []string{}, Goal: "switch", HealthChecks: []string{}}})
	}
	if _, err := Event(set, big, "laptop", time.Now()); err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "more than the 1048576 the FLEET stream takes") {
		t.Errorf("oversized fleet: err %v, want the size refusal", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
