package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// healthz reads the hub's /healthz from loopback.
func (f *fleet) healthz(t *testing.T) (int, streams.Health, string) {
	t.Helper()
	resp, err := http.Get(f.httpURL() + "/healthz")
	if err != nil {
		return 0, streams.Health{}, err.Error()
	}
	defer resp.Body.Close()
	var hl streams.Health
	var b strings.Builder
	_ = json.NewDecoder(teeReader{resp.Body, &b}).Decode(&hl)
	return resp.StatusCode, hl, b.String()
}

type teeReader struct {
	r interface{ Read([]byte) (int, error) }
	w *strings.Builder
}

func (t teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.w.Write(p[:n])
	return n, err
}

// waitExit waits for p to exit by itself and returns its exit code.
func (p *proc) waitExit(within time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		p.t.Fatalf("%s did not exit within %s:\n%s", p.name, within, p.out.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatalf("%s: %v", p.name, p.err)
	}
	return 0
}

// stopTimed sends SIGTERM and returns how long the process took to exit.
func (p *proc) stopTimed() time.Duration {
	p.t.Helper()
	start := time.Now()
	p.stop(syscall.SIGTERM)
	return time.Since(start)
}

// mountTmpfs mounts a tmpfs of size at a new directory, unmounted when the
// test ends (after the processes using it are stopped).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill needs root")
	}
	dir := filepath.Join(t.TempDir(), "small-disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillTo writes a filler file that leaves about free bytes on dir's file
// system (on top of what an existing filler takes).
func fillTo(t *testing.T, dir string, free int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	name := filepath.Join(dir, "filler")
	var have int64
	if fi, err := os.Stat(name); err == nil {
		have = fi.Size()
	}
	want := have + avail - free
	if want < 0 {
		want = 0
	}
	fd, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := fd.Truncate(want); err != nil {
		t.Fatal(err)
	}
	if want > have {
		if err := syscall.Fallocate(int(fd.Fd()), 0, 0, want); err != nil {
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
}

// waitHealthzProblem polls /healthz until it answers 503 with a problem
// holding reason, and returns when that was.
func (f *fleet) waitHealthzProblem(t *testing.T, hub *proc, reason string, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		code, hl, body := f.healthz(t)
		if code == http.StatusServiceUnavailable && strings.Contains(strings.Join(hl.Problems, "\n"), reason) {
			return time.Now()
		}
		if code != 0 {
			last = fmt.Sprintf("%d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/healthz did not answer 503 naming %q within %s; last: %s\nhub:\n%s", reason, within, last, hub.out.String())
	return time.Time{}
}

// TestHubDiskFull runs a real hub on a 64 MiB tmpfs and a real agent
// sending heartbeats as fast as it can. When the disk fills, nats-server
// disables JetStream: /healthz must say so (503), the hub must exit
// non-zero in bounded time (so systemd's Restart=on-failure brings it
// back), SIGTERM at a full disk must return in bounded time, and once
// space returns and the hub restarts on the same data, every event the
// agent produced is in HOSTS exactly once.
func TestHubDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a disk twice; skipped with -short")
	}
	disk := mountTmpfs(t, "64m")
	const events = 12000
	f := newFleet(t, "goliath")
	f.hubData = filepath.Join(disk, "hub")
	hub := f.startHub()
	fillTo(t, disk, 4<<20)
	agent := f.startAgent("goliath", t.TempDir(), "", "--producers", "heartbeat", "--heartbeat", "1ms", "--heartbeat-limit", fmt.Sprint(events))

	// The disk fills: JetStream off, /healthz says so, the hub gives up.
	full := f.waitHealthzProblem(t, hub, "JetStream is disabled", 120*time.Second)
	code := hub.waitExit(40 * time.Second)
	exited := time.Since(full)
	if code != 1 {
		t.Errorf("the hub exited with %d when the disk filled, want 1:\n%s", code, hub.out.String())
	}
	if exited > 30*time.Second {
		t.Errorf("the hub took %s after /healthz said JetStream is disabled to exit, want at most 30s", exited)
	}
	if !strings.Contains(hub.out.String(), "JetStream out of space, will be DISABLED") {
		t.Errorf("nats-server did not report the full disk; the test did not exercise it:\n%s", hub.out.String())
	}
	t.Logf("disk full: /healthz 503 at %s, the hub exited with %d %s later", full.Format("15:04:05.000"), code, exited.Round(time.Millisecond))

	// A start on a still full disk fails (non-zero: systemd tries again).
	out, code := runPinkie(t, "hub", "--data", f.hubData, "--auth", f.auth,
		"--nats", fmt.Sprintf("127.0.0.1:%d", f.natsPort), "--leaf", fmt.Sprintf("127.0.0.1:%d", f.leafPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", f.httpPor))
	if code == 0 {
		t.Errorf("a hub started on a full disk exited 0:\n%s", out)
	}

	// A little room: the hub starts, takes more events, fills the disk
	// again; SIGTERM then must still finish promptly.
	fillTo(t, disk, 2<<20)
	hub = f.startHub()
	f.waitHealthzProblem(t, hub, "JetStream is disabled", 120*time.Second)
	took := hub.stopTimed()
	if took > 15*time.Second {
		t.Errorf("SIGTERM at a full disk took %s, want at most 15s", took)
	}
	t.Logf("SIGTERM at a full disk: the hub stopped in %s", took.Round(time.Millisecond))

	// Space returns: everything the agent produced arrives, once.
	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	hub = f.startHub()
	agent.waitFor("producer finished", 180*time.Second)
	c := f.client()
	if got := settle(t, c.JS, events, 120*time.Second); got != events {
		t.Fatalf("HOSTS holds %d heartbeats, want %d", got, events)
	}
	byHost := heartbeatsByInstance(t, readStream(t, c.JS, streams.HostsStream, "pinkie.host.*.heartbeat"))
	if len(byHost["goliath"]) != 1 {
		t.Errorf("heartbeats of %d agent processes, want 1: %v", len(byHost["goliath"]), byHost)
	}
	for _, n := range byHost["goliath"] {
		if n != events {
			t.Errorf("HOSTS holds heartbeats 1..%d, want 1..%d", n, events)
		}
	}
	if code, hl, body := f.healthz(t); code != http.StatusOK || !hl.OK {
		t.Errorf("/healthz after recovery = %d %s", code, body)
	}
}

// TestHubSIGTERMWithFullStore fills the hub's store to its --max-store
// limit: telemetry cannot (HOSTS is capped at its share and rotates), so
// deploy requests for many hosts fill the room left for the deploy record;
// then a real agent's heartbeats find no room either: forwards to HOSTS
// fail with "insufficient resources" and the ingest check retries them.
// /healthz must say the store is full, SIGTERM must still stop the hub
// within 15s (it used to hang for minutes), and with a larger store every
// event arrives in HOSTS exactly once.
func TestHubSIGTERMWithFullStore(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short")
	}
	const events = 8000
	f := newFleet(t, "goliath")
	hub := f.startHub("--max-store", "33554432")
	fillWithDeployRequests(t, f)
	agent := f.startAgent("goliath", t.TempDir(), "", "--producers", "heartbeat", "--heartbeat", "1ms", "--heartbeat-limit", fmt.Sprint(events))
	f.waitHealthzProblem(t, hub, "the store is full", 120*time.Second)
	metrics := httpGet(t, f.httpURL()+"/metrics")
	if !strings.Contains(metrics, `pinkie_store_errors_total{kind="full"}`) || strings.Contains(metrics, `pinkie_store_errors_total{kind="full"} 0`) {
		t.Errorf("/metrics does not count the refused forwards:\n%s", grepLines(metrics, "pinkie_store_errors"))
	}
	took := hub.stopTimed()
	if took > 15*time.Second {
		t.Errorf("SIGTERM with a full store took %s, want at most 15s", took)
	}
	if !strings.Contains(hub.out.String(), "hub stopped") {
		t.Errorf("the hub did not stop cleanly:\n%s", hub.out.String())
	}
	t.Logf("SIGTERM with a full store: the hub stopped in %s", took.Round(time.Millisecond))
	f.startHub("--max-store", "200000000")
	agent.waitFor("producer finished", 180*time.Second)
	c := f.client()
	if got := settle(t, c.JS, events, 120*time.Second); got != events {
		t.Fatalf("HOSTS holds %d heartbeats, want %d", got, events)
	}
	heartbeatsByInstance(t, readStream(t, c.JS, streams.HostsStream, "pinkie.host.*.heartbeat"))
}

// TestMetricsNameNoHostsBeyondLoopback runs a hub and an agent in their
// own network namespace, where the loopback interface also carries
// 192.0.2.1, an address outside 127.0.0.0/8: curl to 192.0.2.1 comes from
// 192.0.2.1, a client beyond loopback as far as the hub can tell. Such a
// client gets /metrics summed over hosts and /healthz without host names,
// unless it presents the bearer token of --metrics-token-file; a client on
// 127.0.0.1 sees everything.
func TestMetricsNameNoHostsBeyondLoopback(t *testing.T) {
	curl := netnsCurl(t)
	f := newFleet(t, "goliath")
	token := "0123456789abcdef0123456789abcdef"
	tokenFile := filepath.Join(t.TempDir(), "metrics-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, inNetns := startHubInNetns(t, f, "--metrics-token-file", tokenFile)
	agent := startCommand(t, "agent-goliath", inNetns(pinkieBin, "agent", "--name", "goliath", "--hub", "nats-leaf://127.0.0.1:7422",
		"--data", t.TempDir(), "--nkey", streams.HostSeedFile(f.auth, "goliath"), "--producers", "heartbeat", "--heartbeat", "20ms", "--heartbeat-limit", "5"))
	agent.waitFor("producer finished", 30*time.Second)
	get := func(url string, header ...string) string {
		t.Helper()
		args := []string{"-sS", "--max-time", "10"}
		for _, h := range header {
			args = append(args, "-H", h)
		}
		out, err := inNetns(curl, append(args, url)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v: %s", url, err, out)
		}
		return string(out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(get("http://127.0.0.1:8080/metrics"), `pinkie_events_ingested_total{host="goliath",kind="heartbeat"} 5`) {
		if time.Now().After(deadline) {
			t.Fatalf("the hub did not count 5 heartbeats:\n%s", grepLines(get("http://127.0.0.1:8080/metrics"), "pinkie_"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	tests := []struct {
		name, base string
		header     []string
		detail     bool
	}{
		{"loopback", "http://127.0.0.1:8080", nil, true},
		{"beyond loopback, no token", "http://192.0.2.1:8080", nil, false},
		{"beyond loopback, wrong token", "http://192.0.2.1:8080", []string{"Authorization: Bearer " + strings.Repeat("x", len(token))}, false},
		{"beyond loopback, token", "http://192.0.2.1:8080", []string{"Authorization: Bearer " + token}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			metrics, health := get(tc.base+"/metrics", tc.header...), get(tc.base+"/healthz", tc.header...)
			var hl streams.Health
			if err := json.Unmarshal([]byte(health), &hl); err != nil {
				t.Fatalf("/healthz: %v: %s", err, health)
			}
			if !hl.OK || !hl.JetStream {
				t.Errorf("/healthz = %s, want ok", health)
			}
			if tc.detail {
				if !strings.Contains(metrics, `pinkie_events_ingested_total{host="goliath",kind="heartbeat"} 5`) ||
					!strings.Contains(metrics, `pinkie_agent_connected{host="goliath"} 1`) {
					t.Errorf("/metrics lacks the per-host series:\n%s", grepLines(metrics, "pinkie_"))
				}
				if fmt.Sprint(hl.Hosts, hl.Connected) != "[goliath] [goliath]" {
					t.Errorf("/healthz hosts %v connected %v, want goliath in both: %s", hl.Hosts, hl.Connected, health)
				}
				return
			}
			if strings.Contains(metrics, "goliath") || strings.Contains(health, "goliath") {
				t.Errorf("a client beyond loopback sees a host name:\n%s\n%s", grepLines(metrics, "goliath"), health)
			}
			for _, want := range []string{`pinkie_events_ingested_total{kind="heartbeat"} 5`, "pinkie_agent_connected 1", "pinkie_jetstream_enabled 1", "pinkie_ingest_lag_messages 0"} {
				if !strings.Contains(metrics, want) {
					t.Errorf("/metrics lacks the aggregate %q:\n%s", want, grepLines(metrics, "pinkie_"))
				}
			}
		})
	}
}

// netnsCurl skips unless this machine lets the test make a network
// namespace (root, unshare) and has curl, which it returns.
func netnsCurl(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a network namespace with a second address needs root")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("needs curl")
	}
	if out, err := exec.Command("unshare", "-n", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace here: %v: %s", err, out)
	}
	return curl
}

// startHubInNetns starts f's hub in a new network namespace whose
// loopback also carries 192.0.2.1, an address beyond 127.0.0.0/8, with
// HTTP on 0.0.0.0:8080 (the namespace is new and empty: fixed ports are
// free in it), and returns a maker of commands run in that namespace.
func startHubInNetns(t *testing.T, f *fleet, extra ...string) (*proc, func(name string, args ...string) *exec.Cmd) {
	t.Helper()
	netns := `ip link set lo up && ip addr add 192.0.2.1/32 dev lo && exec "$@"`
	hub := startCommand(t, "hub", exec.Command("unshare", append([]string{"-n", "sh", "-c", netns, "sh", pinkieBin, "hub",
		"--data", f.hubData, "--auth", f.auth, "--nats", "127.0.0.1:4222", "--leaf", "127.0.0.1:7422", "--http", "0.0.0.0:8080"}, extra...)...))
	hub.waitFor("hub started", 30*time.Second)
	return hub, func(name string, args ...string) *exec.Cmd {
		return exec.Command("nsenter", append([]string{fmt.Sprintf("--net=/proc/%d/ns/net", hub.cmd.Process.Pid), name}, args...)...)
	}
}

// TestHubBadMetricsToken: a token file (--metrics-token-file,
// --fleet-metrics-token-file) that cannot serve is a usage error naming
// the flag, before anything starts.
func TestHubBadMetricsToken(t *testing.T) {
	short := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(short, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--metrics-token-file", "--fleet-metrics-token-file"} {
		for _, tc := range []struct{ name, file, want string }{
			{"too short", short, "the token is 6 bytes long, want at least 16"},
			{"missing", filepath.Join(t.TempDir(), "nope"), "no such file"},
		} {
			t.Run(flag+" "+tc.name, func(t *testing.T) {
				out, code := runPinkie(t, "hub", "--data", t.TempDir(), "--nats", "127.0.0.1:0", "--leaf", "127.0.0.1:0", "--http", "127.0.0.1:0",
					flag, tc.file)
				if code != 2 || !strings.Contains(out, flag) || !strings.Contains(out, tc.want) {
					t.Errorf("exit %d, output:\n%s\nwant exit 2 naming %s and %q", code, out, flag, tc.want)
				}
			})
		}
	}
}

// fillWithDeployRequests publishes deploy requests (one per made-up host,
// so no per-subject limit rotates them out) until the hub refuses one for
// want of room; bounded at 100,000.
func fillWithDeployRequests(t *testing.T, f *fleet) {
	t.Helper()
	c := f.client()
	k, _ := events.Lookup("deploy.requested")
	pad := strings.Repeat("x", 900)
	for i := 0; i < 100000; i++ {
		host := fmt.Sprintf("filler%d", i)
		e, err := events.New(k, "tester", "cli", time.Now(), events.DeployRequested{Host: host, Flake: "path:/" + pad})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.Publish(ctx, "pinkie.deploy."+host+".requested", e)
		cancel()
		if err != nil {
			if strings.Contains(err.Error(), "insufficient") || strings.Contains(err.Error(), "resources") {
				t.Logf("store full after %d deploy requests", i)
				return
			}
			t.Fatalf("deploy request %d: %v", i, err)
		}
	}
	t.Fatal("100,000 deploy requests did not fill the store")
}
