package streams

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestFormationNotForHosts: no host's leaf key may show interest in the
// marker of a node moving a single hub's streams into a new cluster (it
// would hold the new cluster's streams back), nor write the formation
// claim.
func TestFormationNotForHosts(t *testing.T) {
	p := leafPermissions("goliath")
	for _, tc := range []struct {
		name    string
		subject string
		allow   []string
	}{
		{name: "subscribe to the marker", subject: upgradingSubject + ".hub1", allow: p.Subscribe.Allow},
		{name: "publish the marker", subject: upgradingSubject + ".hub1", allow: p.Publish.Allow},
		{name: "publish the claim", subject: "pinkie.hubformation", allow: p.Publish.Allow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, a := range tc.allow {
				if server.SubjectMatchesFilter(tc.subject, a) {
					t.Errorf("a host may %s %s (allowed by %s)", tc.name, tc.subject, a)
				}
			}
		})
	}
}
