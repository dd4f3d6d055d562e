package streams

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type hubMetrics struct {
	reg         *prometheus.Registry
	ingested    *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
}

var (
	descStreamBytes = prometheus.NewDesc("pinkie_stream_bytes", "Bytes stored in a hub stream.", []string{"stream"}, nil)
	descStreamMsgs  = prometheus.NewDesc("pinkie_stream_messages", "Messages stored in a hub stream.", []string{"stream"}, nil)
	descAgents      = prometheus.NewDesc("pinkie_agents_connected", "Agents connected to the hub over a leaf connection.", nil, nil)
	descAgentUp     = prometheus.NewDesc("pinkie_agent_connected", "1 if the host's agent is connected, 0 if it is known but not connected.", []string{"host"}, nil)
	descSourceAge   = prometheus.NewDesc("pinkie_source_active_age_seconds", "Seconds since the hub last heard from a host's OUTBOX source (its lag reads 0 during a partition; this does not).", []string{"host"}, nil)
	descSourceLag   = prometheus.NewDesc("pinkie_source_lag_messages", "Messages a host's OUTBOX holds that the hub has not taken yet, as last reported.", []string{"host"}, nil)
)

func newHubMetrics(h *Hub) *hubMetrics {
	m := &hubMetrics{
		reg: prometheus.NewRegistry(),
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinkie_events_ingested_total", Help: "Events accepted by the hub's ingest check, by host and kind.",
		}, []string{"host", "kind"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinkie_dead_letters_total", Help: "Events refused on ingest and written to pinkie.deadletter.<host>.",
		}, []string{"host"}),
	}
	m.reg.MustRegister(m.ingested, m.deadLetters, hubCollector{h}, budgetCollector{h},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// hubCollector reads stream and connection state at scrape time.
type hubCollector struct{ h *Hub }

func (c hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStreamBytes, descStreamMsgs, descAgents, descAgentUp, descSourceAge, descSourceLag} {
		ch <- d
	}
}

func (c hubCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for name := range c.h.js.StreamNames(ctx).Name() {
		st, err := c.h.js.Stream(ctx, name)
		if err != nil {
			continue
		}
		info := st.CachedInfo()
		ch <- prometheus.MustNewConstMetric(descStreamBytes, prometheus.GaugeValue, float64(info.State.Bytes), name)
		ch <- prometheus.MustNewConstMetric(descStreamMsgs, prometheus.GaugeValue, float64(info.State.Msgs), name)
		if name != IngestStream {
			continue
		}
		for _, s := range info.Sources {
			host, ok := hostOfSource(s.External)
			if !ok {
				continue
			}
			ch <- prometheus.MustNewConstMetric(descSourceAge, prometheus.GaugeValue, s.Active.Seconds(), host)
			ch <- prometheus.MustNewConstMetric(descSourceLag, prometheus.GaugeValue, float64(s.Lag), host)
		}
	}
	connected := c.h.connectedAgents()
	ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(c.h.srv.NumLeafNodes()))
	for _, host := range c.h.Hosts() {
		v := 0.0
		if connected[host] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descAgentUp, prometheus.GaugeValue, v, host)
	}
}

func (h *Hub) startHTTP(host, addr string) error {
	_, port, _ := splitHostPort("--http", addr)
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	h.httpLn = ln
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", h.healthz)
	if h.opts.HTTPHandler != nil {
		mux.Handle("/", h.opts.HTTPHandler)
	}
	h.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	// Long-lived responses (the dashboard's event streams) end on shutdown.
	if c, ok := h.opts.HTTPHandler.(interface{ CloseStreams() }); ok {
		h.http.RegisterOnShutdown(c.CloseStreams)
	}
	go func() {
		if err := h.http.Serve(ln); err != nil && err != http.ErrServerClosed {
			h.log.Error("http server", "err", err)
		}
	}()
	return nil
}

// Health is what /healthz reports.
type Health struct {
	OK        bool     `json:"ok"`
	JetStream bool     `json:"jetstream"`
	Hosts     []string `json:"hosts"`
	Connected []string `json:"connected"`
	Problems  []string `json:"problems,omitempty"`
}

func (h *Hub) healthz(w http.ResponseWriter, r *http.Request) {
	hl := Health{JetStream: h.srv.JetStreamEnabled(), Hosts: h.Hosts(), Connected: []string{}}
	for host := range h.connectedAgents() {
		hl.Connected = append(hl.Connected, host)
	}
	if !hl.JetStream {
		hl.Problems = append(hl.Problems, "JetStream is not enabled")
	}
	if h.nc.Status() != 1 { // nats.CONNECTED
		hl.Problems = append(hl.Problems, "hub services are not connected")
	}
	hl.OK = len(hl.Problems) == 0
	w.Header().Set("Content-Type", "application/json")
	if !hl.OK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(hl)
}
