package deploy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
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
	}
	return nix.Result{}, nil
}

type fakeUploader struct {
	dirs []string
	err  error
}

func (u *fakeUploader) UploadDir(_ context.Context, dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return err // the directory must exist while it is uploaded
	}
	u.dirs = append(u.dirs, dir)
	return u.err
}

type phases struct{ kinds, reasons []string }

func (p *phases) Publish(_ context.Context, e events.Event) error {
	var d events.DeployPhase
	_ = e.DataAs(&d)
	p.kinds = append(p.kinds, e.Type())
	p.reasons = append(p.reasons, d.Reason)
	return nil
}

// TestBuilderUploadsToHubCache: a builder uploads a closure it built for
// another host into the hub's cache (unsigned, through a temporary
// file:// cache), not one it built for itself, not when --deploy-push
// names another place; a failed upload fails the build with the reason.
func TestBuilderUploadsToHubCache(t *testing.T) {
	for _, tc := range []struct {
		name, builder, push string
		upErr               error
		wantUploads         int
		wantCopy            string // a substring of a nix copy command, "" for none
		wantLast, wantWhy   string
	}{
		{name: "for another host", builder: "tower", wantUploads: 1, wantCopy: "copy --to file:///", wantLast: ".deploy.built"},
		{name: "for itself", builder: "goliath", wantLast: ".deploy.built"},
		{name: "with --deploy-push", builder: "tower", push: "file:///cache", wantCopy: "copy --to file:///cache " + builtPath, wantLast: ".deploy.built"},
		{name: "upload refused", builder: "tower", upErr: errors.New("nix cache refused: boom"), wantUploads: 1, wantCopy: "copy --to file:///",
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
			if len(up.dirs) != tc.wantUploads {
				t.Errorf("uploads %q, want %d", up.dirs, tc.wantUploads)
			}
			for _, d := range up.dirs {
				if _, err := os.Stat(d); err == nil {
					t.Errorf("temporary cache %s left behind", d)
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
