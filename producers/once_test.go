package producers

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    any
		verdict string
		reasons []string
	}{
		{"storage", map[string]any{"verdict": "warning", "reasons": []string{"hot", "old"}}, "warning", []string{"hot", "old"}},
		{"no verdict", map[string]any{"kernel": "6.12"}, "", nil},
		{"not an object", 42, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, r := Verdict(tc.data)
			if v != tc.verdict || !cmp.Equal(r, tc.reasons) {
				t.Errorf("Verdict = %q %q, want %q %q", v, r, tc.verdict, tc.reasons)
			}
		})
	}
}

func TestWithOption(t *testing.T) {
	pc := ProducerConfig{Options: []byte(`{"file":"/a","n":1}`)}
	got := pc.WithOption("follow", false)
	if diff := cmp.Diff(`{"file":"/a","follow":false,"n":1}`, string(got.Options)); diff != "" {
		t.Errorf("WithOption (-want +got):\n%s", diff)
	}
	if string(pc.Options) != `{"file":"/a","n":1}` {
		t.Errorf("WithOption changed its receiver: %s", pc.Options)
	}
	if got := (ProducerConfig{}).WithOption("file", "/x"); string(got.Options) != `{"file":"/x"}` {
		t.Errorf("WithOption on no options = %s", got.Options)
	}
}
