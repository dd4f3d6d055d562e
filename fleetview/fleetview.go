// Package fleetview holds the read-side shapes that the CLI's --json output
// and the dashboard's /api/ share, and the pure functions that build them
// from projection bucket records. Keeping one definition keeps the two in
// step: `pinkie hosts goliath --json` and GET /api/hosts/goliath print the
// same document.
package fleetview

import (
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
)

// HostView is one host with its storage (`pinkie hosts HOST --json`,
// GET /api/hosts/HOST).
type HostView struct {
	*projections.Host
	Drives []projections.Drive `json:"drives"`
}

// Silence is one silence as `pinkie silence ls --json` and
// GET /api/silences show it.
type Silence struct {
	events.SilenceAdded
	Active bool `json:"active"`
	// Silencing counts the firing alerts it covers now.
	Silencing int `json:"silencing"`
}

// LastDeploy is one host's line of `pinkie last-deploy --json`.
type LastDeploy struct {
	Host string `json:"host"`
	// Status: ok, warn (beyond --warn-after), fail (beyond --fail-after),
	// never (never deployed: counts as beyond both).
	Status     string             `json:"status"`
	AgeSeconds *float64           `json:"age_seconds,omitempty"`
	Declared   bool               `json:"declared"`
	Record     *lastdeploy.Record `json:"record,omitempty"`
}

// NewLastDeploy judges a host's last-deploy record against the thresholds.
func NewLastDeploy(host string, r *lastdeploy.Record, declared bool, now time.Time, warn, fail time.Duration) LastDeploy {
	l := LastDeploy{Host: host, Declared: declared, Record: r, Status: "never"}
	if r != nil && r.LastSuccess != nil {
		age := now.Sub(r.LastSuccess.Time)
		s := age.Seconds()
		l.AgeSeconds = &s
		switch {
		case age > fail:
			l.Status = "fail"
		case age > warn:
			l.Status = "warn"
		default:
			l.Status = "ok"
		}
	}
	return l
}

// JudgeLastDeploys judges every host the records know and every declared
// one (never deployed when it has no record), sorted by name.
func JudgeLastDeploys(records map[string]*lastdeploy.Record, declared []string, now time.Time, warn, fail time.Duration) []LastDeploy {
	isDeclared := map[string]bool{}
	hosts := slices.Collect(maps.Keys(records))
	for _, h := range declared {
		if _, ok := records[h]; !ok && !isDeclared[h] {
			hosts = append(hosts, h)
		}
		isDeclared[h] = true
	}
	sort.Strings(hosts)
	var out []LastDeploy
	for _, h := range hosts {
		out = append(out, NewLastDeploy(h, records[h], isDeclared[h], now, warn, fail))
	}
	return out
}

// Hosts decodes inventory records, sorted by name, without checkpoints.
func Hosts(recs map[string][]byte) ([]*projections.Host, error) {
	hosts := []*projections.Host{}
	for k, v := range recs {
		var h projections.Host
		if err := json.Unmarshal(v, &h); err != nil {
			return nil, fmt.Errorf("pinkie-inventory %s: %w", k, err)
		}
		h.Seq = nil
		hosts = append(hosts, &h)
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Host < hosts[j].Host })
	return hosts, nil
}

// HostState is how a host is listed: online, silent (its heartbeats
// stopped) or unknown.
func HostState(h *projections.Host) string {
	switch {
	case h.Online:
		return "online"
	case h.SilentSince != nil:
		return "silent"
	}
	return "unknown"
}

// Drives decodes storage records, sorted by kind and object.
func Drives(recs map[string][]byte) ([]projections.Drive, error) {
	out := []projections.Drive{}
	for k, b := range recs {
		var d projections.Drive
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("pinkie-drives %s: %w", k, err)
		}
		d.Seq = nil
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Host != out[j].Host {
			return out[i].Host < out[j].Host
		}
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Object < out[j].Object
	})
	return out, nil
}

// Alerts decodes the alerts bucket into the active alerts, most severe
// first, each marked with the silences covering it at now, and the
// silences, soonest ending first.
func Alerts(recs map[string][]byte, now time.Time) ([]projections.ActiveAlert, []events.SilenceAdded, error) {
	var alerts []projections.ActiveAlert
	var silences []events.SilenceAdded
	for k, v := range recs {
		switch {
		case strings.HasPrefix(k, "alert."):
			var a projections.ActiveAlert
			if err := json.Unmarshal(v, &a); err != nil {
				return nil, nil, fmt.Errorf("pinkie-alerts %s: %w", k, err)
			}
			a.Seq = nil
			alerts = append(alerts, a)
		case strings.HasPrefix(k, "silence."):
			var s projections.ActiveSilence
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, nil, fmt.Errorf("pinkie-alerts %s: %w", k, err)
			}
			silences = append(silences, s.SilenceAdded)
		}
	}
	for i := range alerts {
		by := projections.Silenced(alerts[i].Alert, silences, now)
		alerts[i].Silenced, alerts[i].SilencedBy = len(by) > 0, by
	}
	sort.Slice(alerts, func(i, j int) bool {
		a, b := alerts[i], alerts[j]
		if SeverityRank(a.Severity) != SeverityRank(b.Severity) {
			return SeverityRank(a.Severity) < SeverityRank(b.Severity)
		}
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Object < b.Object
	})
	sort.Slice(silences, func(i, j int) bool { return silences[i].EndsAt.Before(silences[j].EndsAt) })
	return alerts, silences, nil
}

