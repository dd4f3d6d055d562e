package tests

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
	"github.com/pinkiefleet/pinkie/streams"
)

func TestTwoAgentsEventsReachHosts(t *testing.T) {
	f := newFleet(t, "goliath", "koishi")
	f.startHub()
	for _, h := range []string{"goliath", "koishi"} {
		f.startAgent(h, t.TempDir(), "", "--producers", "heartbeat,profile", "--heartbeat", "50ms", "--heartbeat-limit", "5")
	}
	c := f.client()
	for _, h := range []string{"goliath", "koishi"} {
		waitCount(t, c.JS, streams.HostsStream, "pinkie.host."+h+".heartbeat", 5, 30*time.Second)
		waitCount(t, c.JS, streams.HostsStream, "pinkie.host."+h+".profile", 1, 30*time.Second)
	}
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	got := readStream(t, c.JS, streams.HostsStream, "pinkie.host.>")
	if len(got) != 12 {
		t.Fatalf("HOSTS holds %d events, want 12 (5 heartbeats and 1 profile per host)", len(got))
	}
	for _, se := range got {
		host, producer, err := events.ParseSource(se.event.Source())
		if err != nil {
			t.Fatal(err)
		}
		if want := "pinkie.host." + host + "." + se.kind.Name; se.subject != want {
			t.Errorf("event from %s/%s on %s, want %s", host, producer, se.subject, want)
		}
		if err := set.ValidateData(se.event.Type(), se.event.Data()); err != nil {
			t.Errorf("stored %s does not match its schema: %v", se.subject, err)
		}
	}
}

// heartbeatRuns describes where key's (host/instance) heartbeats are
// stored: runs of consecutive counters with the stream sequences they
// span, so a failure says whether events came late or never.
func heartbeatRuns(got []storedEvent, key string) string {
	var b strings.Builder
	var first, prev, firstSeq, prevSeq uint64
	flush := func() {
		if first > 0 {
			fmt.Fprintf(&b, "  counters %d..%d at stream seq %d..%d\n", first, prev, firstSeq, prevSeq)
		}
	}
	n := 0
	for _, se := range got {
		host, _, _ := events.ParseSource(se.event.Source())
		d, err := events.DecodeData(se.event, se.kind)
		if err != nil {
			continue
		}
		hb := d.(*events.Heartbeat)
		if host+"/"+hb.Instance != key {
			continue
		}
		n++
		if first > 0 && hb.Counter == prev+1 {
			prev, prevSeq = hb.Counter, se.seq
			continue
		}
		flush()
		first, prev, firstSeq, prevSeq = hb.Counter, hb.Counter, se.seq, se.seq
	}
	flush()
	return fmt.Sprintf("%s: %d heartbeats stored, in runs:\n%s", key, n, b.String())
}

// heartbeatsByInstance checks that every agent process's heartbeats are
// stored exactly once each, contiguous from 1 and in order, and returns
// per host the counts of each instance.
func heartbeatsByInstance(t *testing.T, got []storedEvent) map[string]map[string]uint64 {
	t.Helper()
	ids := map[string]bool{}
	last := map[string]uint64{} // host/instance -> newest counter
	out := map[string]map[string]uint64{}
	for _, se := range got {
		if ids[se.event.ID()] {
			t.Fatalf("event id %s stored twice", se.event.ID())
		}
		ids[se.event.ID()] = true
		host, _, _ := events.ParseSource(se.event.Source())
		d, err := events.DecodeData(se.event, se.kind)
		if err != nil {
			t.Fatal(err)
		}
		hb := d.(*events.Heartbeat)
		key := host + "/" + hb.Instance
		if hb.Counter != last[key]+1 {
			t.Fatalf("%s: heartbeat %d follows %d (stream seq %d): lost, doubled or out of order\n%s", key, hb.Counter, last[key], se.seq, heartbeatRuns(got, key))
		}
		last[key] = hb.Counter
		if out[host] == nil {
			out[host] = map[string]uint64{}
		}
		out[host][hb.Instance] = hb.Counter
	}
	return out
}

