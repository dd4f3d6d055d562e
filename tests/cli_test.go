package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

func TestPubBadInputExits2AndPublishesNothing(t *testing.T) {
	f := newFleet(t, "goliath")
	f.startHub()
	base := []string{"pub", "--server", f.natsURL(), "--nkey", f.operator()}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no type", nil, "missing TYPE"},
		{"unknown type", []string{"deploy.nope", "host=goliath"}, `unknown event type "deploy.nope"`},
		{"agent kind", []string{"heartbeat", "counter=1"}, "heartbeat events are published by agents"},
		{"missing field", []string{"deploy.requested"}, "missing property 'host'"},
		{"unknown field", []string{"deploy.requested", "host=goliath", "colour=red"}, `unknown field "colour"`},
		{"ill-typed enum", []string{"deploy.requested", "host=goliath", "goal=explode"}, "want one of switch, boot, test, dry-activate"},
		{"ill-typed JSON field", []string{"deploy.requested", "--data", `{"host": 5}`}, "/host"},
		{"malformed JSON", []string{"deploy.requested", "--data", `{"host": "goliath"`}, "--data is not a JSON object"},
		{"invalid host", []string{"deploy.requested", "host=goliath.lan"}, `invalid host name "goliath.lan"`},
		{"not key=value", []string{"deploy.requested", "goliath"}, `argument "goliath": want key=value`},
		{"bad store path", []string{"deploy.requested", "host=goliath", "store_path=/tmp/x"}, "/store_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runPinkie(t, append(append([]string{}, base...), tt.args...)...)
			if code != 2 {
				t.Errorf("exit %d, want 2:\n%s", code, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output does not name the problem (%q):\n%s", tt.want, out)
			}
		})
	}
	c := f.client()
	if n := countSubjects(t, c.JS, streams.DeployStream, ">"); n != 0 {
		t.Errorf("DEPLOY holds %d messages after only bad input", n)
	}
	// Unreachable hub: exit 2 as well.
	out, code := runPinkie(t, "pub", "--server", "nats://127.0.0.1:1", "deploy.requested", "host=goliath")
	if code != 2 || !strings.Contains(out, "cannot connect to the hub") {
		t.Errorf("unreachable hub: exit %d\n%s", code, out)
	}
}

func TestNatsCLISeesPub(t *testing.T) {
	nats := natsCLI(t)
	f := newFleet(t, "goliath")
	f.startHub()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, nats, "--server", f.natsURL(), "--nkey", f.operator(), "sub", "pinkie.deploy.>", "--count", "1")
	subOut := &syncBuffer{}
	sub.Stdout, sub.Stderr = subOut, subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(subOut.String(), "Subscribing on pinkie.deploy.>") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", f.operator(), "deploy.requested", "host=goliath", "--json")
	if code != 0 {
		t.Fatalf("pub: exit %d\n%s", code, out)
	}
	var res struct{ ID string }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if err := sub.Wait(); err != nil {
		t.Fatalf("nats sub: %v\n%s", err, subOut.String())
	}
	var ev map[string]any
	for _, line := range strings.Split(subOut.String(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "{") {
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("nats sub printed %q, not the event JSON", line)
			}
		}
	}
	if ev["id"] != res.ID || ev["type"] != "pinkie.deploy.requested.v1" {
		t.Errorf("nats sub saw %v, want id %s:\n%s", ev, res.ID, subOut.String())
	}
	if !strings.Contains(subOut.String(), "Content-Type: application/cloudevents+json") {
		t.Errorf("nats sub shows no CloudEvents content type:\n%s", subOut.String())
	}
	// nats stream ls and kv ls work with the operator and the reader key.
	for _, key := range []string{f.operator(), streams.ReaderSeedFile(f.auth)} {
		out, err := exec.Command(nats, "--server", f.natsURL(), "--nkey", key, "stream", "ls", "--names").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "HOSTS") || !strings.Contains(string(out), "DEPLOY") {
			t.Errorf("nats stream ls with %s: %v\n%s", key, err, out)
		}
		out, err = exec.Command(nats, "--server", f.natsURL(), "--nkey", key, "kv", "ls", "--names").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "pinkie-last-deploy") {
			t.Errorf("nats kv ls with %s: %v\n%s", key, err, out)
		}
	}
}

func TestTail(t *testing.T) {
	f := newFleet(t, "goliath")
	f.startHub()
	tail := startProc(t, "tail", "tail", "--server", f.natsURL(), "--nkey", f.operator(), "deploy.>", "--count", "1")
	time.Sleep(500 * time.Millisecond)
	if out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", f.operator(), "deploy.requested", "host=goliath", "goal=boot"); code != 0 {
		t.Fatalf("pub: %s", out)
	}
	select {
	case <-tail.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("tail did not exit after one event:\n%s", tail.out.String())
	}
	if !regexp.MustCompile(`goliath\s+deploy\.requested\s+goliath\s+goal=boot host=goliath`).MatchString(tail.out.String()) {
		t.Errorf("tail line: %q", tail.out.String())
	}
}

func TestDemo(t *testing.T) {
	demo := startProc(t, "demo", "demo", "--heartbeat", "200ms")
	demo.waitFor("Ctrl-C stops the demo", 30*time.Second)
	m := regexp.MustCompile(`PINKIE_SERVER=(\S+) PINKIE_NKEY=(\S+)`).FindStringSubmatch(demo.out.String())
	if m == nil {
		t.Fatalf("demo did not print how to connect:\n%s", demo.out.String())
	}
	dir := regexp.MustCompile(`data\s+(\S+)`).FindStringSubmatch(demo.out.String())[1]
	tail := startProc(t, "tail", "tail", "--server", m[1], "--nkey", m[2], "host.*.heartbeat", "--count", "2")
	select {
	case <-tail.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("no events from the demo's agent:\n%s\n%s", tail.out.String(), demo.out.String())
	}
	if !strings.Contains(tail.out.String(), "heartbeat") {
		t.Errorf("tail of the demo: %s", tail.out.String())
	}
	demo.stop(syscall.SIGINT)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo left %s behind (%v)", dir, err)
	}
}
