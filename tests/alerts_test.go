package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// alertFleet is a fleet whose hub notifies an ntfy stand-in, a Matrix
// stand-in and a real mailpit.
type alertFleet struct {
	*fleet
	ntfy   *ntfyServer
	matrix *matrixServer
	mail   *mailpit
	config string
}

func newAlertFleet(t *testing.T, notify map[string]any, alerts map[string]any, hosts ...string) *alertFleet {
	t.Helper()
	af := &alertFleet{fleet: newFleet(t, hosts...), ntfy: newNtfyServer(t), matrix: newMatrixServer(t)}
	channels := map[string]any{
		"phone": map[string]any{"type": "ntfy", "url": af.ntfy.srv.URL, "topic": af.ntfy.topic, "token_file": secretFile(t, af.ntfy.token)},
		"ops": map[string]any{"type": "matrix", "homeserver": af.matrix.srv.URL, "room_id": af.matrix.room,
			"access_token_file": secretFile(t, af.matrix.token)},
	}
	if notify["mail"] != false {
		af.mail = startMailpit(t)
		channels["mail"] = map[string]any{"type": "email", "smtp_host": "127.0.0.1", "smtp_port": af.mail.smtpPort, "tls": "starttls",
			"ca_file": af.mail.caFile, "username": "pinkie", "password_file": secretFile(t, "hunter2"),
			"from": "pinkie@fleet.test", "to": []string{"ops@fleet.test"}}
	}
	n := map[string]any{"group_wait": "0s", "dashboard_url": "https://hub.fleet.test", "channels": channels}
	for k, v := range notify {
		if k != "mail" {
			n[k] = v
		}
	}
	cfg := map[string]any{"notify": n}
	if alerts != nil {
		cfg["alerts"] = alerts
	}
	af.config = writeHubConfig(t, cfg)
	return af
}

func fsEvent(mount string, usedPct float64) events.Filesystem {
	size := uint64(100 << 30)
	used := uint64(float64(size) * usedPct / 100)
	return events.Filesystem{MountPoint: mount, Device: "/dev/vda1", FSType: "ext4", SizeBytes: size, UsedBytes: used,
		AvailableBytes: size - used, UsedPercent: usedPct, Verdict: "ok"}
}

