package deploy

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

type recorder struct{ got []events.Event }

func (r *recorder) Publish(_ context.Context, e events.Event) error {
	r.got = append(r.got, e)
	return nil
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
