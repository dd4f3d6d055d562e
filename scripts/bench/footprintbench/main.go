// Command footprintbench measures the agent's footprint against
// node_exporter in one run on one machine (scripts/bench/agent-footprint):
// real processes, a real hub, figures read from /proc.
//
//	(a) RSS (VmRSS, RssAnon, RssFile) after -rss-after of an agent with
//	    heartbeat+profile, an agent with every default producer, and
//	    node_exporter;
//	(b) steady CPU over -cpu of the same processes, node_exporter scraped
//	    every -scrape (15 s), the agents connected to the hub, as ms of CPU
//	    per second and the ratio agent / node_exporter;
//	(c) the slope of the every-producer agent's anonymous memory over
//	    -soak (sampled every 10 s, least squares), in KiB per hour.
//
// The machine is shared: every figure is taken from processes running side
// by side, and the ratios are what compares across runs. With -baseline BIN
// a second pinkie binary's agents run in the same run too (before/after);
// with -agent-bin BIN the agent-only binary pinkie-agent's agents do too.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/scripts/bench/benchutil"
)

// subject is one measured process.
type subject struct {
	Name string `json:"name"`
	cmd  *exec.Cmd
	pid  int
	log  string

	RSSMiB     float64 `json:"vm_rss_mib"`
	AnonMiB    float64 `json:"rss_anon_mib"`
	FileMiB    float64 `json:"rss_file_mib"`
	CPUms      float64 `json:"cpu_ms_per_s"`          // own user+system CPU
	ChildCPUms float64 `json:"children_cpu_ms_per_s"` // commands it ran and reaped
	// AnonSlopeKiBh is the anonymous memory's growth, least squares over
	// the soak; set for the subjects soaked.
	AnonSlopeKiBh float64 `json:"anon_slope_kib_per_hour,omitempty"`
	AnonStartMiB  float64 `json:"anon_soak_start_mib,omitempty"`
	AnonEndMiB    float64 `json:"anon_soak_end_mib,omitempty"`

	anonT, anonV []float64
}

type result struct {
	RSSAfterSec int        `json:"rss_after_seconds"`
	CPUSec      int        `json:"cpu_seconds"`
	SoakSec     int        `json:"soak_seconds"`
	ScrapeSec   int        `json:"scrape_seconds"`
	Scrapes     int        `json:"scrapes"`
	Subjects    []*subject `json:"subjects"`
}

func main() {
	bin := flag.String("pinkie", "", "pinkie binary to measure")
	baseline := flag.String("baseline", "", "a second pinkie binary whose agents run in the same run (e.g. main's)")
	agentBin := flag.String("agent-bin", "", "a pinkie-agent binary (the agent alone: pinkie-agent FLAGS) whose agents run in the same run")
	nodeExporter := flag.String("node-exporter", "", "node_exporter binary (the baseline)")
	rssAfter := flag.Duration("rss-after", 60*time.Second, "read RSS this long after the start")
	cpu := flag.Duration("cpu", 10*time.Minute, "measure steady CPU over this long (after -rss-after)")
	soak := flag.Duration("soak", time.Hour, "measure the anonymous memory's slope over this long (after -rss-after; runs alongside -cpu)")
	scrape := flag.Duration("scrape", 15*time.Second, "node_exporter's scrape interval")
	agentArgs := flag.String("agent-args", "", "extra flags for the measured agents (space-separated), e.g. '--hub-compression s2_auto'")
	agentEnv := flag.String("agent-env", "", "extra environment for the -pinkie and -agent-bin agents, not -baseline's (space-separated KEY=VALUE), e.g. GOMAXPROCS=1")
	hubArgs := flag.String("hub-args", "", "extra flags for the hub (space-separated)")
	asJSON := flag.Bool("json", false, "print JSON")
	flag.Parse()
	if *bin == "" || *nodeExporter == "" {
		fmt.Fprintln(os.Stderr, "footprintbench: -pinkie and -node-exporter are required")
		os.Exit(2)
	}
	cfg := config{bin: *bin, baseline: *baseline, agentBin: *agentBin, nodeExporter: *nodeExporter, rssAfter: *rssAfter, cpu: *cpu, soak: *soak,
		scrape: *scrape, agentArgs: strings.Fields(*agentArgs), agentEnv: strings.Fields(*agentEnv), hubArgs: strings.Fields(*hubArgs)}
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "footprintbench:", err)
		os.Exit(1)
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	report(res)
}

type config struct {
	bin, baseline, agentBin     string
	nodeExporter                string
	rssAfter, cpu, soak, scrape time.Duration
	agentArgs, agentEnv         []string
	hubArgs                     []string
}

