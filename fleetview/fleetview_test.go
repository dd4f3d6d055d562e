package fleetview

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
	"github.com/pinkiefleet/pinkie/projections/lastdeploy"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func TestNewLastDeploy(t *testing.T) {
	day := 24 * time.Hour
	rec := func(age time.Duration) *lastdeploy.Record {
		return &lastdeploy.Record{Host: "h", LastSuccess: &lastdeploy.Success{Time: now.Add(-age)}}
	}
	for _, tc := range []struct {
		name string
		r    *lastdeploy.Record
		want string
	}{
		{"never", nil, "never"},
		{"attempted, never succeeded", &lastdeploy.Record{Host: "h"}, "never"},
		{"fresh", rec(day), "ok"},
		{"beyond warn", rec(8 * day), "warn"},
		{"beyond fail", rec(31 * day), "fail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := NewLastDeploy("h", tc.r, true, now, 7*day, 30*day)
			if got.Status != tc.want || (tc.want != "never") != (got.AgeSeconds != nil) {
				t.Errorf("status %s (age %v), want %s", got.Status, got.AgeSeconds, tc.want)
			}
		})
	}
}

func TestAlertsSortAndSilence(t *testing.T) {
	put := func(v any) []byte { b, _ := json.Marshal(v); return b }
	alert := func(host, sev string) projections.ActiveAlert {
		return projections.ActiveAlert{Alert: events.Alert{Host: host, Rule: "r", Severity: sev, Status: "firing"}}
	}
	recs := map[string][]byte{
		"alert.b.1":     put(alert("b", events.SeverityInfo)),
		"alert.a.1":     put(alert("a", events.SeverityWarning)),
		"alert.c.1":     put(alert("c", events.SeverityCritical)),
		"silence.s1":    put(projections.ActiveSilence{SilenceAdded: events.SilenceAdded{ID: "s1", Matchers: map[string]string{"host": "a"}, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)}}),
		"silence.ended": put(projections.ActiveSilence{SilenceAdded: events.SilenceAdded{ID: "ended", Matchers: map[string]string{"host": "*"}, StartsAt: now.Add(-2 * time.Hour), EndsAt: now.Add(-time.Hour)}}),
	}
	alerts, silences, err := Alerts(recs, now)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, a := range alerts {
		order = append(order, a.Host)
	}
	if d := cmp.Diff([]string{"c", "a", "b"}, order); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
	if !alerts[1].Silenced || alerts[0].Silenced || alerts[2].Silenced {
		t.Errorf("silenced: %v %v %v, want only a's", alerts[0].Silenced, alerts[1].Silenced, alerts[2].Silenced)
	}
	shown := Silences(alerts, silences, now, false)
	if len(shown) != 1 || shown[0].ID != "s1" || shown[0].Silencing != 1 || !shown[0].Active {
		t.Errorf("active silences: %+v", shown)
	}
	if all := Silences(alerts, silences, now, true); len(all) != 2 {
		t.Errorf("--all: %d silences, want 2", len(all))
	}
}

func TestFilterAlerts(t *testing.T) {
	alert := func(host, sev string, silenced bool) projections.ActiveAlert {
		var a projections.ActiveAlert
		a.Host, a.Severity, a.Silenced = host, sev, silenced
		return a
	}
	all := []projections.ActiveAlert{alert("edge-1", "critical", true), alert("edge-2", "warning", false), alert("core", "info", false)}
	for _, tc := range []struct {
		name, host, sev string
		hosts           []string
		firing          bool
	}{
		{"all", "", "info", []string{"edge-1", "edge-2", "core"}, true},
		{"host pattern", "edge-*", "info", []string{"edge-1", "edge-2"}, true},
		{"critical only, silenced", "", "critical", []string{"edge-1"}, false},
		{"info host", "core", "info", []string{"core"}, false},
		{"no match", "db-*", "info", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shown, firing := FilterAlerts(all, tc.host, tc.sev)
			var hosts []string
			for _, a := range shown {
				hosts = append(hosts, a.Host)
			}
			if diff := cmp.Diff(tc.hosts, hosts); diff != "" || firing != tc.firing {
				t.Errorf("hosts (-want +got):\n%s\nfiring %v, want %v", diff, firing, tc.firing)
			}
		})
	}
}

func TestHostState(t *testing.T) {
	for _, tc := range []struct {
		h    projections.Host
		want string
	}{
		{projections.Host{Online: true}, "online"},
		{projections.Host{SilentSince: &now}, "silent"},
		{projections.Host{}, "unknown"},
	} {
		if got := HostState(&tc.h); got != tc.want {
			t.Errorf("HostState(%+v) = %q, want %q", tc.h, got, tc.want)
		}
	}
}

func TestJudgeLastDeploys(t *testing.T) {
	day := 24 * time.Hour
	records := map[string]*lastdeploy.Record{
		"koishi":  {Host: "koishi", LastSuccess: &lastdeploy.Success{Time: now.Add(-40 * day)}},
		"goliath": {Host: "goliath", LastSuccess: &lastdeploy.Success{Time: now.Add(-day)}},
	}
	got := JudgeLastDeploys(records, []string{"remilia", "goliath", "remilia"}, now, 7*day, 30*day)
	var lines []string
	for _, l := range got {
		lines = append(lines, fmt.Sprintf("%s %s declared=%v", l.Host, l.Status, l.Declared))
	}
	want := []string{"goliath ok declared=true", "koishi fail declared=false", "remilia never declared=true"}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("JudgeLastDeploys (-want +got):\n%s", diff)
	}
	if got[2].Record != nil {
		t.Errorf("a declared host without a record has record %+v, want none", got[2].Record)
	}
}
