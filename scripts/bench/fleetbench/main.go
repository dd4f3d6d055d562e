// Command fleetbench measures pinkie at fleet scale on one machine: many
// simulated agents — real embedded leaf servers with real OUTBOXes, many
// per simulator process, publishing a realistic event mix through the
// agent's Publish at 1 event/s each — against a real `pinkie hub`
// process, or a real 3-node hub cluster (-cluster). It checks every event
// in HOSTS (per-host sequence numbers in the event ids: lost and
// duplicated), and measures the hub's CPU and RSS, the simulators' memory
// per agent, the time for all agents to reconnect and drain after a hub
// restart (kill -9 and start), and the catch-up time of a backlog built
// while the hub was down. Run it through scripts/bench/fleet; the last
// line is `agents=N events=N lost=N duplicated=N`, and the exit status is
// 1 when lost or duplicated is not 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sim" {
		if err := runSim(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "fleetbench sim:", err)
			os.Exit(1)
		}
		return
	}
	var o opts
	flag.IntVar(&o.agents, "agents", 1000, "simulated agents (hosts h0001…)")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "steady phase: every agent sends 1 event/s")
	flag.BoolVar(&o.cluster, "cluster", false, "run a 3-node hub cluster instead of a single hub")
	flag.IntVar(&o.procs, "procs", 0, "simulator processes (default: one per 250 agents)")
	flag.StringVar(&o.bin, "pinkie", "", "pinkie binary (required)")
	flag.BoolVar(&o.restart, "restart", true, "measure reconnect and drain after a hub restart (kill -9, start)")
	flag.DurationVar(&o.backlog, "backlog", 5*time.Minute, "hub down this long while agents go on (0 skips); at 1 event/s, 5m is about one real hour of the mix per agent")
	flag.DurationVar(&o.reconnect, "reconnect", 2*time.Second, "agents' base reconnect interval (pinkie agent's default)")
	flag.StringVar(&o.leafCompression, "leaf-compression", "", "the hub's --leaf-compression (default: the hub's, s2_auto); off saves about 5 MiB of hub memory per agent")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (hub logs, data)")
	flag.Parse()
	if o.bin == "" || o.agents < 1 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "fleetbench: need -pinkie BIN, -agents >= 1, -duration > 0")
		os.Exit(2)
	}
	if o.procs <= 0 {
		o.procs = (o.agents + 249) / 250
	}
	o.procs = min(o.procs, o.agents)
	r, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetbench:", err)
		os.Exit(1)
	}
	fmt.Printf("agents=%d events=%d lost=%d duplicated=%d\n", o.agents, r.events, r.lost, r.dups)
	if r.lost > 0 || r.dups > 0 {
		os.Exit(1)
	}
}

type opts struct {
	agents, procs    int
	duration         time.Duration
	cluster, restart bool
	keep             bool
	backlog          time.Duration
	reconnect        time.Duration
	bin              string
	leafCompression  string
}

type result struct {
	events, lost, dups uint64
}

type bench struct {
	o       opts
	nodes   []*hubNode
	sims    []*simProc
	track   *tracker
	say     func(format string, a ...any)
	started time.Time
}

func (b *bench) connected() int {
	n := 0
	for _, s := range b.sims {
		n += s.connected()
	}
	return n
}

// waitFor polls cond every 100 ms for at most within; it returns how long
// it took.
func waitFor(within time.Duration, what string, cond func() bool) (time.Duration, error) {
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			return 0, fmt.Errorf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), nil
}

