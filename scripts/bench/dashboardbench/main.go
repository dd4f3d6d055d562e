// Command dashboardbench measures the dashboard against a real hub: it
// starts `pinkie hub` (the binary given by -pinkie) on loopback, stores a
// simulated fleet in HOSTS (-hosts hosts, -days of history: filesystems,
// a PostgreSQL database and drive temperatures every -step, every hour for
// the first -full hosts), waits until the hub's projector has folded it
// into the inventory, signs in with the one-time local link, then times
// GET / (the fleet overview) and GET /hosts/<host> (a host page with its
// plots) -n times each: median, p99, and the page weight raw and gzipped.
//
// Run it through scripts/bench/dashboard.
package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/scripts/bench/benchutil"
	"github.com/pinkiefleet/pinkie/streams"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dashboardbench:", err)
		os.Exit(1)
	}
}

type timing struct {
	Path      string  `json:"path"`
	MedianMS  float64 `json:"median_ms"`
	P99MS     float64 `json:"p99_ms"`
	KiB       float64 `json:"kib"`
	GzipKiB   float64 `json:"gzip_kib"`
	Requests  int     `json:"requests"`
	Hosts     int     `json:"hosts"`
	StoredEvs int     `json:"stored_events"`
}

func run() error {
	pinkie := flag.String("pinkie", "", "the pinkie binary")
	hosts := flag.Int("hosts", 500, "simulated hosts")
	days := flag.Int("days", 30, "days of history")
	step := flag.Duration("step", 6*time.Hour, "history step for most hosts")
	full := flag.Int("full", 5, "hosts with hourly history")
	n := flag.Int("n", 200, "requests per page")
	asJSON := flag.Bool("json", false, "print JSON")
	flag.Parse()
	if *pinkie == "" {
		return fmt.Errorf("-pinkie is required")
	}
	dir, err := os.MkdirTemp("", "dashboardbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var ports [3]int
	for i := range ports {
		if ports[i], err = benchutil.FreePort(); err != nil {
			return err
		}
	}
	cfg := filepath.Join(dir, "hub.json")
	if err := os.WriteFile(cfg, []byte(`{"dashboard": {"title": "bench"}}`), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := exec.CommandContext(ctx, *pinkie, "hub", "--data", filepath.Join(dir, "data"), "--config", cfg, "--log-level", "warn",
		"--nats", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--leaf", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--http", fmt.Sprintf("127.0.0.1:%d", ports[2]))
	hubLog, err := os.Create(filepath.Join(os.TempDir(), "dashboardbench-hub.log"))
	if err != nil {
		return err
	}
	defer hubLog.Close()
	stderrPipe, err := hub.StderrPipe()
	stderr := io.TeeReader(stderrPipe, hubLog)
	if err != nil {
		return err
	}
	if err := hub.Start(); err != nil {
		return err
	}
	defer func() { _ = hub.Process.Signal(os.Interrupt); _ = hub.Wait() }()
	links := make(chan string, 8)
	linkRE := regexp.MustCompile(`within an hour: (\S+)`)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := linkRE.FindStringSubmatch(sc.Text()); m != nil {
				links <- m[1]
			}
		}
	}()
	link := <-links
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	var nc *nats.Conn
	for deadline := time.Now().Add(30 * time.Second); ; {
		if nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", ports[0])); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("connect to the hub: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return err
	}
	start := time.Now()
	stored, err := fill(ctx, js, *hosts, *days, *step, *full)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "stored %d events in %v; waiting for the projections\n", stored, time.Since(start).Round(time.Millisecond))
	kv, err := js.KeyValue(ctx, events.BucketInventory)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Minute); ; {
		// The last host's newest heartbeat is stored last.
		e, err := kv.Get(ctx, fmt.Sprintf("host%04d", *hosts-1))
		if err == nil && strings.Contains(string(e.Value()), `"heartbeat"`) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the projector did not catch up in 10 minutes")
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Then every consumer of HOSTS (projections, alerter) must be idle, so
	// the measurement does not compete with the catch-up.
	st, err := js.Stream(ctx, events.StreamHosts)
	if err != nil {
		return err
	}
	for idle, deadline := 0, time.Now().Add(15*time.Minute); idle < 3; {
		busy := false
		for ci := range st.ListConsumers(ctx).Info() {
			if ci.NumPending > 0 || ci.NumAckPending > 0 {
				busy = true
			}
		}
		if busy {
			idle = 0
		} else {
			idle++
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the hub's consumers did not catch up in 15 minutes")
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "projected and idle after %v\n", time.Since(start).Round(time.Millisecond))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(link)
	if err != nil {
		return err
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) == 0 {
		return fmt.Errorf("local login: %s", resp.Status)
	}
	var out []timing
	for _, path := range []string{"/", "/hosts/host0000", fmt.Sprintf("/hosts/host%04d", *hosts-1), "/api/overview"} {
		t, err := measure(client, base+path, cookies, *n)
		if err != nil {
			return err
		}
		t.Path, t.Hosts, t.StoredEvs = path, *hosts, stored
		out = append(out, t)
	}
	// A measurement is only good if the hub served every page whole.
	if b, err := os.ReadFile(hubLog.Name()); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				return fmt.Errorf("the hub complained during the run (%s): %s", hubLog.Name(), l)
			}
		}
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	fmt.Printf("%d hosts, %d days, %d events in HOSTS; %d requests each (server time as seen by a loopback client)\n", *hosts, *days, stored, *n)
	for _, t := range out {
		fmt.Printf("%-22s median %7.1f ms  p99 %7.1f ms  %7.1f KiB (%5.1f KiB gzipped)\n", t.Path, t.MedianMS, t.P99MS, t.KiB, t.GzipKiB)
	}
	return nil
}