func run(c config) (*result, error) {
	dir, err := os.MkdirTemp("", "footprint")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var ports [4]int
	for i := range ports {
		if ports[i], err = benchutil.FreePort(); err != nil {
			return nil, err
		}
	}
	natsPort, leafPort, httpPort, nePort := ports[0], ports[1], ports[2], ports[3]
	var all []*subject
	start := func(name string, env []string, argv ...string) (*subject, error) {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), env...)
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		s := &subject{Name: name, cmd: cmd, pid: cmd.Process.Pid, log: logf.Name()}
		all = append(all, s)
		return s, nil
	}
	defer func() {
		for _, s := range all {
			_ = s.cmd.Process.Signal(os.Interrupt)
		}
		for _, s := range all {
			done := make(chan struct{})
			go func() { _ = s.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = s.cmd.Process.Kill()
				<-done
			}
		}
	}()
	hubArgv := append([]string{c.bin, "hub", "--data", filepath.Join(dir, "hub"), "--log-level", "error",
		"--nats", fmt.Sprintf("127.0.0.1:%d", natsPort), "--leaf", fmt.Sprintf("127.0.0.1:%d", leafPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort)}, c.hubArgs...)
	hub, err := start("hub", nil, hubArgv...)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPort), 60*time.Second); err != nil {
		return nil, fmt.Errorf("hub not healthy: %w (log: %s)", err, filepath.Join(dir, "hub.log"))
	}
	// The hub is infrastructure here, not a subject.
	all = all[:0]
	defer func() { _ = hub.cmd.Process.Signal(os.Interrupt); _ = hub.cmd.Wait() }()

	agent := func(bin, name string, extra ...string) (*subject, error) {
		argv := []string{bin, "agent"}
		if bin == c.agentBin {
			argv = argv[:1] // pinkie-agent takes pinkie agent's flags
		}
		argv = append(argv, []string{"--name", name, "--hub", fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort),
			"--data", filepath.Join(dir, name), "--log-level", "error"}...)
		argv = append(argv, extra...)
		var env []string
		if bin == c.bin || bin == c.agentBin {
			env = c.agentEnv
		}
		return start(name, env, append(argv, c.agentArgs...)...)
	}
	type spec struct {
		bin, name string
		extra     []string
	}
	specs := []spec{{c.bin, "agent-hb-profile", []string{"--producers", "heartbeat,profile"}}, {c.bin, "agent-all", nil}}
	if c.agentBin != "" {
		specs = append(specs, spec{c.agentBin, "pinkie-agent-hb-profile", []string{"--producers", "heartbeat,profile"}}, spec{c.agentBin, "pinkie-agent-all", nil})
	}
	if c.baseline != "" {
		specs = append(specs, spec{c.baseline, "baseline-hb-profile", []string{"--producers", "heartbeat,profile"}}, spec{c.baseline, "baseline-all", nil})
	}
	for _, s := range specs {
		if _, err := agent(s.bin, s.name, s.extra...); err != nil {
			return nil, err
		}
	}
	ne, err := start("node_exporter", nil, c.nodeExporter, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", nePort), "--log.level=error")
	if err != nil {
		return nil, err
	}
	_ = ne
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", nePort)
	res := &result{RSSAfterSec: int(c.rssAfter.Seconds()), CPUSec: int(c.cpu.Seconds()), SoakSec: int(c.soak.Seconds()), ScrapeSec: int(c.scrape.Seconds()), Subjects: all}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scrapes := make(chan int, 1)
	go func() { scrapes <- scrapeEvery(ctx, metricsURL, c.scrape) }()

	time.Sleep(c.rssAfter)
	for _, s := range all {
		if err := alive(s); err != nil {
			return nil, err
		}
		st, err := readStatus(s.pid)
		if err != nil {
			return nil, err
		}
		s.RSSMiB, s.AnonMiB, s.FileMiB = st["VmRSS"], st["RssAnon"], st["RssFile"]
	}

	// CPU and soak run side by side from here; each ends at its own time.
	t0 := time.Now()
	cpu0 := map[*subject][2]float64{}
	for _, s := range all {
		own, kids, err := cpuSeconds(s.pid)
		if err != nil {
			return nil, err
		}
		cpu0[s] = [2]float64{own, kids}
	}
	cpuDone, soakDone := c.cpu <= 0, c.soak <= 0
	sample := time.NewTicker(10 * time.Second)
	defer sample.Stop()
	for !cpuDone || !soakDone {
		now := time.Since(t0)
		if !cpuDone && now >= c.cpu {
			for _, s := range all {
				own, kids, err := cpuSeconds(s.pid)
				if err != nil {
					return nil, err
				}
				s.CPUms = (own - cpu0[s][0]) * 1000 / now.Seconds()
				s.ChildCPUms = (kids - cpu0[s][1]) * 1000 / now.Seconds()
			}
			cpuDone = true
		}
		if !soakDone {
			for _, s := range all {
				st, err := readStatus(s.pid)
				if err != nil {
					return nil, err
				}
				s.anonT, s.anonV = append(s.anonT, now.Hours()), append(s.anonV, st["RssAnon"]*1024)
			}
			if now >= c.soak {
				for _, s := range all {
					s.AnonSlopeKiBh = slope(s.anonT, s.anonV)
					s.AnonStartMiB, s.AnonEndMiB = s.anonV[0]/1024, s.anonV[len(s.anonV)-1]/1024
				}
				soakDone = true
			}
		}
		if cpuDone && soakDone {
			break
		}
		<-sample.C
	}
	for _, s := range all {
		if err := alive(s); err != nil {
			return nil, err
		}
	}
	cancel()
	res.Scrapes = <-scrapes
	return res, nil
}

