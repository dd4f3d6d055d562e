package deploy

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
)

type storedPhase struct {
	subject string
	data    []byte
}

func phaseMsg(t *testing.T, sender, phase string, p events.DeployPhase) storedPhase {
	t.Helper()
	k, ok := events.Lookup("deploy." + phase)
	if !ok {
		t.Fatalf("no kind deploy.%s", phase)
	}
	e, err := events.New(k, sender, "deploy", time.Unix(1700000000, 0), &p, events.WithSubject(p.Host))
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return storedPhase{events.DeploySubject(sender, phase), b}
}

// nextOf returns the messages in order, then blocks until ctx ends.
func nextOf(ctx context.Context, msgs []storedPhase) NextPhase {
	return func() (string, []byte, error) {
		if len(msgs) == 0 {
			<-ctx.Done()
			return "", nil, errors.New("follow: stopped")
		}
		m := msgs[0]
		msgs = msgs[1:]
		return m.subject, m.data, nil
	}
}

func TestFollow(t *testing.T) {
	hosts := []fleetview.DeployHost{
		{Host: "goliath", RequestID: "r1", Outcome: "requested", Phases: []string{"requested"}},
		{Host: "koishi", RequestID: "r2", Outcome: "requested", Phases: []string{"requested"}},
		{Host: "tower", Outcome: "build.failed"},
	}
	msgs := []storedPhase{
		phaseMsg(t, "tower", "build.started", events.DeployPhase{RequestID: "r1", Host: "goliath", Builder: "tower"}),
		// Another request's phase, and a phase claiming another host: ignored.
		phaseMsg(t, "goliath", "activated", events.DeployPhase{RequestID: "r9", Host: "goliath"}),
		phaseMsg(t, "koishi", "activated", events.DeployPhase{RequestID: "r1", Host: "koishi"}),
		phaseMsg(t, "tower", "built", events.DeployPhase{RequestID: "r1", Host: "goliath", StorePath: "/nix/store/a-goliath", DurationSeconds: 2}),
		phaseMsg(t, "koishi", "failed", events.DeployPhase{RequestID: "r2", Host: "koishi", Reason: "health check failed"}),
		phaseMsg(t, "goliath", "activated", events.DeployPhase{RequestID: "r1", Host: "goliath", StorePath: "/nix/store/a-goliath", FetchedPaths: 3, FetchedBytes: 300}),
		// After its end a request takes no more phases.
		phaseMsg(t, "koishi", "activated", events.DeployPhase{RequestID: "r2", Host: "koishi"}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var lines bytes.Buffer
	if err := Follow(ctx, nextOf(ctx, msgs), hosts, &lines); err != nil {
		t.Fatalf("Follow: %v", err)
	}
	want := []fleetview.DeployHost{
		{Host: "goliath", RequestID: "r1", Outcome: "activated", Phases: []string{"requested", "build.started", "built", "activated"},
			StorePath: "/nix/store/a-goliath", FetchedPaths: 3, FetchedBytes: 300},
		{Host: "koishi", RequestID: "r2", Outcome: "failed", Phases: []string{"requested", "failed"}, Reason: "health check failed"},
		{Host: "tower", Outcome: "build.failed"},
	}
	if diff := cmp.Diff(want, hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	for _, l := range []string{"build.started      on tower [tower]", "fetched 3 paths, 300 bytes from the hub's cache", "failed             health check failed"} {
		if !strings.Contains(lines.String(), l) {
			t.Errorf("lines lack %q:\n%s", l, lines.String())
		}
	}
}

// A request without an outcome when the context ends is a timeout.
func TestFollowTimesOut(t *testing.T) {
	hosts := []fleetview.DeployHost{
		{Host: "goliath", RequestID: "r1", Outcome: "requested"},
		{Host: "koishi", RequestID: "r2", Outcome: "requested"},
	}
	msgs := []storedPhase{phaseMsg(t, "koishi", "activated", events.DeployPhase{RequestID: "r2", Host: "koishi"})}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := Follow(ctx, nextOf(ctx, msgs), hosts, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Follow = %v, want the context's deadline", err)
	}
	if hosts[0].Outcome != "timeout" || hosts[1].Outcome != "activated" {
		t.Errorf("outcomes %q, %q; want timeout, activated", hosts[0].Outcome, hosts[1].Outcome)
	}
}

func TestFailed(t *testing.T) {
	hosts := []fleetview.DeployHost{{Host: "a", Outcome: "activated"}, {Host: "b", Outcome: "requested"},
		{Host: "c", Outcome: "rolledback"}, {Host: "d", Outcome: "timeout"}, {Host: "e", Outcome: "build.failed"}}
	if got := Failed(hosts, false); got != 3 {
		t.Errorf("not followed: Failed = %d, want 3 (rolledback, timeout, build.failed)", got)
	}
	if got := Failed(hosts, true); got != 4 {
		t.Errorf("followed: Failed = %d, want 4 (requested too)", got)
	}
}
