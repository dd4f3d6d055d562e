package deploy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

type recorder struct{ got []events.Event }

func (r *recorder) Publish(_ context.Context, _ string, e events.Event) (events.Ack, error) {
	r.got = append(r.got, e)
	return events.Ack{}, nil
}

// An agent that died during an activation reports it as failed when it
// comes back, once, and does not run that request again.
func TestRecoverReportsAnInterruptedDeploy(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	a := &Activator{Host: "goliath", Profile: dir + "/system", StateDir: dir, Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	job := events.DeployPhase{RequestID: "r1", Host: "goliath", Goal: "switch", StorePath: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-sys"}
	if err := saveState(dir, state{InProgress: &job}); err != nil {
		t.Fatal(err)
	}
	var r recorder
	if err := a.Recover(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.got) != 1 || r.got[0].Type() != "pinkie.deploy.failed.v1" {
		t.Fatalf("published %v, want one failed", r.got)
	}
	var d events.DeployPhase
	_ = r.got[0].DataAs(&d)
	if d.RequestID != "r1" || !strings.Contains(d.Reason, "interrupted") {
		t.Errorf("failed event %+v", d)
	}
	// A second start publishes nothing; the redelivered request is done.
	if err := a.Recover(context.Background(), &r); err != nil || len(r.got) != 1 {
		t.Errorf("second Recover: %v, %d events", err, len(r.got))
	}
	k, _ := events.Lookup("deploy.requested")
	e, _ := events.New(k, "laptop", "cli", now, &events.DeployRequested{Host: "goliath"}, events.WithID("r1"))
	if err := a.Handle(context.Background(), &r, Delivery{Event: e, Kind: k.Name, Data: &events.DeployRequested{Host: "goliath"}, LatestRequestID: "r1"}); err != nil || len(r.got) != 1 {
		t.Errorf("redelivered request: %v, %d events", err, len(r.got))
	}
	// A request for another host is refused for good.
	if err := a.Handle(context.Background(), &r, Delivery{Event: e, Kind: k.Name, Data: &events.DeployRequested{Host: "koishi"}}); err == nil || !strings.Contains(err.Error(), "not for this host") {
		t.Errorf("koishi's request: %v", err)
	}
}

type hubLink struct{ err error }

func (h hubLink) Reach(context.Context) error { return h.err }

// TestRecoverConfirmsASwitchedDeploy: an agent restarted after the switch
// (the switch may restart it) still owes the hub round trip; it reports
// activated when it reaches the hub by the deadline, and restores the
// previous generation when it cannot.
func TestRecoverConfirmsASwitchedDeploy(t *testing.T) {
	const (
		next = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-sys-2"
		prev = "/nix/store/1123456789abcdfghijklmnpqrsvwxyz-sys-1"
	)
	for _, tc := range []struct {
		name      string
		hub       error
		wantPhase string
		wantRan   string
		reason    string
	}{
		{"reaches the hub", nil, "activated", "", ""},
		{"cut off", errors.New("no answer"), "rolledback", prev + "/bin/switch-to-configuration test", "cut the agent off from the hub: no round trip to the hub for 300ms after the switch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var run commands
			a := &Activator{Host: "goliath", Profile: dir + "/system", StateDir: dir, Run: &run, Hub: hubLink{tc.hub},
				RollbackTimeout: 300 * time.Millisecond, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			job := events.DeployPhase{RequestID: "r1", Host: "goliath", Goal: "test", StorePath: next, PreviousPath: prev}
			by := time.Now().Add(300 * time.Millisecond)
			if err := saveState(dir, state{InProgress: &job, ConfirmBy: &by}); err != nil {
				t.Fatal(err)
			}
			var r recorder
			if err := a.Recover(context.Background(), &r); err != nil {
				t.Fatal(err)
			}
			if len(r.got) != 1 || r.got[0].Type() != "pinkie.deploy."+tc.wantPhase+".v1" {
				t.Fatalf("published %v, want one %s", r.got, tc.wantPhase)
			}
			var d events.DeployPhase
			_ = r.got[0].DataAs(&d)
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q, want it to say %q", d.Reason, tc.reason)
			}
			if got := strings.Join(run.ran, "\n"); got != tc.wantRan {
				t.Errorf("ran %q, want %q", got, tc.wantRan)
			}
			if s, _ := loadState(dir); s.InProgress != nil || s.ConfirmBy != nil || !s.done("r1") {
				t.Errorf("state after Recover: %+v", s)
			}
		})
	}
}
