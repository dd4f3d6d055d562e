package streams

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// TestDeployConsumerFromLastPerSubjectIsMadeAnew: an AGENT_<host> consumer
// an older hub made with "last per subject" (which nats-server 2.15.3
// applies again at every reset, dropping superseded requests an agent has
// not seen) is made anew at the next start, delivering from a sequence:
// here, with nothing acknowledged yet, from the host's latest request. (The
// first hub runs without the deploy service, which would make the
// consumer itself.)
func TestDeployConsumerFromLastPerSubjectIsMadeAnew(t *testing.T) {
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"goliath"}); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	ctx := context.Background()
	hub := startTestHub(t, auth, data)
	js := hub.JetStream()
	k, _ := events.Lookup("deploy.requested")
	var last uint64
	for i := 1; i <= 3; i++ {
		e, err := events.New(k, "tester", "cli", time.Now(), events.DeployRequested{Host: "goliath", Revision: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		b, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := js.Publish(ctx, events.DeploySubject("goliath", "requested"), b)
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
		// Another host's request after it: not where goliath starts.
		if _, err := js.Publish(ctx, events.DeploySubject("koishi", "requested"), b); err != nil {
			t.Fatal(err)
		}
	}
	old := deployHubConsumerConfig("goliath", 1)
	old.DeliverPolicy, old.OptStartSeq = jetstream.DeliverLastPerSubjectPolicy, 0
	if _, err := js.CreateOrUpdatePushConsumer(ctx, DeployStream, old); err != nil {
		t.Fatal(err)
	}
	hub.Close()

	hub, err := StartHub(ctx, HubOptions{IngestCheck: testIngestCheck,
		DataDir: data, NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		AuthDir: auth, Log: testLog(t), Services: []HubService{DeployHubService{Tick: 100 * time.Millisecond}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	var info *jetstream.ConsumerInfo
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if info, err = consumerInfo(ctx, hub.JetStream(), DeployStream, old.Durable); err == nil && info.Config.DeliverPolicy != jetstream.DeliverLastPerSubjectPolicy {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || info.Config.OptStartSeq != last {
		t.Fatalf("%s delivers %v from %d, want by start sequence from %d (goliath's latest request)", old.Durable, info.Config.DeliverPolicy, info.Config.OptStartSeq, last)
	}
}

// TestDeployConsumersBeyondAThousandHosts: DEPLOY holds one consumer per
// host, and nats-server 2.15 caps a stream at 1,000 consumers by default
// ("maximum consumers limit reached"): the 1,000-agent fleet benchmark
// could not make the last hosts' consumers. The hub lifts that cap.
func TestDeployConsumersBeyondAThousandHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 1,010 consumers")
	}
	hub := startTestHub(t, "", t.TempDir())
	defer hub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const hosts = 1010
	for i := range hosts {
		if err := ensureDeployConsumer(ctx, hub, fmt.Sprintf("h%04d", i)); err != nil {
			t.Fatalf("deploy consumer of host %d: %v", i, err)
		}
	}
	info, err := hub.JetStream().Stream(ctx, DeployStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Consumers; n < hosts {
		t.Fatalf("DEPLOY holds %d consumers, want at least %d", n, hosts)
	}
}
