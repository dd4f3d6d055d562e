// Command alertbench measures the alert path on one machine:
//
//   - latency: login events published on an agent (in-process agent code,
//     leaf-connected to an in-process hub running ingest, the projector,
//     the alerter and the notifier) until the notifier's HTTP request
//     reaches an ntfy stand-in; median, p90, p99 and max over -alerts
//     alerts, one published every -pace;
//   - alerter throughput: the pure rule engine folding a mix of telemetry
//     (fs, heartbeat, smart, systemd, login) in memory, and the alerter hub
//     service catching up on the same mix stored in HOSTS (JetStream read,
//     rule evaluation, KV state and checkpoint writes, alert publishing).
//
// Run it through scripts/bench/alerts.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/cmd/pinkie/notifyhub"
	"github.com/pinkiefleet/pinkie/consumers/alerter"
	"github.com/pinkiefleet/pinkie/consumers/notifier"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/scripts/bench/benchutil"
	"github.com/pinkiefleet/pinkie/streams"
)

type result struct {
	Alerts          int     `json:"alerts"`
	LatencyP50Ms    float64 `json:"latency_p50_ms"`
	LatencyP90Ms    float64 `json:"latency_p90_ms"`
	LatencyP99Ms    float64 `json:"latency_p99_ms"`
	LatencyMaxMs    float64 `json:"latency_max_ms"`
	EngineEvents    int     `json:"engine_events"`
	EnginePerSec    float64 `json:"engine_events_per_sec"`
	ServiceEvents   int     `json:"service_events"`
	ServicePerSec   float64 `json:"alerter_service_events_per_sec"`
	ServiceAlerts   uint64  `json:"alerts_published_during_catch_up"`
	EventsPerHost   int     `json:"events_per_host"`
	HostsInWorkload int     `json:"hosts"`
}

