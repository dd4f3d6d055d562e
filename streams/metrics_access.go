package streams

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/pinkiefleet/pinkie/bounded"
)

// Who sees per-host detail on /metrics and /healthz: a client on loopback
// (the hub's own machine, or a scraper behind a local reverse proxy), or
// one that presents the bearer token of --metrics-token-file. Everyone
// else gets status and aggregate numbers: every series labelled with a
// host is summed over hosts (the largest value for an age in seconds),
// and /healthz names no host.

// minTokenLen keeps a guessable token out.
const minTokenLen = 16

// readMetricsToken reads the bearer token from file (surrounding
// whitespace, such as a final newline, is not part of it).
func readMetricsToken(file string) ([]byte, error) { return readToken("--metrics-token-file", file) }

// readToken reads a bearer token from the file given by flag.
func readToken(flag, file string) ([]byte, error) {
	b, err := bounded.ReadPath(file, maxTokenFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	tok := bytes.TrimSpace(b)
	if len(tok) < minTokenLen {
		return nil, fmt.Errorf("%s %s: the token is %d bytes long, want at least %d (e.g. openssl rand -hex 32 > %s)", flag, file, len(tok), minTokenLen, file)
	}
	if bytes.ContainsAny(tok, " \t\r\n") {
		return nil, fmt.Errorf("%s %s: the token holds whitespace; want one word", flag, file)
	}
	return tok, nil
}

// maxTokenFile bounds a token file (a token is a word, not a file's worth).
const maxTokenFile = 4 << 10

// isLoopbackClient reports whether r comes from a loopback address.
func isLoopbackClient(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer reports whether r presents token as its bearer token.
func bearer(r *http.Request, token []byte) bool {
	if len(token) == 0 {
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), token) == 1
}

// fleetMetricsHandler guards /metrics/fleet: every host's state is there,
// so it goes to loopback clients and to the bearer token of
// --fleet-metrics-token-file only; anyone else gets 401 saying so.
func (h *Hub) fleetMetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !isLoopbackClient(r) && !bearer(r, h.fleetToken) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pinkie fleet metrics"`)
			msg := "/metrics/fleet is served to loopback clients and to the bearer token of the hub's --fleet-metrics-token-file"
			if len(h.fleetToken) == 0 {
				msg += " (this hub has none set)"
			} else if r.Header.Get("Authorization") != "" {
				msg += " (the token presented is not it)"
			}
			http.Error(w, msg, http.StatusUnauthorized)
			return
		}
		if h.opts.FleetMetrics == nil {
			http.Error(w, "/metrics/fleet: this hub serves no fleet metrics (its projections are not read here)", http.StatusNotFound)
			return
		}
		h.opts.FleetMetrics.ServeHTTP(w, r)
	})
}

// trusted reports whether r may see per-host detail.
func (h *Hub) trusted(r *http.Request) bool {
	return isLoopbackClient(r) || bearer(r, h.metricsToken)
}

func (h *Hub) metricsHandler() http.Handler {
	full := promhttp.HandlerFor(h.metrics.reg, promhttp.HandlerOpts{})
	aggregate := promhttp.HandlerFor(withoutHosts{h.metrics.reg}, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if h.trusted(r) {
			full.ServeHTTP(w, r)
			return
		}
		aggregate.ServeHTTP(w, r)
	})
}

// hostLabel is the label that names a host.
const hostLabel = "host"

// withoutHosts gathers g's metrics with the host label summed away.
type withoutHosts struct{ g prometheus.Gatherer }

func (a withoutHosts) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := a.g.Gather()
	for i, mf := range mfs {
		mfs[i] = dropHostLabel(mf)
	}
	return mfs, err
}

// dropHostLabel sums a family's series over their host label: counters
// and gauges add up, except ages in seconds, where the oldest is kept.
// Families of other types with a host label are left out.
func dropHostLabel(mf *dto.MetricFamily) *dto.MetricFamily {
	hasHost := false
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			hasHost = hasHost || l.GetName() == hostLabel
		}
	}
	if !hasHost {
		return mf
	}
	out := proto.Clone(mf).(*dto.MetricFamily)
	out.Metric = nil
	byLabels := map[string]*dto.Metric{}
	var keys []string
	keepMax := strings.HasSuffix(mf.GetName(), "_age_seconds")
	for _, m := range mf.GetMetric() {
		var labels []*dto.LabelPair
		var key strings.Builder
		for _, l := range m.GetLabel() {
			if l.GetName() == hostLabel {
				continue
			}
			labels = append(labels, l)
			fmt.Fprintf(&key, "%s=%q,", l.GetName(), l.GetValue())
		}
		v, ok := sampleValue(mf.GetType(), m)
		if !ok {
			return &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Type: mf.Type}
		}
		agg, seen := byLabels[key.String()]
		if !seen {
			agg = &dto.Metric{Label: labels}
			byLabels[key.String()] = agg
			keys = append(keys, key.String())
			setSampleValue(mf.GetType(), agg, v)
			continue
		}
		cur, _ := sampleValue(mf.GetType(), agg)
		if keepMax {
			setSampleValue(mf.GetType(), agg, max(cur, v))
		} else {
			setSampleValue(mf.GetType(), agg, cur+v)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		out.Metric = append(out.Metric, byLabels[k])
	}
	return out
}

func sampleValue(t dto.MetricType, m *dto.Metric) (float64, bool) {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue(), true
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue(), true
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

func setSampleValue(t dto.MetricType, m *dto.Metric, v float64) {
	switch t {
	case dto.MetricType_COUNTER:
		m.Counter = &dto.Counter{Value: proto.Float64(v)}
	case dto.MetricType_GAUGE:
		m.Gauge = &dto.Gauge{Value: proto.Float64(v)}
	case dto.MetricType_UNTYPED:
		m.Untyped = &dto.Untyped{Value: proto.Float64(v)}
	}
}
