package clientevent

import (
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

func TestBuild(t *testing.T) {
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	who := func() string { return "ops@laptop" }
	e, subject, err := Build(set, "deploy.requested", []string{"host=goliath", "goal=boot"}, `{"flake":"git+https://example.org/infra"}`, "laptop", who, now)
	if err != nil {
		t.Fatal(err)
	}
	var d events.DeployRequested
	if err := e.DataAs(&d); err != nil {
		t.Fatal(err)
	}
	if subject != events.DeploySubject("goliath", "requested") || d.Host != "goliath" || d.Goal != "boot" || d.Flake != "git+https://example.org/infra" || d.RequestedBy != "ops@laptop" || !e.Time().Equal(now) {
		t.Errorf("built %s on %s: %+v", e.Type(), subject, d)
	}
	for _, tc := range []struct {
		name, typ string
		kvs       []string
		data      string
		want      string
	}{
		{"unknown type", "no.such", nil, "", `unknown event type "no.such"; publishable types: `},
		{"agent's kind", "heartbeat", nil, "", "heartbeat events are published by agents, not with pub"},
		{"unknown field", "deploy.requested", []string{"host=goliath", "colour=red"}, "", `unknown field "colour" for deploy.requested; fields: `},
		{"bad enum", "deploy.requested", []string{"host=goliath", "goal=reboot"}, "", `field goal="reboot": want one of `},
		{"twice", "deploy.requested", []string{"host=a", "host=b"}, "", `argument "host=b": key "host" given twice`},
		{"data key twice", "deploy.requested", nil, `{"host":"a","host":"b"}`, `--data: key "host" given twice`},
		{"bad host", "deploy.requested", []string{"host=-x"}, "", "host: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Build(set, tc.typ, tc.kvs, tc.data, "laptop", who, now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}