func main() {
	n := flag.Int("alerts", 1000, "alerts to measure latency over")
	pace := flag.Duration("pace", 10*time.Millisecond, "time between published events in the latency run")
	events_ := flag.Int("events", 200000, "events for the throughput runs")
	asJSON := flag.Bool("json", false, "print JSON")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("ALERTBENCH_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var r result
	if err := latency(log, *n, *pace, &r); err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
	if err := throughput(log, *events_, &r); err != nil {
		fmt.Fprintln(os.Stderr, "throughput:", err)
		os.Exit(1)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Println(string(b))
		return
	}
	fmt.Printf("latency, agent publish -> notifier HTTP request, %d alerts: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		r.Alerts, r.LatencyP50Ms, r.LatencyP90Ms, r.LatencyP99Ms, r.LatencyMaxMs)
	fmt.Printf("alerter rule engine (in memory): %d events, %.0f events/s\n", r.EngineEvents, r.EnginePerSec)
	fmt.Printf("alerter hub service catching up on HOSTS: %d events, %.0f events/s (%d alerts published)\n", r.ServiceEvents, r.ServicePerSec, r.ServiceAlerts)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var userRE = regexp.MustCompile(`([uw]\d+) logged in`)

func latency(log *slog.Logger, n int, pace time.Duration, r *result) error {
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		now := time.Now()
		var m struct{ Message string }
		_ = json.NewDecoder(req.Body).Decode(&m)
		mu.Lock()
		for _, sm := range userRE.FindAllStringSubmatch(m.Message, -1) {
			if _, ok := arrived[sm[1]]; !ok {
				arrived[sm[1]] = now
			}
		}
		mu.Unlock()
		w.WriteHeader(200)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	nc, chans, err := notifier.ParseConfig([]byte(fmt.Sprintf(`{"group_wait": "0s", "channels": {"bench": {"type": "ntfy", "url": "http://%s", "topic": "bench"}}}`, ln.Addr())))
	if err != nil {
		return err
	}
	al, err := streams.AlerterService(streams.AlerterOptions{Log: log})
	if err != nil {
		return err
	}
	services := append(streams.ProjectorServices(false, log), al, notifyhub.Service(nc, chans, log))
	dir, _ := os.MkdirTemp("", "alertbench-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	hub, err := streams.StartHub(ctx, streams.HubOptions{IngestCheck: benchutil.IngestCheck, DataDir: dir + "/hub", NATSAddr: freeAddr(), LeafAddr: freeAddr(), HTTPAddr: freeAddr(), Log: log, Services: services})
	if err != nil {
		return err
	}
	defer hub.Close()
	ag, err := streams.StartAgent(ctx, streams.AgentOptions{Host: "bench", HubURLs: []string{hub.LeafURL()}, DataDir: dir + "/agent", Log: log, ReconnectInterval: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	defer ag.Close()
	k, _ := events.Lookup("login")
	publish := func(user string) (time.Time, error) {
		now := time.Now()
		e, err := events.New(k, "bench", "login", now, events.Login{User: user, Service: "sshd", Method: "publickey", LoggedAt: now, From: "bench"})
		if err != nil {
			return now, err
		}
		return now, ag.Publish(ctx, e, "")
	}
	// Warm up until the first alert arrives (agent sourced, services up).
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		if _, err := publish(fmt.Sprintf("w%d", i)); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		warm := len(arrived) > 0
		mu.Unlock()
		if warm {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no alert reached the notifier within 60s")
		}
	}
	sent := map[string]time.Time{}
	for i := 0; i < n; i++ {
		u := fmt.Sprintf("u%d", i)
		t, err := publish(u)
		if err != nil {
			return err
		}
		sent[u] = t
		time.Sleep(pace)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		got := 0
		for u := range sent {
			if _, ok := arrived[u]; ok {
				got++
			}
		}
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d alerts reached the notifier", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var lat []float64
	mu.Lock()
	for u, t := range sent {
		lat = append(lat, float64(arrived[u].Sub(t).Microseconds())/1000)
	}
	mu.Unlock()
	sort.Float64s(lat)
	pct := func(p float64) float64 { return lat[int(p*float64(len(lat)-1))] }
	r.Alerts, r.LatencyP50Ms, r.LatencyP90Ms, r.LatencyP99Ms, r.LatencyMaxMs = n, pct(0.5), pct(0.9), pct(0.99), lat[len(lat)-1]
	return nil
}

// workload builds a telemetry mix for hosts: per round, each host sends
// a heartbeat, 8 filesystems (one creeping past 85 % and back, another
// growing steadily), a SMART status, a systemd status and, every tenth
// round, a login.
func workload(hosts, total int) ([]string, [][]byte, error) {
	var subjects []string
	var payloads [][]byte
	add := func(host, kind, object string, at time.Time, data any) error {
		k, _ := events.Lookup(kind)
		var opts []events.Option
		if object != "" {
			opts = append(opts, events.WithSubject(object))
		}
		e, err := events.New(k, host, kind, at, data, opts...)
		if err != nil {
			return err
		}
		b, err := events.Encode(e)
		if err != nil {
			return err
		}
		subjects = append(subjects, events.HostSubject(host, kind, object))
		payloads = append(payloads, b)
		return nil
	}
	t0 := time.Now().Add(-24 * time.Hour)
	for round := 0; len(payloads) < total; round++ {
		at := t0.Add(time.Duration(round) * time.Minute)
		for h := 0; h < hosts && len(payloads) < total; h++ {
			host := fmt.Sprintf("host%03d", h)
			_ = add(host, "heartbeat", "", at, events.Heartbeat{Counter: uint64(round + 1), Instance: "i"})
			for m := 0; m < 8; m++ {
				pct := 40.0 + float64(m)
				switch m {
				case 0:
					pct = 80 + float64((round+h)%10) // hovers around 85
				case 1:
					pct = 50 + float64(round%40) // grows, then drops
				}
				size := uint64(100 << 30)
				used := uint64(float64(size) * pct / 100)
				mnt := fmt.Sprintf("/mnt/d%d", m)
				_ = add(host, "fs", mnt, at, events.Filesystem{MountPoint: mnt, Device: "/dev/x", FSType: "ext4", SizeBytes: size, UsedBytes: used, AvailableBytes: size - used, UsedPercent: pct, Verdict: "ok"})
			}
			_ = add(host, "smart", "/dev/sda", at, events.SMART{Device: "/dev/sda", Protocol: "ata", Source: "smartctl", Verdict: "ok"})
			_ = add(host, "systemd", "", at, events.Systemd{Source: "dbus", Failed: []events.UnitState{}})
			if round%10 == 0 {
				_ = add(host, "login", "", at, events.Login{User: "alice", Service: "sshd", LoggedAt: at, From: "bench"})
			}
		}
	}
	return subjects, payloads, nil
}

func throughput(log *slog.Logger, total int, r *result) error {
	const hosts = 100
	subjects, payloads, err := workload(hosts, total)
	if err != nil {
		return err
	}
	r.HostsInWorkload, r.EventsPerHost = hosts, total/hosts
	// (a) the engine alone.
	cfg := alerter.Config{}
	rules, err := cfg.Compile()
	if err != nil {
		return err
	}
	eng := alerter.NewEngine(rules, cfg.Options())
	start := time.Now()
	at := time.Now()
	for i, p := range payloads {
		eng.Apply(alerter.Input{Stream: events.StreamHosts, Seq: uint64(i + 1), Subject: subjects[i], Data: p, At: at.Add(time.Duration(i) * time.Millisecond)})
	}
	r.EngineEvents, r.EnginePerSec = len(payloads), float64(len(payloads))/time.Since(start).Seconds()

	// (b) the alerter hub service catching up on HOSTS.
	dir, _ := os.MkdirTemp("", "alertbench-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	opts := streams.HubOptions{IngestCheck: benchutil.IngestCheck, DataDir: dir, NATSAddr: freeAddr(), LeafAddr: freeAddr(), HTTPAddr: freeAddr(), Log: log}
	hub, err := streams.StartHub(ctx, opts)
	if err != nil {
		return err
	}
	js := hub.JetStream()
	for i, p := range payloads {
		m := nats.NewMsg(subjects[i])
		m.Data = p
		if _, err := js.PublishMsgAsync(m); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("publishing the workload timed out")
	}
	hub.Close()
	al, err := streams.AlerterService(streams.AlerterOptions{Log: log})
	if err != nil {
		return err
	}
	opts.Services = []streams.HubService{al}
	start = time.Now()
	hub, err = streams.StartHub(ctx, opts)
	if err != nil {
		return err
	}
	defer hub.Close()
	kv, err := hub.JetStream().KeyValue(ctx, streams.AlerterBucket)
	for err != nil {
		time.Sleep(10 * time.Millisecond)
		kv, err = hub.JetStream().KeyValue(ctx, streams.AlerterBucket)
	}
	for {
		if e, err := kv.Get(ctx, "_checkpoint"); err == nil {
			var cp map[string]uint64
			_ = json.Unmarshal(e.Value(), &cp)
			if cp[streams.HostsStream] >= uint64(len(payloads)) {
				break
			}
		}
		if time.Since(start) > 10*time.Minute {
			return fmt.Errorf("the alerter did not catch up within 10 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	r.ServiceEvents, r.ServicePerSec = len(payloads), float64(len(payloads))/took.Seconds()
	st, err := hub.JetStream().Stream(ctx, streams.AlertsStream)
	if err == nil {
		if info, err := st.Info(ctx); err == nil {
			r.ServiceAlerts = info.State.Msgs
		}
	}
	return nil
}