// mark asks every simulator for its hosts' last stored sequence numbers.
func (b *bench) mark(cmd string) (map[string]uint64, uint64, error) {
	all := map[string]uint64{}
	var published uint64
	for _, s := range b.sims {
		m, err := s.ask(cmd, 2*time.Minute)
		if err != nil {
			return nil, 0, err
		}
		for h, n := range m.Seqs {
			all[h] = n
		}
		published += m.Published
	}
	return all, published, nil
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func (b *bench) hubCPU() float64 {
	var c float64
	for _, n := range b.nodes {
		if v, err := cpuSeconds(n.cmd.Process.Pid); err == nil {
			c += v
		}
	}
	return c
}

func (b *bench) simCPU() float64 {
	var c float64
	for _, s := range b.sims {
		if v, err := cpuSeconds(s.cmd.Process.Pid); err == nil {
			c += v
		}
	}
	return c
}

func (b *bench) stopHubs(sig syscall.Signal) error {
	errs := make(chan error, len(b.nodes))
	for _, n := range b.nodes {
		go func() { errs <- n.stop(sig) }()
	}
	var err error
	for range b.nodes {
		err = errors.Join(err, <-errs)
	}
	return err
}

func (b *bench) startHubs() error {
	for _, n := range b.nodes {
		if err := n.start(); err != nil {
			return err
		}
	}
	for _, n := range b.nodes {
		if err := n.waitStarted(3 * time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// urls lists every node's URL for one of its listeners.
func (b *bench) urls(scheme string, port func(*hubNode) int) string {
	var u []string
	for _, n := range b.nodes {
		u = append(u, fmt.Sprintf("%s://127.0.0.1:%d", scheme, port(n)))
	}
	return strings.Join(u, ",")
}

// outage stops the hub(s) with sig, waits down, starts them again and
// measures how long until they have started, every agent is connected,
// and HOSTS holds everything the agents stored up to the start.
func (b *bench) outage(name string, sig syscall.Signal, down time.Duration) error {
	before, _, err := b.mark("mark")
	if err != nil {
		return err
	}
	if err := b.stopHubs(sig); err != nil {
		return err
	}
	if _, err := waitFor(time.Minute, "agents notice the hub is gone", func() bool { return b.connected() == 0 }); err != nil {
		return err
	}
	time.Sleep(down)
	t0 := time.Now()
	for _, n := range b.nodes {
		if err := n.start(); err != nil {
			return err
		}
	}
	at, _, err := b.mark("mark")
	if err != nil {
		return err
	}
	backlog := sum(at) - sum(before)
	for _, n := range b.nodes {
		if err := n.waitStarted(3 * time.Minute); err != nil {
			return err
		}
	}
	tStarted := time.Since(t0)
	cpu0 := b.hubCPU()
	tConn, err := waitFor(10*time.Minute, name+": every agent reconnects", func() bool { return b.connected() == b.o.agents })
	if err != nil {
		return err
	}
	tConn += tStarted
	var missing uint64
	tDrain, err := waitFor(30*time.Minute, name+": HOSTS holds every event stored before the start", func() bool {
		var ok bool
		ok, missing = b.track.covers(at)
		return ok
	})
	if err != nil {
		return fmt.Errorf("%w (%d missing)", err, missing)
	}
	tDrain += tConn
	cpu := b.hubCPU() - cpu0
	b.say("%s: hub(s) stopped (%s) for %s with agents sending; %d events stored in OUTBOXes meanwhile", name, sig, down.Round(time.Second), backlog)
	b.say("%s: hub started after %s, all %d agents connected after %s, HOSTS complete to the restart after %s (%.0f events/s of backlog)",
		name, tStarted.Round(time.Millisecond), b.o.agents, tConn.Round(time.Millisecond), tDrain.Round(time.Millisecond), float64(backlog)/tDrain.Seconds())
	if d := (tDrain - tConn).Seconds(); d > 0 {
		b.say("%s: %.0f events/s from the last agent's reconnect to the drain", name, float64(backlog)/d)
	}
	b.say("%s: hub CPU from its start to the drain: %.1f s (%.0f%% of one core, summed over nodes)", name, cpu, cpu/(tDrain-tStarted).Seconds()*100)
	return nil
}

func run(o opts) (res result, err error) {
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "pinkie-fleetbench-")
	if err != nil {
		return res, err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	b := &bench{o: o, started: time.Now()}
	b.say = func(format string, a ...any) {
		fmt.Printf("[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, a...))
	}
	mode := "single hub"
	if o.cluster {
		mode = "3-node hub cluster"
	}
	b.say("fleetbench: %d agents in %d simulator processes, %s, steady %s, data %s", o.agents, o.procs, mode, o.duration, dir)

	hosts := make([]string, o.agents)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%04d", i+1)
	}
	auth := filepath.Join(dir, "auth")
	if out, err := exec.Command(o.bin, "keys", "init", auth, "--hosts", strings.Join(hosts, ",")).CombinedOutput(); err != nil {
		return res, fmt.Errorf("pinkie keys init: %w: %s", err, out)
	}
	nn := 1
	if o.cluster {
		nn = 3
	}
	if b.nodes, err = newHubNodes(o.bin, dir, auth, nn); err != nil {
		return res, err
	}
	if o.leafCompression != "" {
		for _, n := range b.nodes {
			n.extraFlags = append(n.extraFlags, "--leaf-compression", o.leafCompression)
		}
	}
	defer func() { _ = b.stopHubs(syscall.SIGTERM) }()
	if err := b.startHubs(); err != nil {
		return res, err
	}
	b.say("hub(s) started")

	simLog, err := os.Create(filepath.Join(dir, "sim.log"))
	if err != nil {
		return res, err
	}
	defer simLog.Close()
	var logTo io.Writer = simLog
	per := (o.agents + o.procs - 1) / o.procs
	for i := 0; i < o.agents; i += per {
		s, err := startSim(self, hosts[i:min(i+per, o.agents)], b.urls("nats-leaf", func(n *hubNode) int { return n.leaf }), filepath.Join(auth, "hosts"),
			filepath.Join(dir, fmt.Sprintf("sim%d", len(b.sims))), o.reconnect, logTo)
		if err != nil {
			return res, err
		}
		b.sims = append(b.sims, s)
	}
	defer func() {
		for _, s := range b.sims {
			_ = s.send("exit")
			select {
			case <-s.done:
			case <-time.After(2 * time.Minute):
				_ = s.cmd.Process.Kill()
			}
		}
	}()
	for _, s := range b.sims {
		select {
		case <-s.ready:
		case <-s.done:
			return res, fmt.Errorf("a simulator exited while starting its agents (log %s)", simLog.Name())
		case <-time.After(time.Duration(per)*time.Second + 2*time.Minute):
			return res, errors.New("simulators did not start their agents in time")
		}
	}
	tConn, err := waitFor(10*time.Minute, "every agent connects", func() bool { return b.connected() == o.agents })
	if err != nil {
		return res, err
	}
	b.say("all %d agents started and connected (%s after the last simulator was ready)", o.agents, tConn.Round(time.Millisecond))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl, err := streams.Connect(ctx, b.urls("nats", func(n *hubNode) int { return n.nats }), filepath.Join(auth, "reader.nk"), "fleetbench")
	if err != nil {
		return res, err
	}
	defer cl.Conn.Close()
	b.track = newTracker()
	if err := b.track.follow(ctx, cl.JS); err != nil {
		return res, err
	}
	var simRSS0 float64
	for _, s := range b.sims {
		r, _, _ := memMiB(s.cmd.Process.Pid)
		simRSS0 += r
	}

	// Steady phase.
	for _, s := range b.sims {
		if err := s.send("go"); err != nil {
			return res, err
		}
	}
	cpu0, simCPU0, t0 := b.hubCPU(), b.simCPU(), time.Now()
	var peakSim float64
	tick := time.NewTicker(time.Second)
	lastReport := time.Now()
	for time.Since(t0) < o.duration {
		<-tick.C
		for _, s := range b.sims {
			select {
			case e := <-s.errs:
				return res, fmt.Errorf("simulator: %s", e)
			default:
			}
		}
		var hr, sr float64
		for _, n := range b.nodes {
			r, _, _ := memMiB(n.cmd.Process.Pid)
			hr += r
		}
		for _, s := range b.sims {
			r, _, _ := memMiB(s.cmd.Process.Pid)
			sr += r
		}
		peakSim = max(peakSim, sr)
		if time.Since(lastReport) >= 30*time.Second {
			lastReport = time.Now()
			var pub uint64
			for _, s := range b.sims {
				s.mu.Lock()
				pub += s.stat.Published
				s.mu.Unlock()
			}
			b.track.mu.Lock()
			inHosts := b.track.total
			b.track.mu.Unlock()
			b.say("steady: %d events stored by agents, %d in HOSTS (lag %d), hub RSS %.0f MiB, simulators RSS %.0f MiB, connected %d",
				pub, inHosts, int64(pub)-int64(inHosts), hr, sr, b.connected())
		}
	}
	tick.Stop()
	wall := time.Since(t0).Seconds()
	cpu1, simCPU1 := b.hubCPU(), b.simCPU()
	atEnd, published, err := b.mark("mark")
	if err != nil {
		return res, err
	}
	lag, err := waitFor(5*time.Minute, "HOSTS catches up with the steady phase", func() bool { ok, _ := b.track.covers(atEnd); return ok })
	if err != nil {
		return res, err
	}
	var hubRSS, hubPeak, simRSS float64
	for _, n := range b.nodes {
		r, p, _ := memMiB(n.cmd.Process.Pid)
		hubRSS += r
		hubPeak += p
		heap, err := n.goHeapMiB()
		if err != nil {
			b.say("hub node %s: %v", n.name, err)
		}
		b.say("hub node %s RSS %.0f MiB (peak %.0f MiB), Go heap in use %.0f MiB", n.name, r, p, heap)
	}
	for _, s := range b.sims {
		r, _, _ := memMiB(s.cmd.Process.Pid)
		simRSS += r
	}
	b.say("steady %s: %d events stored by agents (%.0f/s), HOSTS complete %s after the phase ended",
		o.duration, published, float64(published)/wall, lag.Round(time.Millisecond))
	b.say("hub CPU %.1f ms/s (%.1f%% of one core, summed over %d node(s)), RSS %.0f MiB (peak %.0f MiB)",
		(cpu1-cpu0)/wall*1000, (cpu1-cpu0)/wall*100, len(b.nodes), hubRSS, hubPeak)
	b.say("simulators: RSS %.0f MiB for %d agents = %.2f MiB per agent (%.2f MiB/agent before sending; peak sampled %.0f MiB); CPU %.2f ms/s per agent",
		simRSS, o.agents, simRSS/float64(o.agents), simRSS0/float64(o.agents), peakSim, (simCPU1-simCPU0)/wall*1000/float64(o.agents))

	if o.restart {
		if err := b.outage("restart", syscall.SIGKILL, 0); err != nil {
			return res, err
		}
	}
	if o.backlog > 0 {
		if err := b.outage("backlog", syscall.SIGTERM, o.backlog); err != nil {
			return res, err
		}
	}

	final, published, err := b.mark("stop")
	if err != nil {
		return res, err
	}
	if _, err := waitFor(10*time.Minute, "HOSTS holds every event", func() bool { ok, _ := b.track.covers(final); return ok }); err != nil {
		b.say("%v; counting what HOSTS holds", err)
	}
	time.Sleep(2 * time.Second) // let late doubles, if any, arrive
	st, err := scan(ctx, cl.JS)
	if err != nil {
		return res, err
	}
	var lost, dups, beyond uint64
	for h, n := range final {
		s := st.hosts[h]
		if s == nil {
			lost += n
			continue
		}
		for i := uint64(1); i <= n; i++ {
			if !s.has(i) {
				lost++
			}
		}
		dups += s.dups
		if s.max > n {
			beyond += s.max - n
		}
	}
	if dl, err := cl.JS.Stream(ctx, streams.DeadLetterStream); err == nil {
		b.say("DEADLETTER holds %d messages", dl.CachedInfo().State.Msgs)
	}
	var pending uint64
	if ic, err := cl.JS.Consumer(ctx, streams.IngestStream, streams.IngestConsumer); err == nil {
		pending = ic.CachedInfo().NumPending
	}
	b.say("final: %d events stored by agents, %d read back from HOSTS (%d other messages), ingest pending %d, events stored beyond a final mark %d",
		sum(final), st.total, st.foreign, pending, beyond)
	_ = published
	return result{events: sum(final), lost: lost, dups: dups}, nil
}
