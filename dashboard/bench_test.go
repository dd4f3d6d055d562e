package dashboard

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// benchPage renders path for a fleet of 500 hosts (30 days of hourly
// history for the host pages' host) and reports the median and p99
// server time and the page weight.
//
//	go test ./dashboard -run '^$' -bench . -benchtime 200x
func benchPage(b *testing.B, path string) {
	ts := newTestServer(&testing.T{}, false, 1)
	ts.store = newMemStore()
	synthFleet(b, ts.store, 500, 1, 30, testNow)
	ts.o.Store = ts.store
	c, _ := ts.session(&testing.T{}, roleOperator)
	durs := make([]time.Duration, 0, b.N)
	size := 0
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		w := ts.do("GET", path, nil, nil, c)
		durs = append(durs, time.Since(start))
		if w.Code != http.StatusOK {
			b.Fatalf("GET %s: %d", path, w.Code)
		}
		size = w.Body.Len()
	}
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(durs[min(len(durs)-1, len(durs)*99/100)].Microseconds())/1000, "ms-p99")
	b.ReportMetric(float64(size)/1024, "KiB")
	w := ts.do("GET", path, nil, map[string]string{"Accept-Encoding": "gzip"}, c)
	if w.Header().Get("Content-Encoding") != "gzip" {
		b.Fatal("no gzip")
	}
	b.ReportMetric(float64(w.Body.Len())/1024, "KiB-gzip")
}

func BenchmarkOverview500Hosts(b *testing.B) { benchPage(b, "/") }

func BenchmarkHostPage30Days(b *testing.B) { benchPage(b, "/hosts/host0000") }

func BenchmarkAPIOverview500Hosts(b *testing.B) { benchPage(b, "/api/overview") }
