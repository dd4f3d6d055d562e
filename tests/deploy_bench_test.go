package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/consumers/deploy"
	deployfleet "github.com/pinkiefleet/pinkie/deploy/fleet"
	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// TestDeployBench50Hosts measures the orchestration overhead of deploying
// 50 hosts: a real hub process, 50 agents in this process (each with the
// activator), trivial closures built beforehand. It reports the time from
// publishing the requests to the last activated event, and the time to
// read the fleet. Run it with scripts/bench/deploy.sh
// (PINKIE_DEPLOY_BENCH=1).
func TestDeployBench50Hosts(t *testing.T) {
	if os.Getenv("PINKIE_DEPLOY_BENCH") == "" {
		t.Skip("set PINKIE_DEPLOY_BENCH=1 (scripts/bench/deploy.sh) to run the 50-host deploy benchmark")
	}
	deployNeedNix(t)
	const n = 50
	hosts := map[string]deployTestHost{}
	var names []string
	for i := 0; i < n; i++ {
		h := fmt.Sprintf("sim%02d", i)
		hosts[h] = deployTestHost{tags: []string{"sim"}}
		names = append(names, h)
	}
	sort.Strings(names)
	fl := newDeployFlake(t, hosts)
	f := newFleet(t, names...)
	f.startHub()
	ctx := context.Background()
	nx := nix.Nix{Run: nix.ExecRunner{}}

	// Reading the fleet: one nix eval (median of 5).
	var reads []time.Duration
	for i := 0; i < 5; i++ {
		start := time.Now()
		if _, err := deployfleet.Read(ctx, nx, "path:"+fl.dir); err != nil {
			t.Fatal(err)
		}
		reads = append(reads, time.Since(start))
	}
	sort.Slice(reads, func(i, j int) bool { return reads[i] < reads[j] })

	// nix's own build time, for all 50 closures in one nix build.
	start := time.Now()
	paths := map[string]string{}
	for _, h := range names {
		p, err := nx.Build(ctx, nix.Toplevel("path:"+fl.dir, h))
		if err != nil {
			t.Fatal(err)
		}
		paths[h] = p
	}
	buildTime := time.Since(start)

	var agents []*streams.Agent
	for _, h := range names {
		act := &deploy.Activator{
			Host: h, Profile: filepath.Join(t.TempDir(), "system"), Nix: nx, Run: nix.ExecRunner{},
			StateDir: t.TempDir(), Now: time.Now, Log: discardLogger(),
			Builder: &deploy.Builder{Host: h, Nix: nx, Now: time.Now, Log: discardLogger()},
		}
		a, err := streams.StartAgent(ctx, streams.AgentOptions{
			Host: h, HubURLs: []string{f.leafURL()}, NkeyFile: streams.HostSeedFile(f.auth, h),
			DataDir: t.TempDir(), ReconnectInterval: 100 * time.Millisecond, Log: discardLogger(),
			Services: []streams.AgentService{streams.DeployAgentConsumer{
				Durable: streams.DeployActivatorConsumer, Phases: []string{"requested", "activation.ordered"},
				Handle: func(ctx context.Context, a *streams.Agent, d streams.DeployDelivery) error {
					return act.Handle(ctx, a.Publisher(), deploy.Delivery{Event: d.Event, Kind: d.Kind.Name, Data: d.Data, LatestRequestID: d.LatestRequestID})
				},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		agents = append(agents, a)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, a := range agents {
		for !a.Connected() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	c := f.client()
	// Wait until the hub has every host's consumer (its deploy service
	// creates them within a tick of start).
	for _, h := range names {
		for {
			if _, err := c.JS.PushConsumer(ctx, streams.DeployStream, "AGENT_"+h); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no AGENT_%s consumer", h)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	k, _ := events.Lookup("deploy.requested")
	start = time.Now()
	for _, h := range names {
		data := &events.DeployRequested{Host: h, BuildOn: "local", Goal: "switch", StorePath: paths[h], RequestedBy: "bench"}
		e, err := events.New(k, "bench", "cli", time.Now(), data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Publish(ctx, k.HubSubject(data), e); err != nil {
			t.Fatal(err)
		}
	}
	published := time.Since(start)
	waitCount(t, c.JS, streams.DeployStream, "pinkie.deploy.*.activated", n, 120*time.Second)
	total := time.Since(start)
	var activation float64
	for _, se := range readStream(t, c.JS, streams.DeployStream, "pinkie.deploy.*.activated") {
		d, _ := events.DecodeData(se.event, se.kind)
		activation += d.(*events.DeployPhase).DurationSeconds
	}
	report := fmt.Sprintf(`deploy benchmark: %d hosts, agents in one process, hub a separate pinkie process
  read the fleet (nix eval, %d hosts): median %s (min %s, max %s)
  nix build of the %d closures (excluded below): %s
  publish %d requests: %s
  request → last activated: %s
  sum of per-host activation time (nix-env --set + switch-to-configuration): %.2fs (mean %.0fms)
`, n, n, reads[2].Round(time.Millisecond), reads[0].Round(time.Millisecond), reads[4].Round(time.Millisecond),
		n, buildTime.Round(time.Millisecond), n, published.Round(time.Millisecond), total.Round(time.Millisecond),
		activation, activation/n*1000)
	t.Log("\n" + report)
	if out := os.Getenv("PINKIE_DEPLOY_BENCH_OUT"); out != "" {
		_ = os.WriteFile(out, []byte(strings.TrimSpace(report)+"\n"), 0o644)
	}
}