// Silences lists the silences active at now (all: also ended ones the hub
// has not expired yet) with how many firing alerts each covers.
func Silences(alerts []projections.ActiveAlert, silences []events.SilenceAdded, now time.Time, all bool) []Silence {
	shown := []Silence{}
	for _, s := range silences {
		active := !now.Before(s.StartsAt) && now.Before(s.EndsAt)
		if !active && !all {
			continue
		}
		v := Silence{SilenceAdded: s, Active: active}
		for _, al := range alerts {
			for _, id := range al.SilencedBy {
				if id == s.ID {
					v.Silencing++
				}
			}
		}
		shown = append(shown, v)
	}
	return shown
}

// SeverityRank orders severities for listing: critical 0, warning 1,
// info and anything else 2.
func SeverityRank(s string) int { return min(events.SeverityRank(s), 2) }

// FilterAlerts keeps the alerts of hosts matching hostPattern (a shell
// pattern; "" for all) at least as severe as minSeverity, and says whether
// an unsilenced warning or critical one is among them.
func FilterAlerts(all []projections.ActiveAlert, hostPattern, minSeverity string) (shown []projections.ActiveAlert, firing bool) {
	for _, al := range all {
		if hostPattern != "" {
			if ok, _ := path.Match(hostPattern, al.Host); !ok {
				continue
			}
		}
		if SeverityRank(al.Severity) > SeverityRank(minSeverity) {
			continue
		}
		shown = append(shown, al)
		if !al.Silenced && SeverityRank(al.Severity) <= 1 {
			firing = true
		}
	}
	return shown, firing
}

// DeployHost is one host's deploy as `pinkie deploy --json` and
// POST /api/deploys report it.
type DeployHost struct {
	Host         string   `json:"host"`
	BuildOn      string   `json:"build_on"`
	Goal         string   `json:"goal"`
	RequestID    string   `json:"request_id,omitempty"`
	Seq          uint64   `json:"seq,omitempty"`
	StorePath    string   `json:"store_path,omitempty"`
	BuildSeconds float64  `json:"build_seconds,omitempty"`
	Phases       []string `json:"phases,omitempty"`
	// Outcome: planned (dry run), requested (no --wait), activated,
	// failed, rolledback, build.failed, skipped, timeout.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	// Upload is what a local build put into the hub's Nix cache.
	Upload *CacheUpload `json:"upload,omitempty"`
	// FetchedPaths and FetchedBytes are what the target's agent took from
	// the hub's cache to activate (its activated or failed report).
	FetchedPaths int   `json:"fetched_paths,omitempty"`
	FetchedBytes int64 `json:"fetched_bytes,omitempty"`
}

// CacheUpload is what one upload into the hub's Nix cache sent: the paths
// the cache lacked, and the bytes that took (compressed NAR files and
// their narinfos), against the paths and NAR file bytes it already had.
type CacheUpload struct {
	Paths         int      `json:"paths"`
	UploadedPaths []string `json:"uploaded_paths"`
	UploadedBytes int64    `json:"uploaded_bytes"`
	CachedPaths   int      `json:"cached_paths"`
	CachedBytes   int64    `json:"cached_bytes"`
}

// Deploy is a deploy plan or its result (`pinkie deploy --json`).
type Deploy struct {
	Flake    string       `json:"flake"`
	Revision string       `json:"revision,omitempty"`
	DryRun   bool         `json:"dry_run,omitempty"`
	Hosts    []DeployHost `json:"hosts"`
	// SourceUpload is what shipping the flake's source put into the hub's
	// Nix cache.
	SourceUpload *CacheUpload `json:"source_upload,omitempty"`
}

// LastDeploys decodes the last-deploy bucket's records, by host, skipping
// the fold's own keys (events.IsStateKey: its checkpoint and requests).
func LastDeploys(recs map[string][]byte) (map[string]*lastdeploy.Record, error) {
	out := map[string]*lastdeploy.Record{}
	for k, v := range recs {
		if events.IsStateKey(k) {
			continue
		}
		var r lastdeploy.Record
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("%s/%s is not a last-deploy record: %w", lastdeploy.Bucket, k, err)
		}
		out[k] = &r
	}
	return out, nil
}