// settle waits until the hub's INGEST stream is empty and the count of
// heartbeats in HOSTS stops changing, then returns it.
func settle(t *testing.T, js jetstream.JetStream, want uint64, within time.Duration) uint64 {
	t.Helper()
	n := waitCount(t, js, streams.HostsStream, "pinkie.host.*.heartbeat", want, within)
	for i := 0; i < 50; i++ {
		if countSubjects(t, js, streams.IngestStream, ">") == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // anything doubled would arrive now
	if m := countSubjects(t, js, streams.HostsStream, "pinkie.host.*.heartbeat"); m != n {
		t.Fatalf("HOSTS went from %d to %d heartbeats after settling", n, m)
	}
	return n
}

func TestStoreAndForward(t *testing.T) {
	if testing.Short() {
		t.Skip("store-and-forward runs 10,000 events per case; skipped with -short")
	}
	const perAgent = 5000
	for _, mode := range []string{"hub stopped", "link cut", "agent restarted during outage"} {
		t.Run(mode, func(t *testing.T) {
			f := newFleet(t, "goliath", "koishi")
			hub := f.startHub()
			proxy := newLinkProxy(t, fmt.Sprintf("127.0.0.1:%d", f.leafPort))
			dataDirs := map[string]string{"goliath": t.TempDir(), "koishi": t.TempDir()}
			agentArgs := []string{"--producers", "heartbeat", "--heartbeat", "1ms", "--heartbeat-limit", fmt.Sprint(perAgent)}
			agents := map[string]*proc{}
			for _, h := range []string{"goliath", "koishi"} {
				agents[h] = f.startAgent(h, dataDirs[h], proxy.url(), agentArgs...)
			}
			for _, a := range agents {
				a.waitFor("hub connected", 30*time.Second)
			}
			c := f.client()
			// On failure, say which side lost events: the OUTBOXes (read
			// from the stopped agents' stores) and the OUTBOX sequences
			// INGEST is missing.
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("sourcing state after the failure:\n%s", storeAndForwardReport(f, agents, dataDirs))
				}
			})
			// Events flow from both before the outage starts.
			waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", 100, 30*time.Second)
			waitCount(t, c.JS, streams.HostsStream, "pinkie.host.koishi.heartbeat", 100, 30*time.Second)
			switch mode {
			case "hub stopped":
				hub.stop(syscall.SIGTERM)
			default:
				proxy.cut()
			}
			for _, h := range []string{"goliath", "koishi"} {
				agents[h].waitFor("hub unreachable", 30*time.Second)
			}
			var storedBeforeKill uint64
			if mode == "agent restarted during outage" {
				// Let goliath store more while cut off, kill it hard, and
				// read from its store how many heartbeats it had.
				time.Sleep(500 * time.Millisecond)
				agents["goliath"].stop(syscall.SIGKILL)
				storedBeforeKill = outboxLastSeq(t, dataDirs["goliath"])
				if storedBeforeKill == 0 {
					t.Fatal("killed agent had stored nothing")
				}
				agents["goliath"] = f.startAgent("goliath", dataDirs["goliath"], proxy.url(), agentArgs...)
			}
			for _, h := range []string{"goliath", "koishi"} {
				agents[h].waitFor("producer finished", 60*time.Second)
			}
			// Each agent logged the outage once, not per retry.
			for h, a := range agents {
				if n := a.count("hub unreachable"); n != 1 && !(h == "goliath" && mode == "agent restarted during outage") {
					t.Errorf("%s logged 'hub unreachable' %d times, want once", h, n)
				}
			}
			switch mode {
			case "hub stopped":
				f.startHub()
				proxy.cut() // re-establish cleanly through the proxy
				proxy.restore()
			default:
				proxy.restore()
			}
			want := uint64(2 * perAgent)
			if mode == "agent restarted during outage" {
				want += storedBeforeKill
			}
			c = f.client()
			if got := settle(t, c.JS, want, 120*time.Second); got != want {
				t.Fatalf("HOSTS holds %d heartbeats, want exactly %d", got, want)
			}
			byHost := heartbeatsByInstance(t, readStream(t, c.JS, streams.HostsStream, "pinkie.host.*.heartbeat"))
			for _, h := range []string{"goliath", "koishi"} {
				var counts []uint64
				for _, n := range byHost[h] {
					counts = append(counts, n)
				}
				sort.Slice(counts, func(i, j int) bool { return counts[i] < counts[j] })
				wantCounts := []uint64{perAgent}
				if h == "goliath" && mode == "agent restarted during outage" {
					wantCounts = []uint64{storedBeforeKill, perAgent}
					sort.Slice(wantCounts, func(i, j int) bool { return wantCounts[i] < wantCounts[j] })
				}
				if fmt.Sprint(counts) != fmt.Sprint(wantCounts) {
					t.Errorf("%s: heartbeats per agent process %v, want %v", h, counts, wantCounts)
				}
			}
		})
	}
}

