package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/pinkiefleet/pinkie/streams"
)

// promtoolBin finds the real promtool, or skips.
func promtoolBin(t *testing.T) string {
	t.Helper()
	return goInstalled(t, "promtool", "github.com/prometheus/prometheus/cmd/promtool@v0.316.0")
}

// promtoolAllowed are the problems promtool reports for node_exporter's
// own names, which /metrics/fleet keeps so that node_exporter dashboards
// work: the /proc/meminfo fields are camelCase (MemAvailable) there too.
var promtoolAllowed = map[string]bool{
	"node_memory_MemAvailable_bytes metric names should be written in 'snake_case' not 'camelCase'": true,
	"node_memory_MemTotal_bytes metric names should be written in 'snake_case' not 'camelCase'":     true,
}

// promtoolCheck runs `promtool check metrics` on text and fails on every
// problem it reports (but promtoolAllowed) and on any other failure.
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	cmd := exec.Command(promtoolBin(t), "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line != "" && !promtoolAllowed[line] {
			problems = append(problems, line)
		}
	}
	if len(problems) > 0 {
		t.Errorf("promtool check metrics reports problems:\n%s", strings.Join(problems, "\n"))
	}
	var ee *exec.ExitError
	if err != nil && !(errors_As(err, &ee) && ee.ExitCode() == 3 && len(problems) == 0 && stderr.Len() > 0) {
		// Exit 3 is lint problems only, all of them allowed above.
		t.Errorf("promtool check metrics: %v\n%s", err, stderr.String())
	}
}

// parseExposition parses the text format into families by name.
func parseExposition(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	return mfs
}

// sample returns the value of name's series whose labels include want.
func sample(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			ok = ok && labels[k] == v
		}
		if !ok {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func fetchFleetMetrics(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFleetMetricsFromRealAgent: a real agent on the fixture host (the
// machine's own "/" through statfs, a recorded smartctl --json of a
// failing drive, a btrfs sysfs tree, mdstat, zpool status, guests) sends
// its events to a real hub; /metrics/fleet shows them under node_exporter's
// names with the agent's values, and the real promtool finds nothing wrong.
func TestFleetMetricsFromRealAgent(t *testing.T) {
	promtoolBin(t)
	root, config := fixtureHost(t)
	f := newFleet(t, "goliath")
	f.startHub()
	f.startAgent("goliath", t.TempDir(), "", "--root", root, "--replay-commands", filepath.Join(root, "_commands"), "--config", config)

	// What the fixtures and the kernel say. The SMART drive is named as
	// the agent names it: device and smartctl type.
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		t.Fatal(err)
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	wantSize := float64(st.Blocks * bs)
	var smart struct {
		Temperature struct{ Current int } `json:"temperature"`
		Attrs       struct {
			Table []struct {
				ID   int                    `json:"id"`
				Name string                 `json:"name"`
				Raw  struct{ Value uint64 } `json:"raw"`
			} `json:"table"`
		} `json:"ata_smart_attributes"`
	}
	b, err := os.ReadFile(sharedFixture(t, "smart/smart-fail2.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &smart); err != nil {
		t.Fatal(err)
	}
	var realloc float64 = -1
	for _, a := range smart.Attrs.Table {
		if a.ID == 5 {
			realloc = float64(a.Raw.Value)
		}
	}
	if realloc < 0 {
		t.Fatal("the SMART fixture has no attribute 5")
	}
	const fsid = "1b6e7c1a-3f0e-4c35-9d3a-5f2e8d9b0a11"
	var wantCorruption float64
	devs, _ := filepath.Glob(filepath.Join(root, "sys", "fs", "btrfs", fsid, "devinfo", "*", "error_stats"))
	for _, p := range devs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var n float64
		for _, line := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(line, "corruption_errs %g", &n); err == nil {
				wantCorruption += n
			}
		}
	}
	if len(devs) == 0 {
		t.Fatalf("no btrfs devices of %s in the fixture root", fsid)
	}

	url := f.httpURL() + "/metrics/fleet"
	var text string
	var mfs map[string]*dto.MetricFamily
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, body := fetchFleetMetrics(t, url)
		if code == http.StatusOK {
			text, mfs = body, parseExposition(t, body)
			_, fsOK := sample(mfs, "node_filesystem_size_bytes", map[string]string{"host": "goliath", "mountpoint": "/"})
			_, smartOK := sample(mfs, "pinkie_smart_attribute_raw", map[string]string{"host": "goliath", "device": "/dev/sdc:sat", "id": "5"})
			_, hbOK := sample(mfs, "node_load1", map[string]string{"host": "goliath"})
			_, btrfsOK := sample(mfs, "node_btrfs_device_errors_total", map[string]string{"host": "goliath", "uuid": fsid})
			_, guestOK := sample(mfs, "pinkie_guest_up", map[string]string{"host": "goliath"})
			_, mdOK := sample(mfs, "node_md_disks_required", map[string]string{"host": "goliath"})
			_, zfsOK := sample(mfs, "node_zfs_zpool_state", map[string]string{"host": "goliath"})
			if fsOK && smartOK && hbOK && btrfsOK && guestOK && mdOK && zfsOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics/fleet lacks the agent's data after 90s (status %d):\n%s", code, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
	promtoolCheck(t, text)

	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"filesystem size is statfs's", "node_filesystem_size_bytes", map[string]string{"host": "goliath", "mountpoint": "/", "fstype": "ext4", "device": "/dev/vda"}, wantSize},
		{"SMART temperature from smartctl --json", "pinkie_smart_temperature_celsius", map[string]string{"host": "goliath", "device": "/dev/sdc:sat"}, float64(smart.Temperature.Current)},
		{"SMART reallocated sectors raw", "pinkie_smart_attribute_raw", map[string]string{"host": "goliath", "device": "/dev/sdc:sat", "id": "5", "name": "Reallocated_Sector_Ct"}, realloc},
		{"SMART verdict failing", "pinkie_storage_verdict", map[string]string{"host": "goliath", "kind": "smart", "object": "/dev/sdc:sat", "verdict": "failing"}, 1},
		{"host up", "pinkie_host_up", map[string]string{"host": "goliath"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := sample(mfs, tc.metric, tc.labels)
			if !ok || got != tc.want {
				t.Errorf("%s%v = %v (present %v), want %v\n%s", tc.metric, tc.labels, got, ok, tc.want, grepLines(text, tc.metric))
			}
		})
	}
	var corruption float64
	for _, m := range mfs["node_btrfs_device_errors_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["uuid"] == fsid && labels["type"] == "corruption" {
			corruption += m.GetCounter().GetValue()
		}
	}
	if corruption != wantCorruption || wantCorruption == 0 {
		t.Errorf("btrfs corruption errors of %s = %v, the fixture's error_stats say %v", fsid, corruption, wantCorruption)
	}
	if mem, ok := sample(mfs, "node_memory_MemTotal_bytes", map[string]string{"host": "goliath"}); !ok || mem <= 0 {
		t.Errorf("node_memory_MemTotal_bytes = %v (present %v)", mem, ok)
	}
}

