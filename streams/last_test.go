package streams

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// ReadLastFleet finds nothing before a fleet is declared, then the newest
// declaration; a message that is not an event, or a stream that does not
// exist, is a *LastError saying which step failed.
func TestReadLastFleet(t *testing.T) {
	hub, auth := startAuthedTestHub(t)
	ctx := context.Background()
	rd, err := Connect(ctx, hub.ClientURL(), ReaderSeedFile(auth), "last test reader")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if m, err := ReadLastFleet(ctx, rd.JS); m != nil || err != nil {
		t.Fatalf("no fleet declared: %+v, %v; want nil, nil", m, err)
	}
	k, _ := events.Lookup("fleet.declared")
	for _, flake := range []string{"git+https://example.org/a", "git+https://example.org/b"} {
		e, err := events.New(k, "tester", "fleet", time.Now(), events.FleetDeclared{Flake: flake, Hosts: []events.DeclaredHost{}}, events.WithSubject("fleet"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := PublishEvent(ctx, hub.JetStream(), events.FleetDeclaredSubject, e); err != nil {
			t.Fatal(err)
		}
	}
	m, err := ReadLastFleet(ctx, rd.JS)
	if err != nil || m == nil {
		t.Fatalf("ReadLastFleet: %+v, %v", m, err)
	}
	var d events.FleetDeclared
	if err := m.Event.DataAs(&d); err != nil || d.Flake != "git+https://example.org/b" || m.Seq != 2 {
		t.Errorf("newest declaration: seq %d flake %q (%v), want seq 2 flake .../b", m.Seq, d.Flake, err)
	}
	if _, err := hub.JetStream().Publish(ctx, events.FleetDeclaredSubject, []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	var le *LastError
	if _, err := ReadLastFleet(ctx, rd.JS); !errors.As(err, &le) || le.Op != LastDecode || le.Seq != 3 {
		t.Errorf("garbage: err %v, want a *LastError at LastDecode, seq 3", err)
	}
	_, err = ReadLast(ctx, rd.JS, "NO_SUCH_STREAM", "x")
	if !errors.As(err, &le) || le.Op != LastOpen || !strings.HasPrefix(err.Error(), "stream NO_SUCH_STREAM: ") {
		t.Errorf("missing stream: err %v, want a *LastError at LastOpen naming it", err)
	}
}
