package producers

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// pathTree makes a small tree: 3 regular files (100 + 1000 + 5000 bytes),
// a hard link to the 1000-byte file, a symlink and 2 subdirectories.
func pathTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "one"), make([]byte, 100), 0o644))
	must(os.WriteFile(filepath.Join(dir, "a", "two"), make([]byte, 1000), 0o644))
	must(os.WriteFile(filepath.Join(dir, "a", "b", "three"), make([]byte, 5000), 0o644))
	must(os.Link(filepath.Join(dir, "a", "two"), filepath.Join(dir, "a", "b", "two-again")))
	must(os.Symlink("/etc", filepath.Join(dir, "link")))
	return dir
}

func pathCollect(t *testing.T, raw string, env Env) ([]events.PathUsage, error) {
	t.Helper()
	spec, ok := Lookup("path")
	if !ok || !spec.DefaultEnabled {
		t.Fatal("path not in All() or not on by default")
	}
	c, err := spec.New(json.RawMessage(raw), Info{})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := c.(*Paths).Collect(context.Background(), env)
	var out []events.PathUsage
	for _, o := range obs {
		d := o.Data.(events.PathUsage)
		if o.Kind != "path" || o.Object != d.Path || o.ID == "" {
			t.Errorf("observation %+v", o)
		}
		out = append(out, d)
	}
	return out, err
}

func TestPathsWalk(t *testing.T) {
	dir := pathTree(t)
	missing := filepath.Join(dir, "nope")
	raw, _ := json.Marshal(map[string]any{"paths": []string{dir, missing}})
	got, err := pathCollect(t, string(raw), Env{Host: "h", Root: os.DirFS("/"), Now: time.Now})
	if err == nil || !strings.Contains(err.Error(), "path "+missing) {
		t.Errorf("err = %v, want it to name the missing path", err)
	}
	if len(got) != 2 {
		t.Fatalf("%d observations", len(got))
	}
	d := got[0]
	// Apparent size counts the hard link twice, like du --apparent-size
	// -l; disk bytes count it once.
	if !d.Complete || d.Files != 5 || d.Dirs != 2 || d.SizeBytes != 100+1000+5000+1000 || d.Verdict != "ok" || d.Unreadable != 0 {
		t.Errorf("tree: %+v", d)
	}
	if d.DiskBytes == 0 || d.DiskBytes > 3*4096*4 {
		t.Errorf("disk bytes %d", d.DiskBytes)
	}
	m := got[1]
	if m.Verdict != "warning" || m.Complete || !storageContainsSub(m.Reasons, "does not exist") {
		t.Errorf("missing path: %+v", m)
	}
}

func TestPathsBudget(t *testing.T) {
	dir := pathTree(t)
	// The file budget runs out.
	raw, _ := json.Marshal(map[string]any{"paths": []string{dir}, "max_files": 3})
	got, err := pathCollect(t, string(raw), Env{Host: "h", Root: os.DirFS("/"), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	if d := got[0]; d.Complete || d.Files+d.Dirs != 3 || !strings.Contains(d.IncompleteReason, "max_files") || d.Verdict != "ok" {
		t.Errorf("file budget: %+v", d)
	}
	// The time budget runs out: a clock that moves a second per look.
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	tick := func() time.Time { now = now.Add(time.Second); return now }
	raw, _ = json.Marshal(map[string]any{"paths": []string{dir}, "max_duration": "2s"})
	got, err = pathCollect(t, string(raw), Env{Host: "h", Root: os.DirFS("/"), Now: tick})
	if err != nil {
		t.Fatal(err)
	}
	if d := got[0]; d.Complete || !strings.Contains(d.IncompleteReason, "max_duration 2s") || d.DurationSeconds < 2 {
		t.Errorf("time budget: %+v", d)
	}
}

func TestPathsUnreadable(t *testing.T) {
	dir := pathTree(t)
	rel := strings.TrimPrefix(filepath.Join(dir, "a", "b"), "/")
	raw, _ := json.Marshal(map[string]any{"paths": []string{dir}})
	got, err := pathCollect(t, string(raw), Env{Host: "h", Root: storageDenyFS{os.DirFS("/"), rel}, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	if d := got[0]; d.Complete || d.Unreadable != 1 || d.Files != 3 || !strings.Contains(d.IncompleteReason, "permission denied") {
		t.Errorf("unreadable subdirectory: %+v", d)
	}
	// The listed directory itself unreadable: a warning.
	got, err = pathCollect(t, string(raw), Env{Host: "h", Root: storageDenyFS{os.DirFS("/"), strings.TrimPrefix(dir, "/")}, Now: time.Now})
	if err == nil || len(got) != 1 || got[0].Verdict != "warning" || !storageContainsSub(got[0].Reasons, "permission denied") {
		t.Errorf("unreadable path: %+v, %v", got, err)
	}
}

func TestPathsOptions(t *testing.T) {
	for _, raw := range []string{`{"paths":["relative/dir"]}`, `{"max_duration":"forever"}`, `{"max_files":0}`, `{"dirs":[]}`} {
		if _, err := NewPaths(json.RawMessage(raw)); err == nil {
			t.Errorf("options %s accepted", raw)
		}
	}
	p, err := NewPaths(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Collect(context.Background(), Env{Now: time.Now}); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no paths: %v", err)
	}
}