func measure(c *http.Client, url string, cookies []*http.Cookie, n int) (timing, error) {
	var durs []time.Duration
	var t timing
	for i := range n + 1 {
		req, _ := http.NewRequest("GET", url, nil)
		for _, ck := range cookies {
			req.AddCookie(ck)
		}
		gz := i == n
		if gz {
			req.Header.Set("Accept-Encoding", "gzip") // set by hand: Go then does not decompress
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return t, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err != nil || resp.StatusCode != 200 {
			return t, fmt.Errorf("GET %s: %s %v", url, resp.Status, err)
		}
		if d := os.Getenv("DASHBOARDBENCH_DUMP"); d != "" {
			_ = os.WriteFile(filepath.Join(d, fmt.Sprintf("%s-%03d.html", strings.ReplaceAll(url[strings.Index(url, "//")+2:], "/", "_"), i)), b, 0o644)
		}
		if gz {
			t.GzipKiB = float64(len(b)) / 1024
			if r, err := gzip.NewReader(strings.NewReader(string(b))); err == nil {
				raw, _ := io.ReadAll(r)
				t.KiB = float64(len(raw)) / 1024
			}
			continue
		}
		durs = append(durs, d)
	}
	slices.Sort(durs)
	t.Requests = len(durs)
	t.MedianMS = float64(durs[len(durs)/2].Microseconds()) / 1000
	t.P99MS = float64(durs[min(len(durs)-1, len(durs)*99/100)].Microseconds()) / 1000
	return t, nil
}

// fill stores the simulated fleet in HOSTS as the ingest check would.
func fill(ctx context.Context, js jetstream.JetStream, hosts, days int, step time.Duration, full int) (int, error) {
	now := time.Now().UTC()
	start := now.Add(-time.Duration(days) * 24 * time.Hour)
	count := 0
	pub := func(host, kind, object string, at time.Time, data any) error {
		k, ok := events.Lookup(kind)
		if !ok {
			return fmt.Errorf("no kind %s", kind)
		}
		e, err := events.New(k, host, kind, at, data)
		if err != nil {
			return err
		}
		m, err := streams.EventMsg(events.HostSubject(host, kind, object), e)
		if err != nil {
			return err
		}
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second)); err != nil {
			return err
		}
		count++
		return nil
	}
	for i := range hosts {
		host := fmt.Sprintf("host%04d", i)
		st := step
		if i < full {
			st = time.Hour
		}
		for at := start; at.Before(now); at = at.Add(st) {
			frac := at.Sub(start).Hours() / float64(days*24)
			for j, mp := range []string{"/", "/srv"} {
				size := uint64(500 << 30)
				used := uint64((0.3 + 0.4*frac + 0.05*float64(j)) * float64(size))
				fs := events.Filesystem{MountPoint: mp, Device: "/dev/nvme0n1p2", FSType: "ext4", SizeBytes: size, UsedBytes: used, AvailableBytes: size - used,
					UsedPercent: float64(used) / float64(size) * 100, Inodes: 1 << 20, InodesUsed: 1 << 10, InodesFree: 1<<20 - 1<<10, Verdict: events.VerdictOK}
				if err := pub(host, "fs", events.ObjectToken(mp), at, &fs); err != nil {
					return count, err
				}
			}
			pg := events.Postgres{Database: "app", ServerVersion: "16.4", SizeBytes: int64(10<<30) + int64(frac*float64(5<<30)), Relations: []events.PostgresRelation{}, Verdict: events.VerdictOK}
			if err := pub(host, "postgres", "app", at, &pg); err != nil {
				return count, err
			}
			for d, dev := range []string{"/dev/sda", "/dev/sdb"} {
				temp := 30 + d + at.Hour()%5
				sm := events.SMART{Device: dev, Protocol: "ata", Source: "smartctl", Model: "WDC WD40EFRX", TemperatureC: &temp, Verdict: events.VerdictOK}
				if err := pub(host, "smart", events.ObjectToken(dev), at, &sm); err != nil {
					return count, err
				}
			}
		}
		age := 3 + i%40
		p := events.Profile{Hostname: host, OS: events.OSInfo{ID: "nixos", PrettyName: "NixOS 25.11 (Xantusia)"}, Kernel: "6.12.41", Arch: "x86_64",
			CPU: events.CPUInfo{Model: "AMD Ryzen 7 5700G", Cores: 8, Threads: 16}, Memory: events.Memory{TotalBytes: 64 << 30}, BootTime: now.Add(-72 * time.Hour),
			Nix: &events.NixSystem{Flavor: "nixos", Version: "25.11.20261120.a1b2c3d", SystemPath: "/nix/store/abc-nixos-system-" + host, NixpkgsAgeDays: &age}}
		if err := pub(host, "profile", "", now.Add(-time.Minute), &p); err != nil {
			return count, err
		}
	}
	// Heartbeats last, so the last host's marks the end.
	for i := range hosts {
		host := fmt.Sprintf("host%04d", i)
		hb := events.Heartbeat{Counter: 1, Instance: "bench", UptimeSeconds: 3 * 86400, MemTotalBytes: 64 << 30, MemAvailableBytes: 32 << 30, AgentVersion: "bench"}
		if err := pub(host, "heartbeat", "", now, &hb); err != nil {
			return count, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return count, ctx.Err()
	}
	return count, nil
}