// storeAndForwardReport stops the agents and describes both ends of each
// host's source: the agent's OUTBOX and HUB consumer, read from its store,
// and the OUTBOX sequences missing from the hub's INGEST. An OUTBOX that
// stored every event and had them all acknowledged, with sequences missing
// from INGEST, means the hub's source skipped them; an OUTBOX that stored
// fewer means they were never stored.
func storeAndForwardReport(f *fleet, agents map[string]*proc, dataDirs map[string]string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	if c, err := streams.Connect(ctx, f.natsURL(), f.operator(), "e2e report"); err != nil {
		fmt.Fprintf(&b, "INGEST: connect to the hub: %v\n", err)
	} else {
		b.WriteString(streams.IngestGapReport(ctx, c.JS))
		c.Close()
	}
	for _, h := range []string{"goliath", "koishi"} {
		agents[h].kill() // SIGKILL: a clean stop would not change the store, and this cannot hang
		a, err := streams.StartAgent(ctx, streams.AgentOptions{Host: h, DataDir: dataDirs[h], Log: discardLogger()})
		if err != nil {
			fmt.Fprintf(&b, "%s: open store: %v\n", h, err)
			continue
		}
		b.WriteString(streams.OutboxReport(ctx, a.JetStream(), h))
		a.Close()
	}
	return b.String()
}

// outboxLastSeq opens a stopped agent's store (without a hub) and returns
// how many events its OUTBOX ever stored (it numbers from its FirstSeq).
func outboxLastSeq(t *testing.T, dataDir string) uint64 {
	t.Helper()
	ctx := context.Background()
	a, err := streams.StartAgent(ctx, streams.AgentOptions{Host: "goliath", DataDir: dataDir, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	st, err := a.JetStream().Stream(ctx, streams.OutboxStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := max(info.Config.FirstSeq, 1)
	if info.State.LastSeq < first {
		return 0
	}
	return info.State.LastSeq - first + 1
}

func TestHubSIGTERMDuringIngestLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short")
	}
	const perAgent = 3000
	f := newFleet(t, "goliath", "koishi")
	hub := f.startHub()
	for _, h := range []string{"goliath", "koishi"} {
		f.startAgent(h, t.TempDir(), "", "--producers", "heartbeat", "--heartbeat", "1ms", "--heartbeat-limit", fmt.Sprint(perAgent))
	}
	// A client publishes deploy requests throughout; every one the hub
	// acknowledged must be there after the restart.
	k, _ := events.Lookup("deploy.requested")
	acked := map[string]bool{}
	stopPub := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		var c *streams.Client
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				if c != nil {
					c.Close()
				}
				return
			default:
			}
			if c == nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				var err error
				c, err = streams.Connect(ctx, f.natsURL(), f.operator(), "pub loop")
				cancel()
				if err != nil {
					c = nil
					time.Sleep(50 * time.Millisecond)
					continue
				}
			}
			e, err := events.New(k, "tester", "cli", time.Now(), events.DeployRequested{Host: "goliath", Revision: fmt.Sprint(i)})
			if err != nil {
				panic(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if _, err := c.Publish(ctx, "pinkie.deploy.goliath.requested", e); err == nil {
				acked[e.ID()] = true
			}
			cancel()
		}
	}()
	c := f.client()
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.*.heartbeat", 1000, 30*time.Second)
	hub.stop(syscall.SIGTERM)
	if !strings.Contains(hub.out.String(), "hub stopped") {
		t.Fatalf("hub did not stop cleanly:\n%s", hub.out.String())
	}
	time.Sleep(300 * time.Millisecond)
	f.startHub()
	time.Sleep(500 * time.Millisecond)
	close(stopPub)
	<-pubDone
	c = f.client()
	if got := settle(t, c.JS, 2*perAgent, 120*time.Second); got != 2*perAgent {
		t.Fatalf("HOSTS holds %d heartbeats, want %d", got, 2*perAgent)
	}
	heartbeatsByInstance(t, readStream(t, c.JS, streams.HostsStream, "pinkie.host.*.heartbeat"))
	stored := map[string]bool{}
	for _, se := range readStream(t, c.JS, streams.DeployStream, "pinkie.deploy.>") {
		stored[se.event.ID()] = true
	}
	if len(acked) < 10 {
		t.Fatalf("only %d deploy requests were acknowledged: the test did not exercise the hub", len(acked))
	}
	for id := range acked {
		if !stored[id] {
			t.Errorf("acknowledged deploy request %s is missing after the restart", id)
		}
	}
	t.Logf("%d acknowledged deploy requests, all stored", len(acked))
}
