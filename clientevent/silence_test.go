package clientevent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

func TestSilence(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 500, time.UTC)
	s, err := Silence("ab12", []string{"host=goliath", "rule=fs.usage"}, "2h", "", "resizing", "ops@laptop", now)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "ab12" || len(s.Matchers) != 2 || !s.StartsAt.Equal(now.Truncate(time.Second)) || s.EndsAt.Sub(s.StartsAt) != 2*time.Hour || s.Comment != "resizing" || s.CreatedBy != "ops@laptop" {
		t.Errorf("Silence: %+v", s)
	}
	if s, err := Silence("x", []string{"host=a"}, "", "2026-12-08T08:00:00Z", "", "", now); err != nil || !s.EndsAt.Equal(time.Date(2026, 12, 8, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("--until: %+v, %v", s, err)
	}
	for _, tc := range []struct {
		name, forD, until, want string
		matchers                []string
	}{
		{"no matcher", "2h", "", "at least one matcher", nil},
		{"both", "2h", "2026-12-08T08:00:00Z", "not both", []string{"host=a"}},
		{"neither", "", "", "say how long", []string{"host=a"}},
		{"negative", "-2h", "", "positive duration", []string{"host=a"}},
		{"past", "", "2026-12-01T08:00:00Z", "not in the future", []string{"host=a"}},
		{"not a time", "", "tomorrow", "RFC 3339", []string{"host=a"}},
		{"too long", "91d", "", "at most 90 days", []string{"host=a"}},
		{"bad matcher", "2h", "", "", []string{"goliath"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Silence("x", tc.matchers, tc.forD, tc.until, "", "", now); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestSilenceEvent(t *testing.T) {
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	r := events.SilenceRemoved{ID: "ab12", RemovedBy: "ops@laptop"}
	e, subject, err := SilenceEvent(set, "silence.removed", "laptop", now, &r)
	if err != nil || subject == "" || !strings.HasPrefix(e.Type(), events.SubjectPrefix) {
		t.Fatalf("SilenceEvent: %v on %q, %v", e.Type(), subject, err)
	}
	var ue *UserError
	if _, _, err := SilenceEvent(set, "silence.removed", "laptop", now, &events.SilenceRemoved{ID: "ab12", RemovedBy: strings.Repeat("x", 300)}); !errors.As(err, &ue) {
		t.Errorf("a silence.removed with a 300-byte removed_by: %v, want a *UserError", err)
	}
}
