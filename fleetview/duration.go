package fleetview

import (
	"fmt"
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
