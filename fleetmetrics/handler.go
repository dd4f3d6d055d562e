package fleetmetrics

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the fleet's metrics: each scrape reads a Snapshot from st
// and writes it in the exposition format the scraper asks for. A read that
// fails answers 503 with the reason (the scrape then fails, and up is 0).
// Who may scrape is the hub's business (streams: --fleet-metrics-token-file).
func Handler(st Store, now func() time.Time, log *slog.Logger) http.Handler {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		snap, err := Read(ctx, st, now())
		if err != nil {
			log.Warn("fleet metrics: read the projections", "err", err)
			http.Error(w, "fleet metrics: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		reg := prometheus.NewRegistry()
		if err := reg.Register(Collector{S: snap}); err != nil {
			http.Error(w, "fleet metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{log}}).ServeHTTP(w, r)
	})
}

// slogPrinter lets promhttp log through slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("fleet metrics: encode", "err", v) }
