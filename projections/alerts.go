package projections

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// ActiveAlert is one firing alert (KV pinkie-alerts, key
// alert.<host>.<fingerprint>): the latest firing event's data, its id and
// time. Whether a silence covers it is decided when it is read (Silenced),
// since silences start and end with the clock.
type ActiveAlert struct {
	events.Alert
	EventID   string    `json:"event_id"`
	EventTime time.Time `json:"event_time"`
	Seq       Seqs      `json:"seq"`
}

// ActiveSilence is one silence (key silence.<id>) until it is removed or
// the alerter publishes its expiry.
type ActiveSilence struct {
	events.SilenceAdded
	Seq Seqs `json:"seq"`
}

// Alerts is the alerts projection: active alerts and silences.
type Alerts struct {
	alerts   map[string]*ActiveAlert
	silences map[string]*ActiveSilence
	dirty    dirtySet
}

// NewAlerts returns an empty alerts projection.
func NewAlerts() *Alerts {
	return &Alerts{alerts: map[string]*ActiveAlert{}, silences: map[string]*ActiveSilence{}, dirty: dirtySet{}}
}

func (*Alerts) Name() string   { return "alerts" }
func (*Alerts) Bucket() string { return events.BucketAlerts }
func (*Alerts) Sources() []Source {
	return []Source{{StreamAlerts, events.AlertSubjects}, {StreamAlertLog, events.SilenceSubjects}}
}

// AlertKey and SilenceKey are the KV keys of an alert and a silence.
func AlertKey(host, fingerprint string) string { return "alert." + host + "." + fingerprint }
func SilenceKey(id string) string              { return "silence." + id }

func (p *Alerts) Apply(in Input) {
	d, ok := decode(in)
	if !ok {
		return
	}
	switch d.kind {
	case "alert.firing", "alert.resolved":
		var a events.Alert
		if json.Unmarshal(d.ev.Data(), &a) != nil || a.OneShot || events.ValidHost(a.Host) != nil || a.Fingerprint == "" {
			return
		}
		key := AlertKey(a.Host, a.Fingerprint)
		rec := p.alerts[key]
		if rec == nil {
			if d.kind == "alert.resolved" {
				return
			}
			rec = &ActiveAlert{Seq: Seqs{}}
			p.alerts[key] = rec
		}
		if rec.Seq.applied(in) {
			return
		}
		if d.kind == "alert.resolved" {
			delete(p.alerts, key)
			p.dirty[key] = nil
			return
		}
		rec.Alert, rec.EventID, rec.EventTime = a, d.ev.ID(), d.ev.Time().UTC()
		p.dirty[key] = rec
	case "silence.added":
		var s events.SilenceAdded
		if json.Unmarshal(d.ev.Data(), &s) != nil || s.ID == "" || strings.ContainsAny(s.ID, ".*> ") {
			return
		}
		key := SilenceKey(s.ID)
		rec := p.silences[key]
		if rec == nil {
			rec = &ActiveSilence{Seq: Seqs{}}
			p.silences[key] = rec
		}
		if rec.Seq.applied(in) {
			return
		}
		rec.SilenceAdded = s
		p.dirty[key] = rec
	case "silence.removed":
		var s events.SilenceRemoved
		if json.Unmarshal(d.ev.Data(), &s) != nil {
			return
		}
		key := SilenceKey(s.ID)
		if _, ok := p.silences[key]; ok {
			delete(p.silences, key)
			p.dirty[key] = nil
		}
	}
}

func (p *Alerts) Flush() (map[string][]byte, error) { return p.dirty.flush() }

func (p *Alerts) Load(key string, value []byte) error {
	switch {
	case strings.HasPrefix(key, "alert."):
		var a ActiveAlert
		if err := json.Unmarshal(value, &a); err != nil {
			return fmt.Errorf("alerts record %s: %w", key, err)
		}
		p.alerts[key] = &a
	case strings.HasPrefix(key, "silence."):
		var s ActiveSilence
		if err := json.Unmarshal(value, &s); err != nil {
			return fmt.Errorf("alerts record %s: %w", key, err)
		}
		p.silences[key] = &s
	}
	return nil
}

// AlertLabels are the labels silences match on an alert.
func AlertLabels(a events.Alert) map[string]string {
	l := map[string]string{"host": a.Host, "rule": a.Rule, "object": a.Object, "severity": a.Severity}
	for k, v := range a.Labels {
		if _, ok := l[k]; !ok {
			l[k] = v
		}
	}
	return l
}

// Silenced returns the ids of the silences that cover alert a at time now.
func Silenced(a events.Alert, silences []events.SilenceAdded, now time.Time) []string {
	labels := AlertLabels(a)
	var ids []string
	for _, s := range silences {
		if now.Before(s.StartsAt) || !now.Before(s.EndsAt) {
			continue
		}
		match := true
		for k, pat := range s.Matchers {
			v, ok := labels[k]
			if m, err := path.Match(pat, v); !ok || err != nil || !m {
				match = false
				break
			}
		}
		if match {
			ids = append(ids, s.ID)
		}
	}
	return ids
}
