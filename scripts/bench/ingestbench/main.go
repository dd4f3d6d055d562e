// Command ingestbench measures, on one embedded hub in one run: (a) raw
// JetStream async publishing of 512-byte messages into a file-backed
// stream, (b) pinkie's end-to-end ingest — events built, validated and
// published by an agent into its OUTBOX, sourced over the leaf connection,
// checked by the hub and stored in HOSTS — and the ratio b/a; and (c) the
// resident memory of a real `pinkie agent` process after a while of
// heartbeat and profile. Run it through scripts/bench/ingest.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/scripts/bench/benchutil"
	"github.com/pinkiefleet/pinkie/streams"
)

type result struct {
	RawMsgs          int     `json:"raw_msgs"`
	RawPerSec        float64 `json:"raw_async_publish_per_sec"`
	E2EEvents        int     `json:"e2e_events"`
	E2EPerSec        float64 `json:"pinkie_end_to_end_per_sec"`
	Ratio            float64 `json:"ratio"`
	AvgEventBytes    int     `json:"avg_event_bytes"`
	AgentRSSMiB      float64 `json:"agent_rss_mib,omitempty"`
	AgentAllRSSMiB   float64 `json:"agent_all_producers_rss_mib,omitempty"`
	AgentRSSAfterSec int     `json:"agent_rss_after_seconds,omitempty"`
}

