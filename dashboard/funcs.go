package dashboard

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/fleetview"
)

func relTime(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + fleetview.ShortDuration(-d)
	}
	return fleetview.ShortDuration(d) + " ago"
}

func funcs(now func() time.Time) template.FuncMap {
	return template.FuncMap{
		"ago": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				return relTime(now(), v)
			case *time.Time:
				if v == nil {
					return "never"
				}
				return relTime(now(), *v)
			}
			return ""
		},
		"iso": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				if v.IsZero() {
					return ""
				}
				return v.UTC().Format(time.RFC3339)
			case *time.Time:
				if v != nil {
					return v.UTC().Format(time.RFC3339)
				}
			}
			return ""
		},
		"bytes": func(v any) string {
			switch n := v.(type) {
			case uint64:
				return formatBytes(float64(n))
			case int64:
				return formatBytes(float64(n))
			case float64:
				return formatBytes(n)
			case int:
				return formatBytes(float64(n))
			}
			return fmt.Sprint(v)
		},
		"pct":  func(f float64) string { return fmt.Sprintf("%.0f%%", f) },
		"frac": func(f float64) string { return fmt.Sprintf("%.3f", f/100) },
		"join": strings.Join,
		"deref": func(p any) any {
			switch v := p.(type) {
			case *int:
				if v != nil {
					return *v
				}
			case *uint64:
				if v != nil {
					return *v
				}
			case *bool:
				if v != nil {
					return *v
				}
			}
			return nil
		},
		"short": func(s string, n int) string {
			if len(s) > n {
				return s[:n] + "…"
			}
			return s
		},
		"sev": func(m map[string]int, k string) int { return m[k] },
		"dur": func(secs float64) string { return fleetview.ShortDuration(time.Duration(secs * float64(time.Second))) },
		"phaseClass": func(p string) string {
			switch p {
			case "activated", "succeeded", "ok":
				return "ok"
			case "failed", "rolledback", "build.failed", "fail", "never":
				return "failing"
			case "skipped", "warn":
				return "warning"
			}
			return "running"
		},
		"now": func() time.Time { return now() },
		// guestClass colours a guest's status.
		"guestClass": func(status string) string {
			switch status {
			case "running":
				return "ok"
			case "failed", "missing":
				return "failing"
			}
			return "warning"
		},
		// rate shows a per-second rate, or — when there is none yet.
		"rate": func(v *float64, unit string) string {
			if v == nil {
				return "—"
			}
			if unit == "%" {
				return fmt.Sprintf("%.1f%%", *v)
			}
			return formatBytes(*v) + "/s"
		},
	}
}
