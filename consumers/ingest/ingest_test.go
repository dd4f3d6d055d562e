package ingest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

func TestCheck(t *testing.T) {
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"goliath": true, "koishi": true, "tower": true}
	c := &Checker{Schemas: set, MaxSize: 2048, Known: func(h string) bool { return known[h] },
		Orders: orders{{"tower", "r1", "goliath"}: true}}
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
	phaseOf := func(kind, host string, p events.DeployPhase) []byte {
		k, _ := events.Lookup(kind)
		e, err := events.New(k, host, "deploy", now, p, events.WithSubject(p.Host))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := events.Encode(e)
		return b
	}
	phase := func(kind, host, target string) []byte {
		return phaseOf(kind, host, events.DeployPhase{RequestID: "r1", Host: target, Builder: host})
	}
	phaseFor := func(kind, host, target, req string) []byte {
		return phaseOf(kind, host, events.DeployPhase{RequestID: req, Host: target, Builder: host})
	}
	phaseBy := func(kind, host, target, builder string) []byte {
		return phaseOf(kind, host, events.DeployPhase{RequestID: "r1", Host: target, Builder: builder})
	}
	order := func() []byte {
		k, _ := events.Lookup("deploy.activation.ordered")
		e, _ := events.New(k, "goliath", "deploy-planner", now, events.DeployPhase{RequestID: "r1", Host: "goliath", Builder: "tower", StorePath: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x"})
		b, _ := events.Encode(e)
		return b
	}()
	// wire builds the message the hub's client hands the check: a raw
	// header block as it arrives, parsed by nats.go itself.
	wire := func(subject, block string, payload []byte) events.IngestMessage {
		h, err := nats.DecodeHeadersMsg([]byte(block))
		if err != nil {
			t.Fatalf("header block %q: %v", block, err)
		}
		return events.IngestMessage{Subject: subject, Seq: 42, Header: h, HeaderSize: len(block), Payload: payload}
	}
	srcHdr := func(host, orig string) string {
		return "Nats-Stream-Source: OUTBOX:abc:C=def 17 > pinkie.ingest." + host + ".> " + orig + " ident\r\n"
	}
	// ok is a header block as nats-server stores a sourced event.
	ok := func(host, orig string) string {
		return "NATS/1.0\r\nNats-Msg-Id: x\r\nContent-Type: application/cloudevents+json\r\n" + srcHdr(host, orig) + "\r\n"
	}
	msg := func(subject, host, orig string, payload []byte) events.IngestMessage {
		return wire(subject, ok(host, orig), payload)
	}
	tests := []struct {
		name        string
		msg         events.IngestMessage
		wantSubject string
		wantReason  string
	}{
		{"valid heartbeat", msg("pinkie.ingest.goliath.evt.heartbeat", "goliath", "evt.heartbeat", hb("goliath", 1)), "pinkie.host.goliath.heartbeat", ""},
		{"valid heartbeat stored before every subject was stamped", msg("pinkie.ingest.goliath.heartbeat", "goliath", "evt.heartbeat", hb("goliath", 1)), "pinkie.host.goliath.heartbeat", ""},
		{"host not in the auth file", msg("pinkie.ingest.mallory.evt.heartbeat", "mallory", "evt.heartbeat", hb("mallory", 1)), "", "not in the auth file"},
		{"source claims another host", msg("pinkie.ingest.goliath.evt.heartbeat", "goliath", "evt.heartbeat", hb("koishi", 1)), "", "source host koishi differs from the host that sent it (goliath)"},
		{"subject outside evt.> (rogue OUTBOX subject, stamped)", msg("pinkie.ingest.goliath.pinkie.ingest.koishi.heartbeat", "goliath", "pinkie.ingest.koishi.heartbeat", hb("koishi", 1)), "", "outside this host's evt.>"},
		{"old layout: untransformed subject smuggled in", msg("pinkie.ingest.koishi.heartbeat", "goliath", "pinkie.ingest.koishi.heartbeat", hb("koishi", 1)), "", "destination \"pinkie.ingest.goliath.>\" is not \"pinkie.ingest.koishi.>\""},
		{"rogue plain subject stamped under its own host", msg("pinkie.ingest.goliath.heartbeat", "goliath", "heartbeat", hb("goliath", 1)), "", "outside this host's evt.>"},
		{"forged source header hidden behind a bare LF (seen: koishi heartbeat in HOSTS)",
			wire("pinkie.ingest.koishi.heartbeat", "NATS/1.0\r\nX-A: 1\n"+srcHdr("koishi", "evt.heartbeat")+srcHdr("goliath", "pinkie.ingest.koishi.heartbeat")+"\r\n", hb("koishi", 1)), "", "bare LF"},
		{"forged source header ending the block early with a bare LF",
			wire("pinkie.ingest.koishi.heartbeat", "NATS/1.0\r\nX-A: 1\nNats-Stream-Source: OUTBOX:abc:C=def 17 > pinkie.ingest.koishi.> evt.heartbeat\n\nX: y\r\n"+srcHdr("goliath", "pinkie.ingest.koishi.heartbeat")+"\r\n", hb("koishi", 1)), "", "bare LF"},
		{"two source headers", wire("pinkie.ingest.goliath.evt.heartbeat", "NATS/1.0\r\n"+srcHdr("goliath", "evt.heartbeat")+srcHdr("goliath", "evt.heartbeat")+"\r\n", hb("goliath", 1)), "", "2 Nats-Stream-Source headers"},
		{"source header in another spelling", wire("pinkie.ingest.goliath.evt.heartbeat", "NATS/1.0\r\nnats-stream-source: x\r\n"+srcHdr("goliath", "evt.heartbeat")+"\r\n", hb("goliath", 1)), "", "spelled unlike"},
		{"no source header", wire("pinkie.ingest.goliath.evt.heartbeat", "NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n", hb("goliath", 1)), "", "no Nats-Stream-Source"},
		{"source header too short", wire("pinkie.ingest.goliath.evt.heartbeat", "NATS/1.0\r\nNats-Stream-Source: OUTBOX 1\r\n\r\n", hb("goliath", 1)), "", "too few fields"},
		{"invalid data", msg("pinkie.ingest.goliath.evt.heartbeat", "goliath", "evt.heartbeat", hb("goliath", 0)), "", "/counter"},
		{"not JSON", msg("pinkie.ingest.goliath.evt.heartbeat", "goliath", "evt.heartbeat", []byte("garbage")), "", "not a valid pinkie event"},
		{"too large", msg("pinkie.ingest.goliath.evt.heartbeat", "goliath", "evt.heartbeat", []byte(strings.Repeat("x", 4096))), "", "larger than the limit"},
		{"kind does not match subject", msg("pinkie.ingest.goliath.evt.profile", "goliath", "evt.profile", hb("goliath", 1)), "", "does not match event type"},
		{"agent sends a deploy request", msg("pinkie.ingest.goliath.evt.deploy.requested", "goliath", "evt.deploy.requested", req), "", "not published by agents"},
		{"deploy phase goes to the deploy record", msg("pinkie.ingest.goliath.evt.deploy.activated", "goliath", "evt.deploy.activated", phase("deploy.activated", "goliath", "goliath")), "pinkie.deploy.goliath.activated", ""},
		{"two-token deploy phase", msg("pinkie.ingest.goliath.evt.deploy.build.failed", "goliath", "evt.deploy.build.failed", phase("deploy.build.failed", "goliath", "goliath")), "pinkie.deploy.goliath.build.failed", ""},
		{"ordered builder's phase for another target stays under the builder", msg("pinkie.ingest.tower.evt.deploy.built", "tower", "evt.deploy.built", phase("deploy.built", "tower", "goliath")), "pinkie.deploy.tower.built", ""},
		{"builder never ordered for that request (seen: forged built from tower)", msg("pinkie.ingest.tower.evt.deploy.built", "tower", "evt.deploy.built", phaseFor("deploy.built", "tower", "koishi", "r1")), "", "never ordered tower to build request r1"},
		{"builder reports a build naming another builder", msg("pinkie.ingest.tower.evt.deploy.built", "tower", "evt.deploy.built", phaseBy("deploy.built", "tower", "goliath", "shed")), "", "a builder reports only its own builds"},
		{"host reports another host's activation", msg("pinkie.ingest.goliath.evt.deploy.activated", "goliath", "evt.deploy.activated", phase("deploy.activated", "goliath", "koishi")), "", "only the target reports its activation"},
		{"deploy phase claiming another host's source", msg("pinkie.ingest.goliath.evt.deploy.activated", "goliath", "evt.deploy.activated", phase("deploy.activated", "koishi", "koishi")), "", "source host koishi differs"},
		{"deploy phase smuggled under another host", msg("pinkie.ingest.koishi.deploy.activated", "goliath", "pinkie.ingest.koishi.deploy.activated", phase("deploy.activated", "koishi", "koishi")), "", "does not come from this host's source"},
		{"deploy phase with an object", msg("pinkie.ingest.goliath.evt.deploy.activated.x", "goliath", "evt.deploy.activated.x", phase("deploy.activated", "goliath", "goliath")), "", "carries an object"},
		{"agent sends a planner order", msg("pinkie.ingest.goliath.evt.deploy.activation.ordered", "goliath", "evt.deploy.activation.ordered", order), "", "not published by agents"},
		{"malformed subject", msg("pinkie.ingest.goliath", "goliath", "evt", hb("goliath", 1)), "", "is not pinkie.ingest"},
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

// orders is a fixed set of build orders (builder, request, target).
type orders map[[3]string]bool

func (o orders) BuildOrdered(builder, request, target string) (bool, error) {
	return o[[3]string{builder, request, target}], nil
}

func TestCheckRetriesWhenOrdersCannotBeRead(t *testing.T) {
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	c := &Checker{Schemas: set, Orders: failingOrders{}}
	k, _ := events.Lookup("deploy.built")
	e, _ := events.New(k, "tower", "deploy", time.Now(), events.DeployPhase{RequestID: "r1", Host: "goliath", Builder: "tower"}, events.WithSubject("goliath"))
	b, _ := events.Encode(e)
	block := "NATS/1.0\r\nNats-Stream-Source: OUTBOX:abc 1 > pinkie.ingest.tower.> evt.deploy.built\r\n\r\n"
	h, _ := nats.DecodeHeadersMsg([]byte(block))
	d := c.Check(events.IngestMessage{Subject: "pinkie.ingest.tower.evt.deploy.built", Header: h, HeaderSize: len(block), Payload: b})
	if d.Retry == nil || d.Accepted() || d.Reason != "" {
		t.Fatalf("got %+v, want a retry (not a dead letter) when orders cannot be read", d)
	}
}

type failingOrders struct{}

func (failingOrders) BuildOrdered(string, string, string) (bool, error) {
	return false, fmt.Errorf("DEPLOY unavailable")
}

func TestSameEvent(t *testing.T) {
	k, _ := events.Lookup("heartbeat")
	t0 := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	enc := func(t1 time.Time, counter uint64) []byte {
		e, err := events.New(k, "goliath", "heartbeat", t1, events.Heartbeat{Counter: counter, Instance: "x"}, events.WithID("same-id"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := events.Encode(e)
		return b
	}
	if !SameEvent(enc(t0, 1), enc(t0, 1)) {
		t.Error("identical events differ")
	}
	if !SameEvent(enc(t0, 1), enc(t0.Add(time.Minute), 1)) {
		t.Error("the same observation re-sent later must count as the same event")
	}
	if SameEvent(enc(t0, 1), enc(t0, 2)) {
		t.Error("same id with other data must differ")
	}
}
