package streams

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestReadMetricsToken(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want, err string
	}{
		{name: "with a newline", content: "0123456789abcdef0123\n", want: "0123456789abcdef0123"},
		{name: "too short", content: "secret\n", err: "the token is 6 bytes long, want at least 16"},
		{name: "two words", content: "0123456789abcdef 0123456789abcdef", err: "the token holds whitespace"},
		{name: "empty", content: "", err: "the token is 0 bytes long"},
		{name: "missing", err: "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if tc.name != "missing" {
				if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := readMetricsToken(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "--metrics-token-file") {
					t.Fatalf("err = %v, want one naming --metrics-token-file and %q", err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestWithoutHosts: series labelled with a host are summed over hosts
// (ages: the oldest), other labels kept, other families untouched.
func TestWithoutHosts(t *testing.T) {
	reg := prometheus.NewRegistry()
	ingested := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_ingested_total", Help: "h"}, []string{"host", "kind"})
	age := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "x_active_age_seconds", Help: "h"}, []string{"host"})
	streams := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "x_stream_bytes", Help: "h"}, []string{"stream"})
	reg.MustRegister(ingested, age, streams)
	ingested.WithLabelValues("goliath", "heartbeat").Add(3)
	ingested.WithLabelValues("koishi", "heartbeat").Add(4)
	ingested.WithLabelValues("koishi", "smart").Add(1)
	age.WithLabelValues("goliath").Set(2)
	age.WithLabelValues("koishi").Set(9)
	streams.WithLabelValues("HOSTS").Set(100)
	mfs, err := withoutHosts{reg}.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v, _ := sampleValue(mf.GetType(), m)
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got = append(got, fmt.Sprintf("%s{%s} %g", mf.GetName(), strings.Join(labels, ","), v))
		}
	}
	want := []string{"x_active_age_seconds{} 9", "x_ingested_total{kind=heartbeat} 7", "x_ingested_total{kind=smart} 1", "x_stream_bytes{stream=HOSTS} 100"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("aggregated metrics (-want +got):\n%s", diff)
	}
}

// TestFleetMetricsAccess: /metrics/fleet goes to loopback clients and to
// the bearer token of --fleet-metrics-token-file; anyone else gets 401
// saying which flag's token is wanted (the /metrics token is not it).
func TestFleetMetricsAccess(t *testing.T) {
	fleetTok, metricsTok := "fleet-0123456789abcdef", "metrics-0123456789abcdef"
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "node_load1{host=\"goliath\"} 1\n") })
	tests := []struct {
		name, remote, auth string
		fleetToken         string
		code               int
		body               string
	}{
		{name: "loopback", remote: "127.0.0.1:5000", fleetToken: fleetTok, code: 200, body: "node_load1"},
		{name: "loopback v6, no token set", remote: "[::1]:5000", code: 200, body: "node_load1"},
		{name: "beyond loopback, token", remote: "192.0.2.1:5000", auth: "Bearer " + fleetTok, fleetToken: fleetTok, code: 200, body: "node_load1"},
		{name: "beyond loopback, no token", remote: "192.0.2.1:5000", fleetToken: fleetTok, code: 401, body: "--fleet-metrics-token-file"},
		{name: "beyond loopback, wrong token", remote: "192.0.2.1:5000", auth: "Bearer " + strings.Repeat("x", len(fleetTok)), fleetToken: fleetTok, code: 401, body: "not it"},
		{name: "beyond loopback, the /metrics token", remote: "192.0.2.1:5000", auth: "Bearer " + metricsTok, fleetToken: fleetTok, code: 401, body: "not it"},
		{name: "beyond loopback, none set", remote: "192.0.2.1:5000", auth: "Bearer " + fleetTok, code: 401, body: "has none set"},
		{name: "beyond loopback, basic auth", remote: "192.0.2.1:5000", auth: "Basic " + fleetTok, fleetToken: fleetTok, code: 401, body: "--fleet-metrics-token-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &Hub{opts: HubOptions{FleetMetrics: inner}, metricsToken: []byte(metricsTok), fleetToken: []byte(tc.fleetToken)}
			r := httptest.NewRequest("GET", "/metrics/fleet", nil)
			r.RemoteAddr = tc.remote
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.fleetMetricsHandler().ServeHTTP(rec, r)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("status %d body %q, want %d containing %q", rec.Code, rec.Body, tc.code, tc.body)
			}
			if tc.code == 401 && (strings.Contains(rec.Body.String(), "goliath") || rec.Header().Get("WWW-Authenticate") == "") {
				t.Errorf("a 401 must name no host and carry WWW-Authenticate: %q %v", rec.Body, rec.Header())
			}
		})
	}
}
