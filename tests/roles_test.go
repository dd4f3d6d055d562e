package tests

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/streams"
)

// natsRun runs the real nats CLI with a key against the fleet's hub and
// returns its combined output and exit code. within bounds it (a process
// still running then is killed: a live subscription).
func natsRun(t *testing.T, f *fleet, key string, within time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	all := append([]string{"--server", f.natsURL(), "--nkey", key, "--timeout", "2s"}, args...)
	cmd := exec.CommandContext(ctx, natsCLI(t), all...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("nats %v: %v", args, err)
	}
	return string(out), 0
}

// TestRoles checks every row of the README's role table with the real nats
// CLI and pinkie's own verbs: what a reader and an operator may do works,
// and every attack on the hub's consumers, streams and buckets fails. The
// hub keeps working afterwards.
func TestRoles(t *testing.T) {
	natsCLI(t)
	f := newFleet(t, "goliath", "koishi")
	f.startHub()
	f.startAgent("goliath", t.TempDir(), "", "--producers", "heartbeat", "--heartbeat", "200ms")
	c := f.client()
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", 2, 30*time.Second)
	// DEPLOY holds one operator request; the attacks must leave it so.
	if out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", f.operator(), "deploy.requested", "host=koishi"); code != 0 {
		t.Fatalf("operator pub deploy.requested: exit %d\n%s", code, out)
	}
	reader, operator := streams.ReaderSeedFile(f.auth), f.operator()
	keys := map[string]string{"reader": reader, "operator": operator}
	// The hub waits for the inventory projection before the KV reads.
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs, err := streams.ReadBucket(context.Background(), c.JS, "pinkie-inventory", "")
		if err == nil && recs["goliath"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pinkie-inventory has no goliath: %v %v", recs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	refused := "10403" // the consumer gate's err_code
	denied := "Permissions Violation"
	cases := []struct {
		name   string
		args   []string
		wantOK bool   // exit 0
		want   string // in the output
	}{
		// Reads.
		{name: "stream ls", args: []string{"stream", "ls", "-n"}, wantOK: true, want: "HOSTS"},
		{name: "stream info", args: []string{"stream", "info", "HOSTS"}, wantOK: true, want: "Messages"},
		{name: "stream info in domain hub", args: []string{"--js-domain", "hub", "stream", "info", "DEPLOY"}, wantOK: true, want: "Messages: 1"},
		{name: "stream get", args: []string{"stream", "get", "HOSTS", "1"}, wantOK: true, want: "pinkie.host.goliath.heartbeat"},
		{name: "stream subjects", args: []string{"stream", "subjects", "HOSTS"}, wantOK: true, want: "pinkie.host.goliath.heartbeat"},
		{name: "kv get", args: []string{"kv", "get", "pinkie-inventory", "goliath", "--raw"}, wantOK: true, want: `"host":"goliath"`},
		{name: "kv ls buckets", args: []string{"kv", "ls", "-n"}, wantOK: true, want: "pinkie-last-deploy"},
		{name: "consumer ls", args: []string{"consumer", "ls", "INGEST", "-n"}, wantOK: true, want: "ingest"},
		{name: "consumer info", args: []string{"consumer", "info", "DEPLOY", "AGENT_goliath"}, wantOK: true, want: "AGENT_goliath"},
		// Reads that need a push consumer are refused.
		{name: "kv ls keys (a push watcher)", args: []string{"kv", "ls", "pinkie-inventory"}, want: "push consumers are refused"},
		{name: "kv history (a push watcher)", args: []string{"kv", "history", "pinkie-inventory", "goliath"}, want: "push consumers are refused"},
		// Attacks on the hub's consumers.
		{name: "consumer rm ingest", args: []string{"consumer", "rm", "INGEST", "ingest", "-f"}, want: refused},
		{name: "consumer rm ingest in domain hub", args: []string{"--js-domain", "hub", "consumer", "rm", "INGEST", "ingest", "-f"}, want: refused},
		{name: "consumer rm AGENT_goliath", args: []string{"consumer", "rm", "DEPLOY", "AGENT_goliath", "-f"}, want: refused},
		{name: "consumer next from ingest", args: []string{"consumer", "next", "INGEST", "ingest", "--no-ack"}, wantOK: true, want: "not created by a client"},
		{name: "consumer next from AGENT_goliath", args: []string{"consumer", "next", "DEPLOY", "AGENT_goliath", "--no-ack"}, wantOK: true, want: "not created by a client"},
		// Attacks that write through a consumer.
		{name: "push consumer into DEPLOY", args: []string{"consumer", "add", "HOSTS", "evil", "--target", "pinkie.deploy.koishi.requested", "--deliver", "all", "--ack", "none", "--defaults"}, want: "push consumers are refused"},
		{name: "ephemeral push consumer into HOSTS", args: []string{"consumer", "add", "DEPLOY", "--ephemeral", "--target", "pinkie.host.koishi.heartbeat", "--deliver", "all", "--ack", "none", "--defaults"}, want: "push consumers are refused"},
		{name: "durable pull consumer", args: []string{"consumer", "add", "HOSTS", "mine", "--pull", "--deliver", "all", "--ack", "none", "--defaults"}, want: "durable consumers are refused"},
		{name: "legacy durable create", args: []string{"req", "$JS.API.CONSUMER.DURABLE.CREATE.HOSTS.mine", `{"stream_name":"HOSTS","config":{"durable_name":"mine","ack_policy":"none"}}`}, wantOK: true, want: refused},
		{name: "pull consumer with acks", args: []string{"consumer", "add", "HOSTS", "--ephemeral", "--pull", "--deliver", "all", "--ack", "explicit", "--defaults"}, want: "consumers with acks are refused"},
		{name: "consumer named like the hub's", args: []string{"consumer", "add", "DEPLOY", "AGENT_newhost", "--ephemeral", "--pull", "--ack", "none", "--defaults"}, want: "are the hub's"},
		// Attacks on streams and buckets.
		{name: "kv put", args: []string{"kv", "put", "pinkie-last-deploy", "koishi", `{"host":"koishi","last_success":{"request_id":"forged"}}`}, want: denied},
		{name: "kv del", args: []string{"kv", "del", "pinkie-last-deploy", "koishi", "-f"}, want: denied},
		{name: "stream purge", args: []string{"stream", "purge", "DEPLOY", "-f"}, want: denied},
		{name: "stream rm", args: []string{"stream", "rm", "DEPLOY", "-f"}, want: "timeout"},
		{name: "stream edit", args: []string{"stream", "edit", "HOSTS", "--max-age", "1s", "-f"}, want: denied},
		{name: "forged telemetry", args: []string{"pub", "pinkie.host.koishi.heartbeat", "{}"}, want: denied},
		{name: "ack forgery on ingest", args: []string{"pub", "$JS.ACK.INGEST.ingest.1.100000.100000.0.0", ""}, want: denied},
		// A new cluster's formation (streams/upgrade.go): the claim and
		// the marker of a node moving a single hub's streams in.
		{name: "formation claim", args: []string{"pub", "pinkie.hubformation", "new"}, want: denied},
		{name: "formation marker", args: []string{"sub", "_pinkie.hubformation.upgrading.hub1", "--count", "1"}, want: denied},
	}
	for _, role := range []string{"reader", "operator"} {
		for _, tc := range cases {
			t.Run(role+"/"+tc.name, func(t *testing.T) {
				out, code := natsRun(t, f, keys[role], 20*time.Second, tc.args...)
				if (code == 0) != tc.wantOK || !strings.Contains(out, tc.want) {
					t.Errorf("nats %s: exit %d, want ok=%v and %q in:\n%s", strings.Join(tc.args, " "), code, tc.wantOK, tc.want, out)
				}
			})
		}
		t.Run(role+"/ephemeral pull consumer", func(t *testing.T) {
			out, code := natsRun(t, f, keys[role], 20*time.Second, "consumer", "add", "HOSTS", "--ephemeral", "--pull", "--deliver", "all",
				"--ack", "none", "--inactive-threshold", "1m", "--filter", "pinkie.host.goliath.>", "--defaults")
			m := regexp.MustCompile(`Consumer HOSTS > (\S+) created`).FindStringSubmatch(out)
			if code != 0 || m == nil {
				t.Fatalf("ephemeral pull consumer: exit %d\n%s", code, out)
			}
			info := jetstream.ConsumerInfo{Name: m[1]}
			out, code = natsRun(t, f, keys[role], 20*time.Second, "consumer", "next", "HOSTS", info.Name, "--no-ack", "--count", "2")
			if code != 0 || strings.Count(out, "subj: pinkie.host.goliath.heartbeat") != 2 {
				t.Errorf("consumer next on its own consumer: exit %d\n%s", code, out)
			}
			if out, code := natsRun(t, f, keys[role], 20*time.Second, "consumer", "rm", "HOSTS", info.Name, "-f"); code != 0 {
				t.Errorf("consumer rm of its own consumer: exit %d\n%s", code, out)
			}
			// Once deleted, the name is no longer the client's.
			if out, _ := natsRun(t, f, keys[role], 20*time.Second, "consumer", "next", "HOSTS", info.Name, "--no-ack"); !strings.Contains(out, "not created by a client") {
				t.Errorf("consumer next after rm:\n%s", out)
			}
		})
		t.Run(role+"/live subjects", func(t *testing.T) {
			out, _ := natsRun(t, f, keys[role], 10*time.Second, "sub", "pinkie.>", "--count", "2")
			if strings.Count(out, `Received on "pinkie.host.goliath.heartbeat"`) != 2 {
				t.Errorf("nats sub 'pinkie.>':\n%s", out)
			}
		})
		t.Run(role+"/no hub inboxes", func(t *testing.T) {
			// The agent's heartbeats keep the hub publishing (and getting
			// acks on its inboxes) the whole time.
			out, _ := natsRun(t, f, keys[role], 3*time.Second, "sub", "_INBOX.>")
			if strings.Contains(out, "Received") {
				t.Errorf("a client saw replies on _INBOX.>:\n%s", out)
			}
		})
		t.Run(role+"/reply into DEPLOY", func(t *testing.T) {
			// A reply subject is not checked by permissions: a direct get
			// answered on a deploy subject must not land in DEPLOY.
			if out, code := natsRun(t, f, keys[role], 10*time.Second, "pub", "$JS.API.DIRECT.GET.HOSTS", `{"seq":1}`, "--reply", "pinkie.deploy.koishi.requested"); code != 0 {
				t.Fatalf("pub: exit %d\n%s", code, out)
			}
		})
		t.Run(role+"/pinkie verbs", func(t *testing.T) {
			for _, args := range [][]string{{"hosts", "--json"}, {"last-deploy", "--json"}, {"alerts", "--json"}, {"silence", "ls", "--json"}} {
				out, code := runPinkie(t, append(args, "--server", f.natsURL(), "--nkey", keys[role])...)
				if code == 2 || strings.Contains(out, "not permitted") || strings.Contains(out, "refused") {
					t.Errorf("pinkie %s with the %s key: exit %d\n%s", strings.Join(args, " "), role, code, out)
				}
			}
			out, _ := runPinkie(t, "hosts", "--server", f.natsURL(), "--nkey", keys[role])
			if !regexp.MustCompile(`(?m)^goliath\s+online`).MatchString(out) {
				t.Errorf("pinkie hosts:\n%s", out)
			}
		})
	}
	t.Run("operator requests deploys and silences", func(t *testing.T) {
		if out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", operator, "deploy.requested", "host=goliath"); code != 0 {
			t.Errorf("pub deploy.requested: exit %d\n%s", code, out)
		}
		if out, code := runPinkie(t, "silence", "add", "--server", f.natsURL(), "--nkey", operator, "--for", "1h", "host=koishi"); code != 0 {
			t.Errorf("silence add: exit %d\n%s", code, out)
		}
	})
	t.Run("reader requests nothing", func(t *testing.T) {
		if out, code := runPinkie(t, "pub", "--server", f.natsURL(), "--nkey", reader, "--timeout", "3s", "deploy.requested", "host=goliath"); code == 0 {
			t.Errorf("reader pub deploy.requested succeeded:\n%s", out)
		}
		if out, code := runPinkie(t, "silence", "add", "--server", f.natsURL(), "--nkey", reader, "--for", "1h", "host=koishi"); code == 0 {
			t.Errorf("reader silence add succeeded:\n%s", out)
		}
	})

	// After all that the hub still works: its consumers exist, the agent's
	// events reach HOSTS, DEPLOY holds the operators' two requests only.
	ctx := context.Background()
	if _, err := c.JS.Consumer(ctx, streams.IngestStream, streams.IngestConsumer); err != nil {
		t.Errorf("consumer %s: %v", streams.IngestConsumer, err)
	}
	if _, err := c.JS.PushConsumer(ctx, streams.DeployStream, "AGENT_goliath"); err != nil {
		t.Errorf("consumer AGENT_goliath: %v", err)
	}
	n := countSubjects(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat")
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", n+3, 30*time.Second)
	// (goliath's agent answers its request with build.failed: no flake.)
	if n, all := countSubjects(t, c.JS, streams.DeployStream, "pinkie.deploy.*.requested"), countSubjects(t, c.JS, streams.DeployStream, ">"); n != 2 || all > 4 {
		t.Errorf("DEPLOY holds %d requests and %d messages, want the 2 operator requests and their phases", n, all)
	}
	if n := countSubjects(t, c.JS, streams.HostsStream, "pinkie.host.koishi.>"); n != 0 {
		t.Errorf("HOSTS holds %d koishi messages; koishi never ran", n)
	}
	if recs, err := streams.ReadBucket(ctx, c.JS, "pinkie-last-deploy", ""); err != nil || strings.Contains(string(recs["koishi"]), "forged") {
		t.Errorf("pinkie-last-deploy koishi: %s %v, want the projection's record, not the forged one", recs["koishi"], err)
	}
}