// alive is an error when a subject exited early (a crash is not a footprint).
func alive(s *subject) error {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", s.pid)); err != nil {
		return fmt.Errorf("%s exited early: %s", s.Name, logTail(s))
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if f := statFields(b); len(f) > 0 && f[0] == "Z" {
		return fmt.Errorf("%s exited early: %s", s.Name, logTail(s))
	}
	return nil
}

// logTail is the end of a subject's output, for an error.
func logTail(s *subject) string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// scrapeEvery fetches url every interval, as Prometheus would, and returns
// how many scrapes succeeded.
func scrapeEvery(ctx context.Context, url string, every time.Duration) int {
	n := 0
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			n++
		}
	}
}

func waitHTTP(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("status %d", resp.StatusCode)
		} else {
			last = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

// readStatus returns /proc/PID/status's kB fields in MiB.
func readStatus(pid int) (map[string]float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		fs := strings.Fields(v)
		if !ok || len(fs) != 2 || fs[1] != "kB" {
			continue
		}
		if n, err := strconv.ParseFloat(fs[0], 64); err == nil {
			out[k] = n / 1024
		}
	}
	if _, ok := out["VmRSS"]; !ok {
		return nil, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return out, sc.Err()
}

// statFields are /proc/PID/stat's fields after the command name (state first).
func statFields(b []byte) []string {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// cpuSeconds returns a process's own CPU (utime+stime) and its reaped
// children's (cutime+cstime), in seconds. proc(5): fields 14-17; clock
// ticks are 100 per second on Linux.
func cpuSeconds(pid int) (own, children float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	f := statFields(b)
	if len(f) < 15 {
		return 0, 0, errors.New("short /proc stat")
	}
	var v [4]float64
	for i := range v {
		n, err := strconv.ParseFloat(f[11+i], 64) // field 14 is the 12th after the name
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		v[i] = n / 100
	}
	return v[0] + v[1], v[2] + v[3], nil
}

// slope is the least-squares slope of y over x.
func slope(x, y []float64) float64 {
	n := float64(len(x))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx, sy, sxx, sxy = sx+x[i], sy+y[i], sxx+x[i]*x[i], sxy+x[i]*y[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

func report(r *result) {
	var ne *subject
	for _, s := range r.Subjects {
		if s.Name == "node_exporter" {
			ne = s
		}
	}
	fmt.Printf("(a) RSS after %d s                  VmRSS   RssAnon  RssFile  (MiB)\n", r.RSSAfterSec)
	for _, s := range r.Subjects {
		fmt.Printf("    %-24s %8.1f %8.1f %8.1f   VmRSS/node_exporter %.2f\n", s.Name, s.RSSMiB, s.AnonMiB, s.FileMiB, s.RSSMiB/ne.RSSMiB)
	}
	if r.CPUSec > 0 {
		fmt.Printf("(b) steady CPU over %d s, node_exporter scraped every %d s (%d scrapes)\n", r.CPUSec, r.ScrapeSec, r.Scrapes)
		fmt.Printf("    %-24s %8s %8s\n", "", "ms/s", "+children")
		for _, s := range r.Subjects {
			fmt.Printf("    %-24s %8.2f %8.2f   (own+children)/node_exporter %.2f\n", s.Name, s.CPUms, s.ChildCPUms, (s.CPUms+s.ChildCPUms)/(ne.CPUms+ne.ChildCPUms))
		}
	}
	if r.SoakSec > 0 {
		fmt.Printf("(c) anonymous memory over a %d s soak (10 s samples, least squares)\n", r.SoakSec)
		for _, s := range r.Subjects {
			fmt.Printf("    %-24s %8.1f -> %6.1f MiB   slope %+8.0f KiB/h\n", s.Name, s.AnonStartMiB, s.AnonEndMiB, s.AnonSlopeKiBh)
		}
	}
}
