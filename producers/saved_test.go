package producers

import (
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSavedInputs: the producers that judge saved input offline say so
// in their Spec, completely, and refuse input that is not theirs.
func TestSavedInputs(t *testing.T) {
	got := map[string]string{}
	for _, s := range All() {
		in := s.Saved
		if in == nil {
			continue
		}
		got[s.Name] = in.Flag
		if in.What == "" || in.Limit <= 0 || in.Judge == nil {
			t.Errorf("%s: incomplete SavedInput %+v", s.Name, *in)
			continue
		}
		if obs, err := in.Judge([]byte("not what any producer reads\n"), time.Now()); err == nil && len(obs) > 0 {
			t.Errorf("%s: judged garbage as %+v", s.Name, obs)
		}
	}
	// A real saved input is judged into observations of the producer's kind.
	md, _ := Lookup("mdraid")
	b, err := os.ReadFile("testdata/mdraid/proc/mdstat")
	if err != nil {
		t.Fatal(err)
	}
	obs, err := md.Saved.Judge(b, time.Now())
	if err != nil || len(obs) == 0 {
		t.Fatalf("mdraid judged testdata/mdraid/proc/mdstat: %d observations, err %v", len(obs), err)
	}
	for _, o := range obs {
		if o.Kind != "mdraid" || o.Object == "" || o.Data == nil {
			t.Errorf("observation %+v: want kind mdraid with an object and data", o)
		}
	}
	want := map[string]string{"smart": "smartctl-json", "zfs": "zpool-status", "mdraid": "mdstat"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("saved inputs (-want +got):\n%s", diff)
	}
}
