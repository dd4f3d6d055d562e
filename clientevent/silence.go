package clientevent

import (
	"errors"
	"fmt"
	"time"

	"github.com/pinkiefleet/pinkie/consumers/alerter"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// Silence is the silence `pinkie silence add` asks for: matchers
// (LABEL=PATTERN arguments), from now (to the second) for forD (e.g. 30m,
// 2h, 3d) or until until (RFC 3339), one of the two. Every error is the
// user's and names the problem.
func Silence(id string, matchers []string, forD, until, comment, createdBy string, now time.Time) (events.SilenceAdded, error) {
	s := events.SilenceAdded{ID: id, StartsAt: now.UTC().Truncate(time.Second), Comment: comment, CreatedBy: createdBy}
	var err error
	if s.Matchers, err = events.ParseSilenceMatchers(matchers); err != nil {
		return s, err
	}
	if len(s.Matchers) == 0 {
		return s, errors.New("give at least one matcher, e.g. host=goliath rule=fs.usage")
	}
	switch {
	case forD != "" && until != "":
		return s, errors.New("give --for or --until, not both")
	case forD != "":
		d, err := alerter.ParseDuration(forD)
		if err != nil || d <= 0 {
			return s, fmt.Errorf("--for %q: want a positive duration such as 30m, 2h or 3d", forD)
		}
		s.EndsAt = s.StartsAt.Add(d)
	case until != "":
		t, err := time.Parse(time.RFC3339, until)
		if err != nil {
			return s, fmt.Errorf("--until %q: want RFC 3339, e.g. 2026-12-01T08:00:00Z", until)
		}
		if !t.After(s.StartsAt) {
			return s, fmt.Errorf("--until %s is not in the future", until)
		}
		s.EndsAt = t.UTC()
	default:
		return s, errors.New("say how long: --for DURATION or --until TIME")
	}
	if s.EndsAt.Sub(s.StartsAt) > events.SilenceMaxFor {
		return s, errors.New("a silence lasts at most 90 days; to silence a rule for good, disable it in the hub's alerts config")
	}
	return s, nil
}

// SilenceEvent builds the event of kind silence.added or silence.removed
// from data (a pointer to its struct) and checks it against its schema; it
// returns the event and the subject to publish it on. A schema error is a
// *UserError.
func SilenceEvent(set *schemas.Set, kind, source string, now time.Time, data any) (events.Event, string, error) {
	k, ok := events.Lookup(kind)
	if !ok {
		return events.Event{}, "", fmt.Errorf("unknown event kind %q", kind)
	}
	ev, err := events.New(k, source, "silence", now, data)
	if err != nil {
		return ev, "", err
	}
	if err := set.ValidateData(k.Type(), ev.Data()); err != nil {
		return ev, "", &UserError{err}
	}
	return ev, k.HubSubject(data), nil
}

// UserError is a client event its schema refuses: the user's mistake.
type UserError struct{ Err error }

func (e *UserError) Error() string { return e.Err.Error() }
func (e *UserError) Unwrap() error { return e.Err }
