package deploy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/nixcache"
)

const builtPath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-goliath"

// buildCommands answers nix build with builtPath and records the rest.
type buildCommands struct{ ran []string }

func (c *buildCommands) Run(_ context.Context, _ []string, name string, args ...string) (nix.Result, error) {
	c.ran = append(c.ran, name+" "+strings.Join(args, " "))
	for _, a := range args {
		if a == "build" {
			return nix.Result{Stdout: []byte(`[{"drvPath":"/nix/store/x.drv","outputs":{"out":"` + builtPath + `"}}]`)}, nil
		}
		if a == "path-info" {
			return nix.Result{Stdout: []byte(`[{"path":"` + builtPath + `","narHash":"sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s","narSize":1234,"references":["` + builtPath + `"]}]`)}, nil
		}
	}
	return nix.Result{}, nil
}

type fakeUploader struct {
	paths []string
	err   error
}

func (u *fakeUploader) UploadPaths(_ context.Context, infos []*nixcache.NarInfo) error {
	for _, ni := range infos {
		if len(ni.Sigs) != 0 {
			return errors.New("a builder's narinfo carries a signature")
		}
		u.paths = append(u.paths, ni.StorePath+" "+ni.URL)
	}
	return u.err
}

type phases struct{ kinds, reasons []string }

func (p *phases) Publish(_ context.Context, _ string, e events.Event) (events.Ack, error) {
	var d events.DeployPhase
	_ = e.DataAs(&d)
	p.kinds = append(p.kinds, e.Type())
	p.reasons = append(p.reasons, d.Reason)
	return events.Ack{}, nil
}

// TestBuilderUploadsToHubCache: a builder uploads a closure it built for
// another host into the hub's cache (unsigned, each NAR read from the
// store: no copy to a temporary cache first), not one it built for itself, not when --deploy-push
// names another place; a failed upload fails the build with the reason.
func TestBuilderUploadsToHubCache(t *testing.T) {
	for _, tc := range []struct {
		name, builder, push string
		upErr               error
		wantUploads         int
		wantCopy            string // a substring of a nix copy command, "" for none
		wantLast, wantWhy   string
	}{
		{name: "for another host", builder: "tower", wantUploads: 1, wantLast: ".deploy.built"},
		{name: "for itself", builder: "goliath", wantLast: ".deploy.built"},
		{name: "with --deploy-push", builder: "tower", push: "file:///cache", wantCopy: "copy --to file:///cache " + builtPath, wantLast: ".deploy.built"},
		{name: "upload refused", builder: "tower", upErr: errors.New("nix cache refused: boom"), wantUploads: 1,
			wantLast: ".deploy.build.failed", wantWhy: "to the hub's cache: nix cache refused: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c buildCommands
			up := &fakeUploader{err: tc.upErr}
			b := &Builder{Host: tc.builder, Nix: nix.Nix{Run: &c}, Role: true, PushTo: tc.push, Uploader: up,
				Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			var p phases
			if _, err := b.Build(context.Background(), &p, events.DeployPhase{RequestID: "r1", Host: "goliath", Flake: "git+file:///f"}); err != nil {
				t.Fatal(err)
			}
			if len(up.paths) != tc.wantUploads {
				t.Errorf("uploads %q, want %d", up.paths, tc.wantUploads)
			}
			for _, p := range up.paths {
				if want := builtPath + " nar/1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s.nar"; p != want {
					t.Errorf("uploaded %q, want %q (the closure path-info reports, its NAR as it is)", p, want)
				}
			}
			copied := ""
			for _, r := range c.ran {
				if strings.Contains(r, "copy --to") {
					copied = r
				}
			}
			if (tc.wantCopy == "") != (copied == "") || !strings.Contains(copied, tc.wantCopy) {
				t.Errorf("ran %q, want a copy with %q", c.ran, tc.wantCopy)
			}
			if last := p.kinds[len(p.kinds)-1]; !strings.Contains(last, tc.wantLast+".v") || !strings.Contains(p.reasons[len(p.reasons)-1], tc.wantWhy) {
				t.Errorf("last phase %s %q, want %s with %q", last, p.reasons[len(p.reasons)-1], tc.wantLast, tc.wantWhy)
			}
		})
	}
}
