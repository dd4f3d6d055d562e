package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

func TestCheck(t *testing.T) {
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	c := &Checker{Schemas: set, MaxSize: 2048}
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	hb := func(host string, counter uint64) []byte {
		k, _ := events.Lookup("heartbeat")
		e, err := events.New(k, host, "heartbeat", now, events.Heartbeat{Counter: counter, Instance: "x"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := events.Encode(e)
		return b
	}
	req := func() []byte {
		k, _ := events.Lookup("deploy.requested")
		e, _ := events.New(k, "goliath", "cli", now, events.DeployRequested{Host: "goliath"})
		b, _ := events.Encode(e)
		return b
	}()
	phase := func(kind, host, target string) []byte {
		k, _ := events.Lookup(kind)
		e, err := events.New(k, host, "deploy", now, events.DeployPhase{RequestID: "r1", Host: target, Builder: host})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := events.Encode(e)
		return b
	}
	order := func() []byte {
		k, _ := events.Lookup("deploy.activation.ordered")
		e, _ := events.New(k, "goliath", "deploy-planner", now, events.DeployPhase{RequestID: "r1", Host: "goliath", Builder: "tower", StorePath: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x"})
		b, _ := events.Encode(e)
		return b
	}()
	src := func(host, orig string) string {
		return "OUTBOX:abc:C=def 17 evt.> pinkie.ingest." + host + ".> " + orig + " ident"
	}
	tests := []struct {
		name        string
		msg         Message
		wantSubject string
		wantReason  string
	}{
		{"valid heartbeat", Message{"pinkie.ingest.goliath.heartbeat", src("goliath", "evt.heartbeat"), hb("goliath", 1)}, "pinkie.host.goliath.heartbeat", ""},
		{"source claims another host", Message{"pinkie.ingest.goliath.heartbeat", src("goliath", "evt.heartbeat"), hb("koishi", 1)}, "", "source host koishi differs from subject host goliath"},
		{"subject claims another host than the source that delivered it", Message{"pinkie.ingest.koishi.heartbeat", src("goliath", "evt.heartbeat"), hb("koishi", 1)}, "", "does not match the source that delivered it"},
		{"untransformed subject smuggled in", Message{"pinkie.ingest.koishi.heartbeat", src("goliath", "pinkie.ingest.koishi.heartbeat"), hb("koishi", 1)}, "", "does not match the source"},
		{"no source header", Message{"pinkie.ingest.goliath.heartbeat", "", hb("goliath", 1)}, "", "Nats-Stream-Source"},
		{"invalid data", Message{"pinkie.ingest.goliath.heartbeat", src("goliath", "evt.heartbeat"), hb("goliath", 0)}, "", "/counter"},
		{"not JSON", Message{"pinkie.ingest.goliath.heartbeat", src("goliath", "evt.heartbeat"), []byte("garbage")}, "", "not a valid pinkie event"},
		{"too large", Message{"pinkie.ingest.goliath.heartbeat", src("goliath", "evt.heartbeat"), []byte(strings.Repeat("x", 4096))}, "", "larger than the limit"},
		{"kind does not match subject", Message{"pinkie.ingest.goliath.profile", src("goliath", "evt.profile"), hb("goliath", 1)}, "", "does not match event type"},
		{"agent sends a deploy request", Message{"pinkie.ingest.goliath.deploy.requested", src("goliath", "evt.deploy.requested"), req}, "", "not published by agents"},
		{"deploy phase goes to the deploy record", Message{"pinkie.ingest.goliath.deploy.activated", src("goliath", "evt.deploy.activated"), phase("deploy.activated", "goliath", "goliath")}, "pinkie.deploy.goliath.activated", ""},
		{"two-token deploy phase", Message{"pinkie.ingest.goliath.deploy.build.failed", src("goliath", "evt.deploy.build.failed"), phase("deploy.build.failed", "goliath", "goliath")}, "pinkie.deploy.goliath.build.failed", ""},
		{"builder's phase for another target stays under the builder", Message{"pinkie.ingest.tower.deploy.built", src("tower", "evt.deploy.built"), phase("deploy.built", "tower", "goliath")}, "pinkie.deploy.tower.built", ""},
		{"deploy phase claiming another host's source", Message{"pinkie.ingest.goliath.deploy.activated", src("goliath", "evt.deploy.activated"), phase("deploy.activated", "koishi", "koishi")}, "", "source host koishi differs"},
		{"deploy phase smuggled under another host", Message{"pinkie.ingest.koishi.deploy.activated", src("goliath", "evt.deploy.activated"), phase("deploy.activated", "koishi", "koishi")}, "", "does not match the source"},
		{"deploy phase with an object", Message{"pinkie.ingest.goliath.deploy.activated.x", src("goliath", "evt.deploy.activated.x"), phase("deploy.activated", "goliath", "goliath")}, "", "carries an object"},
		{"agent sends a planner order", Message{"pinkie.ingest.goliath.deploy.activation.ordered", src("goliath", "evt.deploy.activation.ordered"), order}, "", "not published by agents"},
		{"malformed subject", Message{"pinkie.ingest.goliath", src("goliath", "evt"), hb("goliath", 1)}, "", "is not pinkie.ingest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := c.Check(tt.msg)
			if tt.wantReason == "" {
				if !d.Accepted() || d.Subject != tt.wantSubject {
					t.Fatalf("got %+v, want accepted on %s", d, tt.wantSubject)
				}
				return
			}
			if d.Accepted() {
				t.Fatalf("accepted %+v, want refusal mentioning %q", d, tt.wantReason)
			}
			if !strings.Contains(d.Reason, tt.wantReason) {
				t.Errorf("reason %q does not mention %q", d.Reason, tt.wantReason)
			}
			dl, subj, err := DeadLetter(tt.msg, d, now)
			if err != nil {
				t.Fatalf("DeadLetter: %v", err)
			}
			b, _ := events.Encode(dl)
			if _, _, err := set.Validate(b); err != nil {
				t.Errorf("dead letter does not validate: %v", err)
			}
			if !strings.HasPrefix(subj, "pinkie.deadletter.") {
				t.Errorf("dead letter subject %q", subj)
			}
			dl2, _, _ := DeadLetter(tt.msg, d, now.Add(time.Hour))
			if dl2.ID() != dl.ID() {
				t.Error("a redelivered message must make the same dead-letter id")
			}
		})
	}
}
