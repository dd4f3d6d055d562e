package fleetview

import (
	"testing"
	"time"
)

func TestShortDuration(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want string
	}{
		{"zero", 0, "0s"},
		{"seconds", 42*time.Second + 900*time.Millisecond, "42s"},
		{"minutes", 17*time.Minute + 59*time.Second, "17m"},
		{"an hour", time.Hour, "1h00m"},
		{"hours and minutes", 5*time.Hour + 7*time.Minute, "5h07m"},
		{"just under two days", 47*time.Hour + 59*time.Minute, "47h59m"},
		{"two days", 48 * time.Hour, "2d"},
		{"days", 12*24*time.Hour + 23*time.Hour, "12d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ShortDuration(tt.d); got != tt.want {
				t.Errorf("ShortDuration(%v) = %q, want %q", tt.d, got, tt.want)
			}
		})
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "-"},
		{now.Add(-3 * time.Minute), "3m ago"},
		{now.Add(-50 * time.Hour), "2d ago"},
		{now.Add(3 * time.Minute), "in 3m"},
		{now.Add(47 * time.Hour), "in 47h00m"},
		{now.Add(72 * time.Hour), "future 2026-12-10T12:00:00Z"},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), "future 9999-12-31T23:59:59Z"},
		{time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), "0001-01-01T00:00:01Z"},
	} {
		if got := Ago(now, tt.t); got != tt.want {
			t.Errorf("Ago(%s) = %q, want %q", tt.t, got, tt.want)
		}
	}
}
