package producers

import (
	"errors"
	"slices"
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

func TestBuildOnce(t *testing.T) {
	info := Info{Instance: "collect", Version: "test"}
	for _, tc := range []struct {
		name    string
		names   []string
		from    string
		want    []string
		wantErr error
	}{
		{"one streamer from a saved log", []string{"login"}, "/var/log/auth.log.1", []string{"login"}, nil},
		{"a collector", []string{"profile"}, "", []string{"profile"}, nil},
		{"a saved log for a collector", []string{"profile"}, "/var/log/auth.log.1", nil, ErrFromOneStreamer},
		{"a saved log for two", []string{"login", "fail2ban"}, "/var/log/auth.log.1", nil, ErrFromOneStreamer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			built, err := Config{}.BuildOnce(tc.names, tc.from, info)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			var got []string
			for _, b := range built {
				got = append(got, b.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("built %v, want %v", got, tc.want)
			}
		})
	}
}
