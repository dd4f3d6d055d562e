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
