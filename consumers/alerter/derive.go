package alerter

import (
	"encoding/json"
	"math"
	"time"
)

// neverHours stands for "not filling up" in predicted_full_hours.
const neverHours = 1e9

// derive builds a rule's environment from an event: its data fields, host,
// object and kind, plus derived fields the producers do not compute:
//
//	fs:        growth_bytes_per_hour, predicted_full_hours (linear fit of
//	           used_bytes over the last FitWindow)
//	path:      growth_bytes_per_hour (fit of size_bytes)
//	postgres:  growth_bytes_per_hour (fit of size_bytes)
//	zfs:       vdev_errors, scrub_age_days, never_scrubbed
//	btrfs:     errors_above_baseline
//	fail2ban:  bans_in_window
//	guest:     restarts_in_hour (increase of restarts over the last hour)
//	systemd:   declared (the host's declared units with their state)
//
// It also updates the host's series, bans and tick records.
func (e *Engine) derive(p parsed, hs *hostState, now time.Time) map[string]any {
	env := make(map[string]any, len(p.data)+6)
	for k, v := range p.data {
		env[k] = v
	}
	env["host"], env["object"], env["kind"] = p.host, p.object, p.kind
	t := p.ev.Time()
	switch p.kind {
	case "fs":
		slope := e.fit(hs, "fs|"+p.object, t, num(p.data["used_bytes"]))
		env["growth_bytes_per_hour"] = slope
		env["predicted_full_hours"] = neverHours
		if slope > 0 {
			env["predicted_full_hours"] = num(p.data["available_bytes"]) / slope
		}
	case "path", "postgres":
		env["growth_bytes_per_hour"] = e.fit(hs, p.kind+"|"+p.object, t, num(p.data["size_bytes"]))
	case "zfs":
		var errs float64
		if vdevs, ok := p.data["vdevs"].([]any); ok {
			for _, v := range vdevs {
				if m, ok := v.(map[string]any); ok {
					errs += num(m["read_errors"]) + num(m["write_errors"]) + num(m["checksum_errors"])
				}
			}
		}
		env["vdev_errors"] = errs
		age, never := 0.0, false
		if scan, ok := p.data["scan"].(map[string]any); ok {
			switch {
			case scan["function"] == "none":
				age, never = neverHours, true
			case scan["state"] == "in_progress":
				age = 0
			case scan["age_seconds"] != nil:
				age = num(scan["age_seconds"]) / 86400
			case scan["finished"] != nil:
				if f, err := time.Parse(time.RFC3339, scan["finished"].(string)); err == nil {
					age = t.Sub(f).Hours() / 24
				}
			}
		}
		env["scrub_age_days"], env["never_scrubbed"] = age, never
	case "btrfs":
		var above float64
		if devs, ok := p.data["devices"].([]any); ok {
			for _, d := range devs {
				m, _ := d.(map[string]any)
				cur, _ := m["errors"].(map[string]any)
				base, _ := m["baseline"].(map[string]any)
				for k, v := range cur {
					if d := num(v) - num(base[k]); d > 0 {
						above += d
					}
				}
			}
		}
		env["errors_above_baseline"] = above
	case "systemd":
		keepSystemd(hs, t, p.data)
		env["declared"] = declaredUnits(hs.Declared, env)
	case "guest":
		key := "guest|" + p.object
		restarts := num(p.data["restarts"])
		e.fit(hs, key, t, restarts)
		env["restarts_in_hour"] = increaseSince(hs.Series[key], t.Add(-time.Hour), restarts)
	case "fail2ban":
		if p.data["action"] == "ban" {
			hs.Bans = append(hs.Bans, t)
		}
		env["bans_in_window"] = e.bansInWindow(hs, now)
	}
	// Keep the latest data of kinds that rules re-evaluate on ticks.
	for _, r := range e.ticking {
		if r.Kind == p.kind {
			if hs.Records == nil {
				hs.Records = map[string]*record{}
			}
			b, _ := json.Marshal(p.data)
			hs.Records[p.kind+"|"+p.object] = &record{Kind: p.kind, Object: p.object, Time: t, Data: b}
			break
		}
	}
	return env
}

// bansInWindow counts bans in the window before now (by the bans' log
// times) and forgets older ones.
func (e *Engine) bansInWindow(hs *hostState, now time.Time) float64 {
	from := now.Add(-e.opts.BanWindow)
	kept := hs.Bans[:0]
	for _, b := range hs.Bans {
		if b.After(from) {
			kept = append(kept, b)
		}
	}
	hs.Bans = kept
	return float64(len(kept))
}

// increaseSince is how much a counter rose from its lowest value stored
// since from to now (0 after a reset below every stored value).
func increaseSince(s []point, from time.Time, now float64) float64 {
	low := now
	for _, p := range s {
		if !p.T.Before(from) && p.V < low {
			low = p.V
		}
	}
	return now - low
}

// seriesStep is the least spacing of stored points (at most 72 per 6 h).
const seriesStep = 5 * time.Minute

// fit adds (t, v) to a series and returns the least-squares slope per hour
// over the points within FitWindow of t, including the newest. It needs at
// least 3 points spanning 30 minutes; otherwise it returns 0.
func (e *Engine) fit(hs *hostState, key string, t time.Time, v float64) float64 {
	if hs.Series == nil {
		hs.Series = map[string][]point{}
	}
	s := hs.Series[key]
	from := t.Add(-e.opts.FitWindow)
	kept := s[:0]
	for _, p := range s {
		if !p.T.Before(from) && !p.T.After(t) {
			kept = append(kept, p)
		}
	}
	s = kept
	pts := append(append([]point{}, s...), point{T: t, V: v})
	if len(s) == 0 || t.Sub(s[len(s)-1].T) >= seriesStep {
		s = append(s, point{T: t, V: v})
	}
	hs.Series[key] = s
	return slope(pts)
}

// slope is the least-squares slope of points in value units per hour; 0
// with fewer than 3 points or a span under 30 minutes.
func slope(pts []point) float64 {
	if len(pts) < 3 || pts[len(pts)-1].T.Sub(pts[0].T) < 30*time.Minute {
		return 0
	}
	t0 := pts[0].T
	var n, sx, sy, sxx, sxy float64
	for _, p := range pts {
		x := p.T.Sub(t0).Hours()
		n++
		sx += x
		sy += p.V
		sxx += x * x
		sxy += x * p.V
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

func num(v any) float64 {
	f := toFloat(v)
	if math.IsNaN(f) {
		return 0
	}
	return f
}