func main() {
	n := flag.Int("n", 100000, "messages per measurement")
	rssAfter := flag.Duration("rss-after", 60*time.Second, "measure the agent's RSS after this long (0 skips)")
	bin := flag.String("pinkie", "", "pinkie binary for the RSS measurement")
	asJSON := flag.Bool("json", false, "print JSON")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to `FILE`")
	budget := flag.Bool("budget", true, "charge every event to its host's ingest budget (limits too high to throttle); false turns budgets off, for comparison")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(*n, *rssAfter, *bin, *asJSON, *budget); err != nil {
		fmt.Fprintln(os.Stderr, "ingestbench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(n int, rssAfter time.Duration, bin string, asJSON, budget bool) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pinkie-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The bench agent sends far more than an honest host: budgets high
	// enough never to throttle it still charge every event (their cost is
	// measured), or none (-budget=false).
	hb := streams.HostBudget{EventsPerSec: 1e9, BytesPerSec: 1e12, BurstEvents: 1e9, BurstBytes: 1e12, Off: !budget}
	hub, err := streams.StartHub(ctx, streams.HubOptions{IngestCheck: benchutil.IngestCheck, DataDir: filepath.Join(dir, "hub"),
		NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Budget: hb, Log: quiet})
	if err != nil {
		return err
	}
	defer hub.Close()
	var res result

	// (a) raw JetStream async publish, 512 B, file stream, over TCP.
	nc, err := nats.Connect(hub.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage}); err != nil {
		return err
	}
	payload := make([]byte, 512)
	start := time.Now()
	for i := 0; i < n; i++ {
		for {
			_, err := js.PublishAsync("bench.raw", payload)
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				return err
			}
			<-js.PublishAsyncComplete()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("raw publish did not complete")
	}
	res.RawMsgs, res.RawPerSec = n, float64(n)/time.Since(start).Seconds()
	_ = js.DeleteStream(ctx, "BENCH")

	// (b) pinkie end to end: an agent (leaf of the hub) builds, validates
	// and stores heartbeat events in its OUTBOX; done when HOSTS holds all.
	ag, err := streams.StartAgent(ctx, streams.AgentOptions{Host: "bench", HubURLs: []string{hub.LeafURL()},
		DataDir: filepath.Join(dir, "agent"), ReconnectInterval: 100 * time.Millisecond, Log: quiet})
	if err != nil {
		return err
	}
	defer ag.Close()
	deadline := time.Now().Add(30 * time.Second)
	for !ag.Connected() || len(hub.Hosts()) == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("agent did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}
	k, _ := events.Lookup("heartbeat")
	hostsJS := hub.JetStream()
	hosts, err := hostsJS.Stream(ctx, streams.HostsStream)
	if err != nil {
		return err
	}
	var bytes int
	start = time.Now()
	for i := 1; i <= n; i++ {
		e, err := events.New(k, "bench", "heartbeat", time.Now(), events.Heartbeat{Counter: uint64(i), Instance: "bench",
			UptimeSeconds: 12345.6, Load1: 0.5, Load5: 0.4, Load15: 0.3, MemTotalBytes: 25 << 30, MemAvailableBytes: 20 << 30, AgentVersion: "bench"})
		if err != nil {
			return err
		}
		if i == 1 {
			b, _ := events.Encode(e)
			bytes = len(b)
		}
		for {
			_, err := ag.PublishAsync(e, "")
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				return err
			}
			<-ag.PublishAsyncComplete() // back-pressure: let the OUTBOX catch up
		}
	}
	<-ag.PublishAsyncComplete()
	if os.Getenv("BENCH_PHASES") != "" {
		fmt.Fprintf(os.Stderr, "agent stored all in %s\n", time.Since(start))
		go func() {
			for {
				time.Sleep(500 * time.Millisecond)
				ist, _ := hostsJS.Stream(ctx, streams.IngestStream)
				ii, _ := ist.Info(ctx)
				hi, _ := hosts.Info(ctx)
				fmt.Fprintf(os.Stderr, "%s ingest=%d (last seq %d) hosts=%d\n", time.Since(start).Round(time.Millisecond), ii.State.Msgs, ii.State.LastSeq, hi.State.Msgs)
			}
		}()
	}
	for {
		info, err := hosts.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs >= uint64(n) {
			break
		}
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("HOSTS holds %d of %d after 5 minutes", info.State.Msgs, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.E2EEvents, res.E2EPerSec = n, float64(n)/time.Since(start).Seconds()
	res.Ratio = res.E2EPerSec / res.RawPerSec
	res.AvgEventBytes = bytes

	// (c) real agent processes' RSS: heartbeat+profile, and every producer
	// that is on by default, side by side.
	if rssAfter > 0 && bin != "" {
		start := func(name string, extra ...string) (*exec.Cmd, error) {
			args := append([]string{"agent", "--name", name, "--hub", hub.LeafURL(), "--data", filepath.Join(dir, name),
				"--heartbeat", "1s", "--log-level", "error"}, extra...)
			cmd := exec.Command(bin, args...)
			cmd.Stderr = os.Stderr
			return cmd, cmd.Start()
		}
		small, err := start("rss", "--producers", "heartbeat,profile")
		if err != nil {
			return err
		}
		all, err := start("rssall")
		if err != nil {
			return err
		}
		time.Sleep(rssAfter)
		rss, err1 := rssMiB(small.Process.Pid)
		rssAll, err2 := rssMiB(all.Process.Pid)
		for _, c := range []*exec.Cmd{small, all} {
			_ = c.Process.Signal(os.Interrupt)
			_ = c.Wait()
		}
		if err1 != nil {
			return err1
		}
		if err2 != nil {
			return err2
		}
		res.AgentRSSMiB, res.AgentAllRSSMiB, res.AgentRSSAfterSec = rss, rssAll, int(rssAfter.Seconds())
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	fmt.Printf("(a) raw JetStream async publish, 512 B, file stream:   %8.0f msg/s  (%d msgs)\n", res.RawPerSec, res.RawMsgs)
	fmt.Printf("(b) pinkie end to end, agent OUTBOX -> hub HOSTS:      %8.0f events/s (%d events of %d B)\n", res.E2EPerSec, res.E2EEvents, res.AvgEventBytes)
	fmt.Printf("    ratio b/a:                                         %8.2f   (target >= 0.5; b target >= 20000/s)\n", res.Ratio)
	if res.AgentRSSMiB > 0 {
		fmt.Printf("(c) agent RSS after %ds of heartbeat+profile:          %8.1f MiB (target <= 40)\n", res.AgentRSSAfterSec, res.AgentRSSMiB)
		fmt.Printf("    agent RSS after %ds with every default producer:   %8.1f MiB (target <= 40)\n", res.AgentRSSAfterSec, res.AgentAllRSSMiB)
	}
	return nil
}

func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				return 0, err
			}
			return float64(kb) / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