// TestFleetMetricsBeyondLoopback runs a hub and an agent in their own
// network namespace whose loopback also carries 192.0.2.1 (as
// TestMetricsNameNoHostsBeyondLoopback does): curl to 192.0.2.1 is a client
// beyond loopback. It gets /metrics/fleet only with the bearer token of
// --fleet-metrics-token-file; without it, or with /metrics' token, 401.
func TestFleetMetricsBeyondLoopback(t *testing.T) {
	curl := netnsCurl(t)
	f := newFleet(t, "goliath")
	dir := t.TempDir()
	fleetTok, metricsTok := "fleet0123456789abcdef0123456789", "metrics0123456789abcdef012345678"
	writeFile(t, filepath.Join(dir, "fleet-token"), fleetTok+"\n")
	writeFile(t, filepath.Join(dir, "metrics-token"), metricsTok+"\n")
	_, inNetns := startHubInNetns(t, f, "--metrics-token-file", filepath.Join(dir, "metrics-token"),
		"--fleet-metrics-token-file", filepath.Join(dir, "fleet-token"))
	agent := startCommand(t, "agent-goliath", inNetns(pinkieBin, "agent", "--name", "goliath", "--hub", "nats-leaf://127.0.0.1:7422",
		"--data", t.TempDir(), "--nkey", streams.HostSeedFile(f.auth, "goliath"), "--producers", "heartbeat", "--heartbeat", "20ms", "--heartbeat-limit", "3"))
	agent.waitFor("producer finished", 30*time.Second)
	get := func(url string, header ...string) (string, string) {
		t.Helper()
		args := []string{"-sS", "--max-time", "10", "-w", "\n%{http_code}"}
		for _, h := range header {
			args = append(args, "-H", h)
		}
		out, err := inNetns(curl, append(args, url)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v: %s", url, err, out)
		}
		i := strings.LastIndex(string(out), "\n")
		return string(out[i+1:]), string(out[:max(i, 0)])
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := get("http://127.0.0.1:8080/metrics/fleet")
		if strings.Contains(body, `pinkie_host_up{host="goliath"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics/fleet on loopback does not show goliath up:\n%s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	tests := []struct {
		name, url string
		header    []string
		code      string
		want      string
	}{
		{"loopback", "http://127.0.0.1:8080/metrics/fleet", nil, "200", `node_load1{host="goliath"}`},
		{"beyond loopback, no token", "http://192.0.2.1:8080/metrics/fleet", nil, "401", "--fleet-metrics-token-file"},
		{"beyond loopback, /metrics' token", "http://192.0.2.1:8080/metrics/fleet", []string{"Authorization: Bearer " + metricsTok}, "401", "not it"},
		{"beyond loopback, wrong token", "http://192.0.2.1:8080/metrics/fleet", []string{"Authorization: Bearer " + strings.Repeat("x", len(fleetTok))}, "401", "not it"},
		{"beyond loopback, fleet token", "http://192.0.2.1:8080/metrics/fleet", []string{"Authorization: Bearer " + fleetTok}, "200", `node_load1{host="goliath"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(tc.url, tc.header...)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Errorf("status %s, body:\n%s\nwant %s containing %q", code, body, tc.code, tc.want)
			}
			if tc.code == "401" && strings.Contains(body, "goliath") {
				t.Errorf("a refused client sees a host name: %s", body)
			}
		})
	}
}
