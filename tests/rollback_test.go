package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitPath waits until path exists.
func waitPath(t *testing.T, path string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not appear within %s", path, within)
}

// TestDeployMagicRollback is magic rollback end to end: a switch after
// which the agent cannot reach the hub (its link cut by the test while
// switch-to-configuration runs, as a configuration breaking the network
// would) is rolled back by the agent alone, while cut off, within the
// host's rollbackTimeout from the flake; the rolledback report waits in
// the OUTBOX and reaches the hub once the link is back. A link that blips
// and comes back within the timeout keeps the new configuration.
func TestDeployMagicRollback(t *testing.T) {
	deployNeedNix(t)
	const timeout = 4 // seconds, the host's pinkie.deployment.rollbackTimeout
	f := &deployFleet{fleet: newFleet(t, "goliath"), data: map[string]string{}, profiles: map[string]string{}, agents: map[string]*proc{}}
	f.flake = newDeployFlake(t, map[string]deployTestHost{"goliath": {rollbackTimeout: timeout}})
	f.startHub()
	proxy := newLinkProxy(t, fmt.Sprintf("127.0.0.1:%d", f.leafPort))
	f.data["goliath"] = t.TempDir()
	f.profiles["goliath"] = filepath.Join(t.TempDir(), "profiles", "system")
	agent := f.startAgent("goliath", f.data["goliath"], proxy.url(),
		"--producers", "heartbeat", "--heartbeat", "1h", "--system-profile", f.profiles["goliath"], "--activation", "direct")
	agent.waitFor("hub connected", 30*time.Second)

	deployHost := func() deployJSON {
		t.Helper()
		out, code := f.deploy("goliath", "--wait", "--json", "--timeout", "90s")
		res := parseDeployJSON(t, out)
		if len(res.Hosts) != 1 {
			t.Fatalf("deploy goliath: exit %d\n%s", code, out)
		}
		return res
	}
	// deployAsync runs the deploy in the background: the test cuts the
	// link while the agent switches.
	deployAsync := func() <-chan deployJSON {
		ch := make(chan deployJSON, 1)
		go func() {
			out, _ := f.deploy("goliath", "--wait", "--json", "--timeout", "90s")
			var res deployJSON
			var err error
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "{") {
					err = json.Unmarshal([]byte(l), &res)
				}
			}
			if err != nil || len(res.Hosts) != 1 {
				t.Errorf("deploy goliath printed %q: %v", out, err)
			}
			ch <- res
		}()
		return ch
	}
	rev := func() string { return fmt.Sprintf("r%d", f.flake.rev) }
	armCut := func() {
		t.Helper()
		if err := os.WriteFile(filepath.Join(f.flake.dir, "cut-goliath-"+rev()), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// cutDuringSwitch waits for the switch, cuts the link, waits until the
	// agent noticed and lets the switch end.
	cutDuringSwitch := func() {
		t.Helper()
		before := agent.count("hub unreachable")
		waitPath(t, filepath.Join(f.flake.dir, "switched-goliath-"+rev()), 60*time.Second)
		proxy.cut()
		deadline := time.Now().Add(10 * time.Second)
		for agent.count("hub unreachable") == before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if agent.count("hub unreachable") == before {
			t.Fatalf("the agent did not notice the cut link:\n%s", agent.out.String())
		}
		if err := os.WriteFile(filepath.Join(f.flake.dir, "cut-done-goliath-"+rev()), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// r1: the first generation, a plain deploy.
	if res := deployHost(); res.Hosts[0].Outcome != "activated" {
		t.Fatalf("first deploy: %+v", res.Hosts[0])
	}
	r1 := f.profile("goliath")

	t.Run("a blip within the timeout keeps the new configuration", func(t *testing.T) {
		f.flake.commit()
		armCut()
		done := deployAsync()
		cutDuringSwitch()
		proxy.restore()
		res := <-done
		if len(res.Hosts) != 1 {
			t.FailNow()
		}
		if h := res.Hosts[0]; h.Outcome != "activated" {
			t.Fatalf("after a blip: outcome %s (%s), want activated", h.Outcome, h.Reason)
		}
		if i := strings.LastIndex(agent.out.String(), "deploy confirmed"); i < 0 || strings.Contains(agent.out.String()[i:], "attempts=1 ") {
			t.Errorf("the agent confirmed at its first attempt, while the link was cut, or never:\n%s", agent.out.String())
		}
		if got := f.profile("goliath"); got == r1 || !strings.HasSuffix(got, "-"+rev()) {
			t.Errorf("profile points at %s, want revision %s", got, rev())
		}
	})

	t.Run("a configuration that cuts the link is rolled back", func(t *testing.T) {
		r2 := f.profile("goliath")
		f.flake.commit()
		armCut()
		done := deployAsync()
		cut := time.Now()
		cutDuringSwitch()
		// The agent restores r2 on its own, while cut off.
		back := "goliath switch " + r2[strings.LastIndex(r2, "-")+1:]
		deadline := time.Now().Add(time.Duration(timeout)*time.Second + 30*time.Second)
		for time.Now().Before(deadline) {
			log := f.flake.stcLog()
			if len(log) > 0 && log[len(log)-1] == back && contains(log, "goliath switch "+rev()) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		log := f.flake.stcLog()
		if log[len(log)-1] != back {
			t.Fatalf("the agent did not switch back to %s while cut off; switch log:\n%s\nagent:\n%s", r2, strings.Join(log, "\n"), agent.out.String())
		}
		rolledBackAfter := time.Since(cut)
		if rolledBackAfter < time.Duration(timeout)*time.Second {
			t.Errorf("rolled back %s after the cut, before the %d s timeout", rolledBackAfter, timeout)
		}
		if got := f.profile("goliath"); got != r2 {
			t.Errorf("profile points at %s after the rollback, want %s", got, r2)
		}
		// The report is in the OUTBOX: the hub has no outcome yet.
		select {
		case res := <-done:
			t.Fatalf("the deploy ended while the agent was cut off: %+v", res)
		case <-time.After(time.Second):
		}
		proxy.restore()
		res := <-done
		if len(res.Hosts) != 1 {
			t.FailNow()
		}
		h := res.Hosts[0]
		if h.Outcome != "rolledback" {
			t.Fatalf("outcome %s (%s), want rolledback", h.Outcome, h.Reason)
		}
		for _, want := range []string{"cut the agent off from the hub", fmt.Sprintf("for %ds after the switch", timeout), "restored the previous generation " + r2} {
			if !strings.Contains(h.Reason, want) {
				t.Errorf("reason %q does not say %q", h.Reason, want)
			}
		}
		t.Logf("rolled back %s after the cut (timeout %d s); reason: %s", rolledBackAfter.Round(time.Millisecond), timeout, h.Reason)
	})
}
