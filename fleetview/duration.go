package fleetview

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ShortDuration renders a duration as the CLI and the dashboard show ages
// and uptimes: seconds under a minute ("42s"), minutes under an hour
// ("17m"), hours and minutes under two days ("5h07m"), then whole days
// ("12d").
func ShortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// ParseAge reads a duration with a d (days) or w (weeks) suffix, or any
// Go duration (36h).
func ParseAge(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f < 0 {
				return 0, fmt.Errorf("%q: want a duration such as 7d, 2w or 36h", s)
			}
			return time.Duration(f * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a duration such as 7d, 2w or 36h", s)
	}
	return d, nil
}

// HumanAge prints an age as 3d4h, 5h12m or 42s.
func HumanAge(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// Ago renders how long ago t was: "3m ago", "2h ago", "4d ago"; a
// time ahead of now as "in 3m", and one more than two days ahead (a host's
// clock, or an event from before the hub refused such times) as its date.
func Ago(now, t time.Time) string {
	switch {
	case t.IsZero():
		return "-"
	case t.After(now.Add(48 * time.Hour)):
		return "future " + t.UTC().Format(time.RFC3339)
	case t.After(now):
		return "in " + ShortDuration(t.Sub(now))
	case t.Before(now.AddDate(-100, 0, 0)):
		return t.UTC().Format(time.RFC3339)
	}
	return ShortDuration(now.Sub(t)) + " ago"
}
