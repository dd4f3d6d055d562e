package streams

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestSourceReaddLosesNothing removes and adds back a host's source of
// INGEST again and again while the agent publishes as fast as it can, as
// budget pauses and hub restarts do: every event the agent stored must
// reach INGEST exactly once.
func TestSourceReaddLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short")
	}
	hub, auth := startAuthedTestHub(t, "goliath")
	a := startTestAgent(t, "goliath", hub.LeafURL(), HostSeedFile(auth, "goliath"))
	defer a.Close()
	ctx := context.Background()
	const n = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			if err := a.Publish(ctx, heartbeat(t, "goliath", uint64(i)), ""); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	hosts := map[string]bool{"goliath": true}
	for i := 0; i < 40; i++ {
		time.Sleep(time.Duration(20+i%5*10) * time.Millisecond)
		if err := hub.setIngestHosts(ctx, map[string]bool{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i%3*20) * time.Millisecond)
		if err := hub.setIngestHosts(ctx, hosts); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	var got uint64
	for time.Now().Before(deadline) {
		st, err := hub.JetStream().Stream(ctx, IngestStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = info.State.Msgs
		if got >= n && len(info.Sources) == 1 && info.Sources[0].Lag == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	st, _ := hub.JetStream().Stream(ctx, IngestStream)
	info, _ := st.Info(ctx)
	got = info.State.Msgs
	src := ""
	for _, s := range info.Sources {
		src += fmt.Sprintf(" lag=%d active=%s err=%v", s.Lag, s.Active, s.Error)
	}
	if got != n {
		t.Fatalf("INGEST holds %d of the agent's %d events after 40 source re-adds;%s", got, n, src)
	}
}

// TestNewOutboxIsNotSkipped: a host's agent is replaced by one with an
// empty data dir (a reinstall) while the hub's source of that host is
// live. The new OUTBOX's events must all arrive: numbered from 1 again,
// the hub's source would take them for ones it already stored and
// acknowledge them away.
func TestNewOutboxIsNotSkipped(t *testing.T) {
	hub, auth := startAuthedTestHub(t, "goliath")
	ctx := context.Background()
	old := startTestAgent(t, "goliath", hub.LeafURL(), HostSeedFile(auth, "goliath"))
	for i := 1; i <= 200; i++ {
		if err := old.Publish(ctx, heartbeat(t, "goliath", uint64(i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	waitMsgs(t, hub.JetStream(), HostsStream, "pinkie.host.goliath.heartbeat", 200, 20*time.Second)
	old.Close()
	fresh := startTestAgent(t, "goliath", hub.LeafURL(), HostSeedFile(auth, "goliath"))
	defer fresh.Close()
	for i := 1; i <= 5; i++ {
		if err := fresh.Publish(ctx, heartbeat(t, "goliath", uint64(1000+i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	waitMsgs(t, hub.JetStream(), HostsStream, "pinkie.host.goliath.heartbeat", 205, 30*time.Second)
}
