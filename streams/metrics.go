package streams

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type hubMetrics struct {
	reg         *prometheus.Registry
	ingested    *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
	recreated   *prometheus.CounterVec
	// outboxLost counts events missing between a host's OUTBOX and
	// INGEST (outboxGaps).
	outboxLost *prometheus.CounterVec
	// ingestRestarts counts restarts of the ingest check at a gap in its
	// consumer's deliveries (restartIngest).
	ingestRestarts prometheus.Counter
}

var (
	descStreamBytes = prometheus.NewDesc("pinkie_stream_bytes", "Bytes stored in a hub stream.", []string{"stream"}, nil)
	descStreamMsgs  = prometheus.NewDesc("pinkie_stream_messages", "Messages stored in a hub stream.", []string{"stream"}, nil)
	descAgents      = prometheus.NewDesc("pinkie_agents_connected", "Agents connected to the hub over a leaf connection.", nil, nil)
	descAgentUp     = prometheus.NewDesc("pinkie_agent_connected", "1 if the host's agent is connected, 0 if it is known but not connected.", []string{"host"}, nil)
	descSourceAge   = prometheus.NewDesc("pinkie_source_active_age_seconds", "Seconds since the hub last heard from a host's OUTBOX source (its lag reads 0 during a partition; this does not).", []string{"host"}, nil)
	descSourceLag   = prometheus.NewDesc("pinkie_source_lag_messages", "Messages a host's OUTBOX holds that the hub has not taken yet, as last reported.", []string{"host"}, nil)
	descJetStream   = prometheus.NewDesc("pinkie_jetstream_enabled", "1 if the hub's JetStream is enabled (nats-server disables it when the disk is full).", nil, nil)
	descIngestLag   = prometheus.NewDesc("pinkie_ingest_lag_messages", "INGEST messages the ingest check has not finished yet (stream last sequence - ack floor).", nil, nil)
	descIngestAge   = prometheus.NewDesc("pinkie_ingest_lag_seconds", "Age of the oldest INGEST message the ingest check has not finished yet.", nil, nil)
	descMissing     = prometheus.NewDesc("pinkie_consumers_missing", "Consumers the hub owns that are missing and not recreated yet.", []string{"consumer"}, nil)
	descHealthy     = prometheus.NewDesc("pinkie_healthy", "1 if /healthz answers ok.", nil, nil)
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
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinkie_store_errors_total", Help: "Forwards of the ingest check the store refused, by kind: full (the store is at its limit), storage (it could not write: the disk), unavailable (JetStream is off).",
		}, []string{"kind"}),
		recreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinkie_consumers_recreated_total", Help: "Consumers the hub owns (ingest, deploy) that it found missing and recreated.",
		}, []string{"consumer"}),
		outboxLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinkie_outbox_events_lost_total", Help: "Events of a host's OUTBOX that never reached the hub: the host's source skipped them, or they expired in the OUTBOX first.",
		}, []string{"host"}),
		ingestRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinkie_ingest_restarts_total", Help: "Restarts of the ingest check because its consumer delivered messages it never received (lost in flight while the consumer's leader changed); each starts again from the last event stored.",
		}),
	}
	for _, kind := range []string{"full", "storage", "unavailable"} {
		m.storeErrors.WithLabelValues(kind)
	}
	for _, kind := range []string{"ingest", "deploy"} {
		m.recreated.WithLabelValues(kind)
	}
	m.reg.MustRegister(m.ingested, m.deadLetters, m.storeErrors, m.recreated, m.outboxLost, m.ingestRestarts, hubCollector{h}, budgetCollector{h},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// hubCollector reads stream and connection state at scrape time.
type hubCollector struct{ h *Hub }

func (c hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStreamBytes, descStreamMsgs, descAgents, descAgentUp, descSourceAge, descSourceLag, descJetStream, descIngestLag, descIngestAge, descMissing, descHealthy} {
		ch <- d
	}
}

func (c hubCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	hl := c.h.healthNow(ctx, false)
	ch <- prometheus.MustNewConstMetric(descJetStream, prometheus.GaugeValue, boolValue(hl.JetStream))
	ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, boolValue(hl.OK))
	if hl.Ingest != nil {
		ch <- prometheus.MustNewConstMetric(descIngestLag, prometheus.GaugeValue, float64(hl.Ingest.Messages))
		ch <- prometheus.MustNewConstMetric(descIngestAge, prometheus.GaugeValue, hl.Ingest.Seconds)
	}
	missing := map[string]int{"ingest": 0, "deploy": 0}
	c.h.watch.mu.Lock()
	for _, k := range c.h.watch.kept {
		if k.missing {
			missing[k.kind]++
		}
	}
	c.h.watch.mu.Unlock()
	for kind, n := range missing {
		ch <- prometheus.MustNewConstMetric(descMissing, prometheus.GaugeValue, float64(n), kind)
	}
	if !hl.JetStream {
		return
	}
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
	mux.Handle("GET /metrics", h.metricsHandler())
	mux.Handle("GET /metrics/fleet", h.fleetMetricsHandler())
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.Handle("GET "+nixCachePrefix+"/", h.nixCacheHandler())
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

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