// TestAlertsEndToEnd: producer events published on an agent become alerts
// on pinkie.alert.> (read with the real nats CLI), are delivered to ntfy,
// Matrix and email (a real mailpit, over STARTTLS), show in `pinkie alerts`
// and `pinkie hosts`; a silence keeps an alert from being notified; a
// restarted hub re-sends nothing.
func TestAlertsEndToEnd(t *testing.T) {
	af := newAlertFleet(t, nil, nil, "goliath")
	hub := af.startHub("--config", af.config)
	sub := natsSub(t, af.fleet, "pinkie.alert.>", 2)
	ag := af.inprocAgent("goliath")
	now := time.Now().UTC()
	publishOn(t, ag, "heartbeat", "", now, events.Heartbeat{Counter: 1, Instance: "i1", UptimeSeconds: 3600})
	publishOn(t, ag, "fs", "/srv", now, fsEvent("/srv", 50))
	publishOn(t, ag, "fs", "/srv", now.Add(time.Second), fsEvent("/srv", 97))
	publishOn(t, ag, "smart", "/dev/sda", now, events.SMART{Device: "/dev/sda", Protocol: "ata", Source: "smartctl", Model: "WDC WD40", Verdict: "ok"})

	// The nats CLI sees a readable CloudEvent on pinkie.alert.goliath.fs.usage.
	ntfyMsg := af.ntfy.wait("goliath: /srv is 97% full", 20*time.Second)
	publishOn(t, ag, "fs", "/srv", now.Add(2*time.Second), fsEvent("/srv", 40))
	out := sub(20 * time.Second)
	for _, want := range []string{
		"Received on \"pinkie.alert.goliath.fs.usage\"",
		`"type":"pinkie.alert.firing.v1"`, `"type":"pinkie.alert.resolved.v1"`,
		`"summary":"goliath: /srv is 97% full (3.0 GiB free of 100.0 GiB)"`, `"severity":"critical"`, `"subject":"/srv"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nats sub output lacks %s:\n%s", want, out)
		}
	}
	// ntfy: the documented JSON publish, priority and tags from severity,
	// a click-through link.
	if ntfyMsg.Title != "[FIRING CRITICAL] goliath fs.usage /srv" || ntfyMsg.Priority != 5 ||
		strings.Join(ntfyMsg.Tags, ",") != "rotating_light,goliath,fs.usage" || !strings.HasPrefix(ntfyMsg.Click, "https://hub.fleet.test/alerts?host=goliath&fingerprint=") {
		t.Errorf("ntfy message %+v", ntfyMsg)
	}
	resolved := af.ntfy.wait("[RESOLVED] goliath fs.usage /srv", 20*time.Second)
	if resolved.Priority != 2 || resolved.Tags[0] != "white_check_mark" {
		t.Errorf("resolved ntfy message %+v", resolved)
	}
	// Matrix: an m.notice with plain and HTML bodies.
	mx := af.matrix.wait("goliath: /srv is 97% full", 20*time.Second)
	if !strings.Contains(mx.HTML, "<b>FIRING CRITICAL</b> goliath: /srv is 97% full") || !strings.HasPrefix(mx.TxnID, "pinkie-") {
		t.Errorf("matrix message %+v", mx)
	}
	af.matrix.wait("RESOLVED: goliath: /srv is 40% full", 20*time.Second)
	// Email, through mailpit over STARTTLS with a login.
	mail := af.mail.wait("[FIRING CRITICAL] goliath fs.usage /srv", 20*time.Second)
	if !strings.Contains(mail.Text, "goliath: /srv is 97% full") || !strings.Contains(mail.HTML, "97% full") || !strings.HasSuffix(mail.MessageID, "@pinkie") {
		t.Errorf("mail %+v", mail)
	}
	af.mail.wait("[RESOLVED] goliath fs.usage /srv", 20*time.Second)

	// Every delivery is audited on pinkie.notify.<channel>.<outcome>.
	c := af.client()
	for _, ch := range []string{"phone", "ops", "mail"} {
		waitCount(t, c.JS, streams.AlertLogStream, "pinkie.notify."+ch+".delivered", 2, 20*time.Second)
	}

	// A silence: the smart alert fires silenced, shows in pinkie alerts
	// marked so, and reaches no channel.
	op := []string{"--server", af.natsURL(), "--nkey", af.operator()}
	rd := []string{"--server", af.natsURL(), "--nkey", streams.ReaderSeedFile(af.auth)}
	outS, code := runPinkie(t, append([]string{"silence", "add", "host=goliath", "rule=smart.*", "--for", "2h", "--comment", "replacing the disk"}, op...)...)
	if code != 0 || !strings.Contains(outS, "added: host=goliath rule=smart.* until") {
		t.Fatalf("silence add: exit %d\n%s", code, outS)
	}
	if out, code := runPinkie(t, append([]string{"silence", "add", "host=goliath", "--for", "1h"}, rd...)...); code != 2 || !strings.Contains(out, "not permitted") {
		t.Errorf("silence add with a reader key: exit %d, want 2 naming the permission:\n%s", code, out)
	}
	outL, code := runPinkie(t, append([]string{"silence", "ls", "--json"}, rd...)...)
	var sils []struct {
		ID       string            `json:"id"`
		Matchers map[string]string `json:"matchers"`
		Comment  string            `json:"comment"`
		Active   bool              `json:"active"`
	}
	if code != 0 || json.Unmarshal([]byte(outL), &sils) != nil || len(sils) != 1 || sils[0].Comment != "replacing the disk" || !sils[0].Active {
		t.Fatalf("silence ls --json with a reader key: exit %d\n%s", code, outL)
	}
	publishOn(t, ag, "smart", "/dev/sda", now.Add(3*time.Second), events.SMART{Device: "/dev/sda", Protocol: "ata", Source: "smartctl", Model: "WDC WD40", Verdict: "failing", Reasons: []string{"SMART overall-health self-assessment failed"}})
	// An unsilenced alert after it: once that is delivered, the silenced
	// one (earlier in ALERTS) would have been too.
	publishOn(t, ag, "guest", "web", now.Add(4*time.Second), events.Guest{Name: "web", Type: "microvm", Unit: "microvm@web.service", ActiveState: "failed"})
	af.ntfy.wait("goliath: microvm web is down", 20*time.Second)
	for _, m := range af.ntfy.got() {
		if strings.Contains(m.Message, "/dev/sda") {
			t.Errorf("a silenced alert reached ntfy: %+v", m)
		}
	}
	outA, code := runPinkie(t, append([]string{"alerts"}, rd...)...)
	if code != 1 || !strings.Contains(outA, "smart.verdict") || !strings.Contains(outA, "silenced ("+sils[0].ID+")") || !strings.Contains(outA, "guest.down") {
		t.Errorf("pinkie alerts: exit %d (want 1: an unsilenced warning fires)\n%s", code, outA)
	}
	t.Logf("pinkie alerts:\n%s", outA)
	outJ, code := runPinkie(t, append([]string{"alerts", "--json"}, rd...)...)
	var active []struct {
		events.Alert
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal([]byte(outJ), &active); err != nil || code != 1 || len(active) != 2 {
		t.Fatalf("alerts --json: exit %d, %v\n%s", code, err, outJ)
	}
	if active[0].Rule != "smart.verdict" || !active[0].Silenced || active[1].Rule != "guest.down" || active[1].Silenced {
		t.Errorf("alerts --json: %+v", active)
	}
	// Removing the silence notifies the still-firing alert.
	if out, code := runPinkie(t, append([]string{"silence", "rm", sils[0].ID}, op...)...); code != 0 {
		t.Fatalf("silence rm: exit %d\n%s", code, out)
	}
	af.ntfy.wait("goliath: drive /dev/sda (WDC WD40) is failing", 20*time.Second)
	if out, code := runPinkie(t, append([]string{"silence", "rm", sils[0].ID}, op...)...); code != 1 || !strings.Contains(out, "no silence") {
		t.Errorf("silence rm twice: exit %d\n%s", code, out)
	}

	// pinkie hosts: the inventory and the drives.
	outH, code := runPinkie(t, append([]string{"hosts"}, rd...)...)
	if code != 0 || !strings.Contains(outH, "goliath") || !strings.Contains(outH, "online") {
		t.Errorf("pinkie hosts: exit %d\n%s", code, outH)
	}
	t.Logf("pinkie hosts:\n%s", outH)
	outHD, code := runPinkie(t, append([]string{"hosts", "goliath"}, rd...)...)
	if code != 0 || !strings.Contains(outHD, "goliath (online)") || !strings.Contains(outHD, "SMART overall-health self-assessment failed") {
		t.Errorf("pinkie hosts goliath: exit %d\n%s", code, outHD)
	}
	outHJ, code := runPinkie(t, append([]string{"hosts", "goliath", "--json"}, rd...)...)
	var hv struct {
		Host      string `json:"host"`
		Online    bool   `json:"online"`
		Heartbeat struct {
			Instance string `json:"instance"`
		} `json:"heartbeat"`
		Drives []struct {
			Kind, Object, Verdict string
		} `json:"drives"`
	}
	if err := json.Unmarshal([]byte(outHJ), &hv); err != nil || code != 0 || !hv.Online || hv.Heartbeat.Instance != "i1" || len(hv.Drives) != 2 ||
		hv.Drives[0].Kind != "fs" || hv.Drives[1].Verdict != "failing" {
		t.Errorf("hosts goliath --json: exit %d %v\n%s", code, err, outHJ)
	}
	if out, code := runPinkie(t, append([]string{"hosts", "nope"}, rd...)...); code != 1 || !strings.Contains(out, `host "nope" is not in the inventory`) {
		t.Errorf("hosts nope: exit %d\n%s", code, out)
	}

	// A restarted hub re-sends nothing. (Quiet first: the alerter has
	// folded everything, and the notifier delivered the last alert.)
	waitAlerter(t, c, 20*time.Second)
	alertsBefore := countSubjects(t, c.JS, streams.AlertsStream, ">")
	ntfyBefore := len(af.ntfy.got())
	hub.stop(syscall.SIGTERM)
	hub = af.startHub("--config", af.config)
	c = af.client()
	publishOn(t, ag, "guest", "web", time.Now(), events.Guest{Name: "web", Type: "microvm", Unit: "microvm@web.service", ActiveState: "active", Healthy: true})
	af.ntfy.wait("[RESOLVED] goliath guest.down web", 30*time.Second)
	if n := countSubjects(t, c.JS, streams.AlertsStream, ">"); n != alertsBefore+1 {
		t.Errorf("ALERTS went from %d to %d messages across a restart and one resolve, want +1", alertsBefore, n)
	}
	if n := len(af.ntfy.got()); n != ntfyBefore+1 {
		t.Errorf("ntfy got %d messages after the restart, want 1: %+v", n-ntfyBefore, af.ntfy.got()[ntfyBefore:])
	}
	if n := hub.count("level=ERROR"); n > 0 {
		t.Errorf("the hub logged %d errors:\n%s", n, hub.out.String())
	}
}

// TestLoginLineBecomesAlert: an sshd line appended to the file a real
// agent's login producer follows is an alert on pinkie.alert.<host>.login
// naming the user within seconds.
func TestLoginLineBecomesAlert(t *testing.T) {
	af := newAlertFleet(t, map[string]any{"mail": false}, nil, "goliath")
	af.startHub("--config", af.config)
	dir := t.TempDir()
	logFile := dir + "/auth.log"
	if err := os.WriteFile(logFile, []byte("Nov 27 01:00:00 goliath sshd[1]: Server listening on 0.0.0.0 port 22.\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeHubConfig(t, map[string]any{"producers": map[string]any{"login": map[string]any{"file": logFile}}})
	agent := af.startAgent("goliath", t.TempDir(), "", "--config", cfg, "--producers", "login")
	// A new follower starts at the log's end: append only once it is there.
	agent.waitFor("following a log for the first time", 30*time.Second)
	sub := natsSub(t, af.fleet, "pinkie.alert.goliath.*", 1)
	fh, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	fmt.Fprintf(fh, "%s goliath sshd-session[4242]: Accepted publickey for alice from 192.0.2.44 port 51234 ssh2: ED25519 SHA256:Jm0y2b4cQ0c3oS5y7H8rX9lq3d2aTzV7uWn1fK4pLhE\n", time.Now().Format(time.Stamp))
	fh.Close()
	out := sub(15 * time.Second)
	took := time.Since(start)
	for _, want := range []string{`Received on "pinkie.alert.goliath.login"`, `"summary":"goliath: alice logged in via sshd-session (publickey) from 192.0.2.44"`, `"severity":"info"`, `"object":"alice"`} {
		if !strings.Contains(out, want) {
			t.Errorf("nats sub output lacks %s:\n%s", want, out)
		}
	}
	if took > 10*time.Second {
		t.Errorf("the login took %s to become an alert", took)
	}
	t.Logf("sshd line to alert on pinkie.alert.goliath.login: %s", took)
	af.ntfy.wait("alice logged in", 10*time.Second)
}

// projectionSources are the streams and subjects each projection bucket
// folds, to tell when a projection has caught up.
var projectionSources = map[string][][2]string{
	"pinkie-inventory": {{streams.HostsStream, "pinkie.host.>"}, {streams.AlertsStream, "pinkie.alert.*.host.silent"}},
	"pinkie-drives":    {{streams.HostsStream, "pinkie.host.*.fs.>"}, {streams.HostsStream, "pinkie.host.*.smart.>"}, {streams.HostsStream, "pinkie.host.*.zfs.>"}},
	"pinkie-alerts":    {{streams.AlertsStream, "pinkie.alert.>"}, {streams.AlertLogStream, "pinkie.silence.>"}},
	"pinkie-guests":    {{streams.HostsStream, "pinkie.host.*.guest.>"}},
}

// waitProjections waits until every projection's checkpoint covers the
// last message of each of its sources, then returns every bucket's
// records (checkpoint included) as key → JSON.
func waitProjections(t *testing.T, c *streams.Client, within time.Duration) map[string]map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for bucket, srcs := range projectionSources {
		for _, src := range srcs {
			st, err := c.JS.Stream(ctx, src[0])
			if err != nil {
				t.Fatal(err)
			}
			last, err := st.GetLastMsgForSubject(ctx, src[1])
			if err != nil {
				continue // nothing on it
			}
			for {
				kv, err := c.JS.KeyValue(ctx, bucket)
				if err == nil {
					if e, err := kv.Get(ctx, "_checkpoint"); err == nil {
						var cp map[string]uint64
						_ = json.Unmarshal(e.Value(), &cp)
						if cp[src[0]] >= last.Sequence {
							break
						}
					}
				}
				if ctx.Err() != nil {
					t.Fatalf("projection %s did not reach %s seq %d (%s) within %s", bucket, src[0], last.Sequence, src[1], within)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	out := map[string]map[string]string{}
	for bucket := range projectionSources {
		recs, err := streams.ReadBucket(ctx, c.JS, bucket, "")
		if err != nil {
			t.Fatal(err)
		}
		out[bucket] = map[string]string{}
		for k, v := range recs {
			out[bucket][k] = string(v)
		}
	}
	return out
}

// waitAlerter waits until the alerter's checkpoint covers HOSTS and the
// silences.
func waitAlerter(t *testing.T, c *streams.Client, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for _, src := range [][2]string{{streams.HostsStream, "pinkie.host.>"}, {streams.AlertLogStream, "pinkie.silence.>"}} {
		st, err := c.JS.Stream(ctx, src[0])
		if err != nil {
			t.Fatal(err)
		}
		last, err := st.GetLastMsgForSubject(ctx, src[1])
		if err != nil {
			continue
		}
		for {
			if kv, err := c.JS.KeyValue(ctx, streams.AlerterBucket); err == nil {
				if e, err := kv.Get(ctx, "_checkpoint"); err == nil {
					var cp map[string]uint64
					_ = json.Unmarshal(e.Value(), &cp)
					if cp[src[0]] >= last.Sequence {
						break
					}
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("the alerter did not reach %s seq %d within %s", src[0], last.Sequence, within)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestRebuildProjections: `pinkie hub --rebuild-projections` empties the
// projection buckets and replays their streams, ending in the same records
// (a bogus record written meanwhile is gone); a plain restart resumes.
func TestRebuildProjections(t *testing.T) {
	f := newFleet(t, "goliath", "koishi")
	hub := f.startHub()
	op := []string{"--server", f.natsURL(), "--nkey", f.operator()}
	t0 := time.Now().UTC().Add(-time.Hour)
	agents := map[string]*streams.Agent{}
	for i, host := range []string{"goliath", "koishi"} {
		ag := f.inprocAgent(host)
		agents[host] = ag
		for j := 0; j < 5; j++ {
			at := t0.Add(time.Duration(j) * time.Minute)
			publishOn(t, ag, "heartbeat", "", at, events.Heartbeat{Counter: uint64(j + 1), Instance: host + "-1", UptimeSeconds: float64(100 * j)})
			publishOn(t, ag, "fs", "/", at, fsEvent("/", float64(60+i*30+j)))
			publishOn(t, ag, "fs", "/srv", at, fsEvent("/srv", 10))
		}
		publishOn(t, ag, "profile", "", t0, events.Profile{Hostname: host, OS: events.OSInfo{ID: "nixos", PrettyName: "NixOS 25.05"}, Kernel: "6.12.1", Arch: "x86_64",
			CPU: events.CPUInfo{Model: "EPYC", Cores: 4, Threads: 8}, BootTime: t0.Add(-time.Hour)})
		publishOn(t, ag, "smart", "/dev/nvme0", t0, events.SMART{Device: "/dev/nvme0", Protocol: "nvme", Source: "smart.go", Verdict: []string{"ok", "warning"}[i]})
		publishOn(t, ag, "zfs", "tank", t0, events.ZFSPool{Pool: "tank", State: []string{"ONLINE", "DEGRADED"}[i], Verdict: "ok", Vdevs: []events.ZFSVdev{}, Scan: events.ZFSScan{Function: "none"}})
		publishOn(t, ag, "guest", "web", t0, events.Guest{Name: "web", Type: "container", Unit: "container@web.service", ActiveState: "failed"})
		publishOn(t, ag, "guest", "web", t0.Add(time.Minute), events.Guest{Name: "web", Type: "container", Unit: "container@web.service", ActiveState: "active", Healthy: true})
	}
	if out, code := runPinkie(t, append([]string{"silence", "add", "host=koishi", "rule=zfs.*", "--for", "3h", "--comment", "resilvering"}, op...)...); code != 0 {
		t.Fatalf("silence add: %d\n%s", code, out)
	}
	c := f.client()
	// Everything published is in HOSTS, and the alerter has folded it
	// (it publishes its alerts before it writes its checkpoint).
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.>", 2*20, 30*time.Second)
	waitAlerter(t, c, 30*time.Second)
	before := waitProjections(t, c, 30*time.Second)
	for _, key := range []string{"goliath", "koishi"} {
		if _, ok := before["pinkie-inventory"][key]; !ok {
			t.Fatalf("inventory lacks %s: %v", key, before["pinkie-inventory"])
		}
	}
	for _, key := range []string{"goliath.web", "koishi.web"} {
		if !strings.Contains(before["pinkie-guests"][key], `"status":"running"`) {
			t.Fatalf("guests record %s: %s", key, before["pinkie-guests"][key])
		}
	}
	if len(before["pinkie-drives"]) != 1+2*4 || len(before["pinkie-alerts"]) < 4 {
		t.Fatalf("projections before the rebuild: drives %d records, alerts %d:\n%v", len(before["pinkie-drives"]), len(before["pinkie-alerts"]), before["pinkie-alerts"])
	}
	// A record that no stream explains: the rebuild must drop it. No
	// client key may write a projection, so it goes into the stopped hub's
	// store directly.
	hub.stop(syscall.SIGTERM)
	f.putInStore(t, "pinkie-inventory", "bogus", `{"host":"bogus"}`)
	hub = f.startHub("--rebuild-projections")
	hub.waitFor("rebuilding projection", 10*time.Second)
	c = f.client()
	after := waitProjections(t, c, 30*time.Second)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("projections after --rebuild-projections differ (-before +after):\n%s", diff)
	}
	// A plain restart resumes from the checkpoint and keeps folding.
	hub.stop(syscall.SIGTERM)
	f.startHub()
	c = f.client()
	nFS := countSubjects(t, c.JS, streams.HostsStream, "pinkie.host.goliath.fs.>")
	publishOn(t, agents["goliath"], "fs", "/", time.Now(), fsEvent("/", 20))
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.fs.>", nFS+1, 30*time.Second)
	resumed := waitProjections(t, c, 30*time.Second)
	var d struct {
		State string `json:"state"`
	}
	_ = json.Unmarshal([]byte(resumed["pinkie-drives"]["goliath.fs._2F"]), &d)
	if d.State != "ext4, 20% used" {
		t.Errorf("after a plain restart, goliath / reads %q, want the new event", d.State)
	}
}

func loginEvent(user string, at time.Time) events.Login {
	return events.Login{User: user, Service: "sshd", Method: "publickey", RemoteIP: "192.0.2.7", LoggedAt: at, From: "/var/log/auth.log"}
}

// countContaining counts the strings that contain s.
func countContaining(list []string, s string) int {
	n := 0
	for _, x := range list {
		if strings.Contains(x, s) {
			n++
		}
	}
	return n
}

// TestNotifyChannelDownThenBack: while ntfy answers 503 and the Matrix
// homeserver 502, alerts pile up and are retried with backoff; once both
// are back, every alert is delivered exactly once to each.
func TestNotifyChannelDownThenBack(t *testing.T) {
	af := newAlertFleet(t, map[string]any{"mail": false}, nil, "goliath")
	af.ntfy.setDown(true)
	af.matrix.mu.Lock()
	af.matrix.down = true
	af.matrix.mu.Unlock()
	af.startHub("--config", af.config)
	ag := af.inprocAgent("goliath")
	users := []string{"alice", "bob", "carol", "dave", "erin"}
	for i, u := range users {
		publishOn(t, ag, "login", "", time.Now().Add(time.Duration(i)*time.Millisecond), loginEvent(u, time.Now()))
	}
	c := af.client()
	// Both channels were tried and refused (audited as retrying).
	waitCount(t, c.JS, streams.AlertLogStream, "pinkie.notify.phone.retrying", 5, 30*time.Second)
	waitCount(t, c.JS, streams.AlertLogStream, "pinkie.notify.ops.retrying", 5, 30*time.Second)
	af.ntfy.setDown(false)
	af.matrix.mu.Lock()
	af.matrix.down = false
	af.matrix.mu.Unlock()
	for _, u := range users {
		af.ntfy.wait(u+" logged in", 30*time.Second)
		af.matrix.wait(u+" logged in", 30*time.Second)
	}
	waitCount(t, c.JS, streams.AlertLogStream, "pinkie.notify.phone.delivered", 5, 30*time.Second)
	waitCount(t, c.JS, streams.AlertLogStream, "pinkie.notify.ops.delivered", 5, 30*time.Second)
	var ntfyBodies, matrixBodies []string
	for _, m := range af.ntfy.got() {
		ntfyBodies = append(ntfyBodies, m.Message)
	}
	for _, e := range af.matrix.events() {
		matrixBodies = append(matrixBodies, e.Body)
	}
	for _, u := range users {
		if n := countContaining(ntfyBodies, u+" logged in"); n != 1 {
			t.Errorf("ntfy got %s's login %d times, want once", u, n)
		}
		if n := countContaining(matrixBodies, u+" logged in"); n != 1 {
			t.Errorf("matrix room got %s's login %d times, want once", u, n)
		}
	}
	if af.ntfy.refused < 5 {
		t.Errorf("ntfy refused %d requests while down, want at least one per alert", af.ntfy.refused)
	}
	if n := countSubjects(t, c.JS, streams.AlertLogStream, "pinkie.notify.*.failed"); n != 0 {
		t.Errorf("%d deliveries given up", n)
	}
}

// TestHubKill9MidDelivery: the hub is killed with SIGKILL while the
// Matrix homeserver holds a send request unanswered and more alerts wait;
// after a restart every alert is delivered, and the Matrix retry reuses
// the txnId, so the room holds each message once.
func TestHubKill9MidDelivery(t *testing.T) {
	af := newAlertFleet(t, map[string]any{"mail": false}, nil, "goliath")
	hang := make(chan string, 1)
	af.matrix.mu.Lock()
	af.matrix.hang = hang
	af.matrix.mu.Unlock()
	hub := af.startHub("--config", af.config)
	ag := af.inprocAgent("goliath")
	users := []string{"alice", "bob", "carol"}
	for _, u := range users {
		publishOn(t, ag, "login", "", time.Now(), loginEvent(u, time.Now()))
	}
	var txn string
	select {
	case txn = <-hang:
	case <-time.After(30 * time.Second):
		t.Fatal("no Matrix request arrived")
	}
	hub.kill() // SIGKILL mid-delivery
	// More alerts while the hub is down wait in the agent's OUTBOX.
	publishOn(t, ag, "login", "", time.Now(), loginEvent("dave", time.Now()))
	af.startHub("--config", af.config)
	for _, u := range append(users, "dave") {
		af.matrix.wait(u+" logged in", 30*time.Second)
		af.ntfy.wait(u+" logged in", 30*time.Second)
	}
	reqs := af.matrix.txnRequests()
	if n := countContaining(reqs, txn); n < 2 {
		t.Errorf("the interrupted txnId %s was requested %d times, want a retry with the same txnId: %v", txn, n, reqs)
	}
	var bodies []string
	seenTxn := map[string]bool{}
	for _, e := range af.matrix.events() {
		bodies = append(bodies, e.Body)
		if seenTxn[e.TxnID] {
			t.Errorf("txnId %s stored twice", e.TxnID)
		}
		seenTxn[e.TxnID] = true
	}
	for _, u := range append(users, "dave") {
		if n := countContaining(bodies, u+" logged in"); n != 1 {
			t.Errorf("matrix room holds %s's login %d times, want once", u, n)
		}
	}
}

// TestAlertCLIBadInput: bad input exits 2 naming what was wrong, and a bad
// alerts or notify section stops the hub with exit 2 naming the key.
func TestAlertCLIBadInput(t *testing.T) {
	af := newAlertFleet(t, map[string]any{"mail": false}, nil, "goliath")
	af.startHub("--config", af.config)
	op := []string{"--server", af.natsURL(), "--nkey", af.operator()}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"silence without matchers", []string{"silence", "add", "--for", "1h"}, "give at least one matcher"},
		{"silence without duration", []string{"silence", "add", "host=goliath"}, "--for DURATION or --until TIME"},
		{"silence bad duration", []string{"silence", "add", "host=goliath", "--for", "soon"}, `--for "soon"`},
		{"silence too long", []string{"silence", "add", "host=goliath", "--for", "100d"}, "at most 90 days"},
		{"silence bad matcher", []string{"silence", "add", "goliath", "--for", "1h"}, `matcher "goliath": want LABEL=PATTERN`},
		{"silence bad label", []string{"silence", "add", "Host=goliath", "--for", "1h"}, `label "Host"`},
		{"silence bad pattern", []string{"silence", "add", "host=[", "--for", "1h"}, "bad pattern"},
		{"silence past until", []string{"silence", "add", "host=goliath", "--until", "2001-01-01T00:00:00Z"}, "not in the future"},
		{"silence no subcommand", []string{"silence"}, "want a subcommand"},
		{"silence rm bad id", []string{"silence", "rm", "a.b"}, `silence ID "a.b"`},
		{"alerts bad severity", []string{"alerts", "--severity", "urgent"}, `--severity "urgent"`},
		{"hosts bad host", []string{"hosts", "a.b"}, `invalid host name "a.b"`},
		{"notify without test", []string{"notify", "phone"}, "want: notify test CHANNEL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runPinkie(t, append(append([]string{}, tt.args...), op...)...)
			if code != 2 || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, want 2 with %q:\n%s", code, tt.want, out)
			}
		})
	}
	if out, code := runPinkie(t, "alerts", "--server", "nats://127.0.0.1:1"); code != 2 || !strings.Contains(out, "cannot connect to the hub") {
		t.Errorf("unreachable hub: exit %d\n%s", code, out)
	}
	// notify test: delivered, and a channel that is not configured.
	out, code := runPinkie(t, append([]string{"notify", "test", "phone"}, op...)...)
	if code != 0 || !strings.Contains(out, "test message delivered to phone (ntfy)") {
		t.Errorf("notify test phone: exit %d\n%s", code, out)
	}
	af.ntfy.wait("test message from the pinkie hub", 5*time.Second)
	af.matrix.mu.Lock()
	af.matrix.down = true
	af.matrix.mu.Unlock()
	if out, code := runPinkie(t, append([]string{"notify", "test", "ops"}, op...)...); code != 1 || !strings.Contains(out, "502") {
		t.Errorf("notify test to a failing channel: exit %d\n%s", code, out)
	}
	if out, code := runPinkie(t, append([]string{"notify", "test", "pager"}, op...)...); code != 1 || !strings.Contains(out, `no channel "pager" (configured: ops, phone)`) {
		t.Errorf("notify test unknown: exit %d\n%s", code, out)
	}
	if out, code := runPinkie(t, "notify", "test", "phone", "--server", af.natsURL(), "--nkey", streams.ReaderSeedFile(af.auth)); code != 2 {
		t.Errorf("notify test with a reader key: exit %d, want 2\n%s", code, out)
	}
	// Bad configuration sections stop the hub at once.
	for _, tt := range []struct {
		name string
		cfg  map[string]any
		want string
	}{
		{"unknown alerts key", map[string]any{"alerts": map[string]any{"repeat": "1h"}}, `unknown field "repeat"`},
		{"bad rule", map[string]any{"alerts": map[string]any{"rules": []any{map[string]any{"name": "x", "kind": "fs", "summary": "s", "levels": []any{map[string]any{"severity": "warning", "when": "used_percent >>> 1"}}}}}}, "rule x: level warning: when"},
		{"unknown notify key", map[string]any{"notify": map[string]any{"channels": map[string]any{"p": map[string]any{"type": "ntfy", "url": "http://x", "topic": "t", "password": "x"}}}}, `unknown field "password"`},
	} {
		out, code := runPinkie(t, "hub", "--data", t.TempDir(), "--nats", "127.0.0.1:0", "--leaf", "127.0.0.1:0", "--http", "127.0.0.1:0", "--config", writeHubConfig(t, tt.cfg))
		if code != 2 || !strings.Contains(out, tt.want) {
			t.Errorf("%s: hub exit %d, want 2 naming %q:\n%s", tt.name, code, tt.want, out)
		}
	}
}

// TestEmailDigest: alerts that fire within group_wait reach mailpit as one
// message listing them all.
func TestEmailDigest(t *testing.T) {
	af := newAlertFleet(t, map[string]any{"group_wait": "2s"}, nil, "goliath")
	af.startHub("--config", af.config)
	ag := af.inprocAgent("goliath")
	now := time.Now()
	for i, m := range []string{"/", "/srv", "/var"} {
		publishOn(t, ag, "fs", m, now.Add(time.Duration(i)*time.Millisecond), fsEvent(m, 96))
	}
	mail := af.mail.wait("[3 FIRING, 0 RESOLVED] 3 alerts", 30*time.Second)
	for _, m := range []string{"goliath: / is 96% full", "goliath: /srv is 96% full", "goliath: /var is 96% full"} {
		if !strings.Contains(mail.Text, m) || !strings.Contains(mail.HTML, m) {
			t.Errorf("digest lacks %q:\n%s", m, mail.Text)
		}
	}
	if n := len(af.mail.messages()); n != 1 {
		t.Errorf("mailpit holds %d messages, want the one digest", n)
	}
	if got := af.ntfy.wait("3 alerts", 10*time.Second); got.Priority != 5 {
		t.Errorf("ntfy digest %+v", got)
	}
}

// TestHostSilentAndDeployFailed: an agent that stops sending heartbeats is
// reported silent by the alerter's clock (and the inventory says so), and
// back when it returns; a failed deploy reported by an agent is a critical
// alert until an activation.
func TestHostSilentAndDeployFailed(t *testing.T) {
	af := newAlertFleet(t, map[string]any{"mail": false},
		map[string]any{"host_silent_after": "2s", "evaluation_interval": "200ms", "startup_grace": "0s"}, "goliath")
	af.startHub("--config", af.config)
	dir := t.TempDir()
	agent := af.startAgent("goliath", dir, "", "--producers", "heartbeat", "--heartbeat", "200ms")
	c := af.client()
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", 3, 30*time.Second)
	rd := []string{"--server", af.natsURL(), "--nkey", streams.ReaderSeedFile(af.auth)}
	agent.stop(syscall.SIGTERM)
	m := af.ntfy.wait("[FIRING CRITICAL] goliath host.silent", 30*time.Second)
	if !strings.Contains(m.Message, "goliath: no heartbeat for") {
		t.Errorf("host.silent message %+v", m)
	}
	waitFor(t, 10*time.Second, func() bool {
		out, _ := runPinkie(t, append([]string{"hosts"}, rd...)...)
		return strings.Contains(out, "goliath  silent")
	})
	back := af.startAgent("goliath", dir, "", "--producers", "heartbeat", "--heartbeat", "200ms")
	af.ntfy.wait("[RESOLVED] goliath host.silent", 30*time.Second)
	waitFor(t, 10*time.Second, func() bool {
		out, _ := runPinkie(t, append([]string{"hosts"}, rd...)...)
		return strings.Contains(out, "goliath  online")
	})

	// Deploy phases reach DEPLOY through ingest; the alerter reads them there.
	// One agent per host key: two leaf nodes for goliath would push each
	// other off the hub.
	back.stop(syscall.SIGTERM)
	ag := af.inprocAgent("goliath")
	publishOn(t, ag, "deploy.failed", "", time.Now(), events.DeployPhase{RequestID: "r1", Host: "goliath", Revision: "abc123", Reason: "switch-to-configuration exited 4"})
	af.ntfy.wait("goliath: deploy failed of abc123: switch-to-configuration exited 4", 30*time.Second)
	publishOn(t, ag, "deploy.activated", "", time.Now(), events.DeployPhase{RequestID: "r2", Host: "goliath", Revision: "abc124"})
	af.ntfy.wait("[RESOLVED] goliath deploy.failed", 30*time.Second)
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
