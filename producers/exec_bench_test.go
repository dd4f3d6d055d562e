package producers

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// BenchmarkHostCycle runs one full collection of every host collector
// (profile, network, systemd, guest) against this machine's real root
// with real commands, and reports wall and CPU time (user+system of this
// process and the commands it waited for) per cycle. Each cycle uses fresh
// producers, so caches (package counts, pci.ids) and change gates do not
// hide work.
func BenchmarkHostCycle(b *testing.B) { execBenchCycle(b, false) }

// BenchmarkHostCycleWarm is the agent's steady state: the same producers
// every cycle, caches warm (their change gates do not skip any work: they
// only decide whether to report).
func BenchmarkHostCycleWarm(b *testing.B) { execBenchCycle(b, true) }

func execBenchCycle(b *testing.B, warm bool) {
	env := Env{Host: "bench", Root: os.DirFS("/"), Run: ExecRunner{Timeout: 10 * time.Second}, Now: time.Now}
	ctx := context.Background()
	cpu := func() time.Duration {
		var self, kids syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
		_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
		tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
		return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
	}
	p, _ := NewProfile(nil)
	n, _ := NewNetwork(nil)
	s, _ := NewSystemd(nil)
	startCPU := cpu()
	b.ResetTimer()
	for range b.N {
		if !warm {
			p, _ = NewProfile(nil)
			n, _ = NewNetwork(nil)
			s, _ = NewSystemd(nil)
		}
		for _, c := range []Collector{p, n, s, &Guest{every: time.Minute}} {
			if _, err := c.Collect(ctx, env); err != nil && !errors.Is(err, ErrNotApplicable) {
				b.Logf("%s: %v", c.Name(), err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu()-startCPU)/float64(b.N)/1e6, "cpu-ms/op")
}

// BenchmarkAllCollectorsCycle runs one cycle of every collector that is on
// by default (host and storage), built as the agent builds them, against
// this machine; cpu-ms/op includes the commands they run.
func BenchmarkAllCollectorsCycle(b *testing.B) {
	env := Env{Host: "bench", Root: os.DirFS("/"), Run: ExecRunner{Timeout: 10 * time.Second}, Now: time.Now, State: &MemState{}}
	ctx := context.Background()
	cpu := func() time.Duration {
		var self, kids syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
		_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
		tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
		return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
	}
	built, err := Config{}.Build(Info{Instance: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	var cs []Collector
	for _, x := range built {
		if x.Collector != nil {
			cs = append(cs, x.Collector)
		}
	}
	startCPU := cpu()
	b.ResetTimer()
	for range b.N {
		for _, c := range cs {
			if _, err := c.Collect(ctx, env); err != nil && !errors.Is(err, ErrNotApplicable) && b.N == 1 {
				b.Logf("%s: %v", c.Name(), err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu()-startCPU)/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(float64(len(cs)), "collectors")
}
