package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// agentServerPrefix starts every agent's server name: pinkie-agent-<host>.
const agentServerPrefix = "pinkie-agent-"

// AgentOptions configure an agent's embedded server.
type AgentOptions struct {
	// Host is this host's name.
	Host string
	// HubURLs are the hub's leaf URLs (nats-leaf://host:7422); several for
	// a clustered hub. Empty runs the agent without a hub: events wait in
	// the OUTBOX.
	HubURLs []string
	// NkeyFile is the host's seed file (pinkie keys init). Empty connects
	// without authentication (a hub without --auth, on loopback).
	NkeyFile string
	// DataDir holds the agent's JetStream store.
	DataDir string
	// OutboxMaxBytes bounds the OUTBOX (default 1 GiB); when full, new
	// events are refused and the refusal logged, old ones are kept.
	OutboxMaxBytes int64
	// OutboxMaxAge bounds how long an event waits for the hub (default 30 days).
	OutboxMaxAge time.Duration
	// ReconnectInterval is the base delay between attempts to reach the
	// hub; nats-server adds up to as much again in jitter (default 2s).
	ReconnectInterval time.Duration
	// SyncAlways makes the OUTBOX fsync every event (survives power loss,
	// costs throughput).
	SyncAlways bool
	// TLSCA is the CA certificate file to trust for a hub on tls:// (the
	// system's CAs when empty).
	TLSCA string
	Log   *slog.Logger
	// Services run inside the agent next to its producers.
	Services []AgentService
	// ExtraStoreBytes is JetStream room for streams besides the OUTBOX
	// (the shell's session recordings).
	ExtraStoreBytes int64
	// HubCompression is the S2 compression this agent asks for on its link
	// to the hub (LeafCompressionModes; default DefaultHubCompression).
	// Compression is negotiated: off on either side is off.
	HubCompression string
}

// DefaultHubCompression is the agent's compression of its hub link. Off:
// on a LAN s2_auto picks s2_uncompressed anyway, but still runs the S2
// writer, whose every flush allocates, and the idle link's garbage
// collection was most of the agent's CPU (17.0 against 4.6 ms/s with
// every producer, side by side in scripts/bench/agent-footprint).
// An agent far from the hub that fetches Nix closures over the link may
// gain from s2_auto (more compression the longer the round trip).
const DefaultHubCompression = server.CompressionOff

// Agent is a running agent's NATS side: its leaf server, OUTBOX and the
// publisher producers use.
type Agent struct {
	opts    AgentOptions
	log     *slog.Logger
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	outbox  jetstream.Stream
	schemas *schemas.Set
	stop    context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
}

// newOutboxFirstSeq is where a new OUTBOX starts numbering: the time in
// microseconds, so a host whose OUTBOX is made anew (a reinstall, a wiped
// data dir) numbers its events beyond anything its previous OUTBOX sent.
// The hub's source of this host remembers the last sequence it stored and
// skips, as already seen, any message numbered at or below it — and then
// acknowledges it, which drops it from the OUTBOX: numbering from 1 again
// lost the new OUTBOX's first events (TestNewOutboxIsNotSkipped).
func newOutboxFirstSeq(now time.Time) uint64 {
	return uint64(max(now.UnixMicro(), 1))
}

// StartAgent starts the agent's embedded server as a leaf node of the hub.
// It starts whether or not the hub is reachable.
func StartAgent(ctx context.Context, o AgentOptions) (*Agent, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if err := events.ValidHost(o.Host); err != nil {
		return nil, fmt.Errorf("--name: %w", err)
	}
	if o.DataDir == "" {
		return nil, errors.New("agent: --data is required")
	}
	if o.OutboxMaxBytes <= 0 {
		o.OutboxMaxBytes = 1 << 30
	}
	if o.OutboxMaxAge <= 0 {
		o.OutboxMaxAge = 30 * 24 * time.Hour
	}
	if o.ReconnectInterval <= 0 {
		o.ReconnectInterval = 2 * time.Second
	}
	if o.HubCompression == "" {
		o.HubCompression = DefaultHubCompression
	}
	if !slices.Contains(LeafCompressionModes, o.HubCompression) {
		return nil, fmt.Errorf("agent: --hub-compression %q: want one of %s", o.HubCompression, strings.Join(LeafCompressionModes, ", "))
	}
	var urls []*url.URL
	for _, u := range o.HubURLs {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" {
			return nil, fmt.Errorf("--hub %q: want nats-leaf://HOST:PORT", u)
		}
		switch pu.Scheme {
		case "nats-leaf", "nats", "tls", "ws", "wss":
		default:
			return nil, fmt.Errorf("--hub %q: unknown scheme %q, want nats-leaf:// (or tls://)", u, pu.Scheme)
		}
		urls = append(urls, pu)
	}
	remote := &server.RemoteLeafOpts{URLs: urls, IgnoreDiscoveredServers: true, Compression: server.CompressionOpts{Mode: o.HubCompression}}
	if o.TLSCA != "" || (len(urls) > 0 && (urls[0].Scheme == "tls" || urls[0].Scheme == "wss")) {
		tc, err := clientTLS(o.TLSCA)
		if err != nil {
			return nil, err
		}
		remote.TLS, remote.TLSConfig, remote.TLSTimeout = true, tc, 5
	}
	if o.NkeyFile != "" {
		kp, err := ReadSeed(o.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("--nkey: %w", err)
		}
		seed, _ := kp.Seed()
		remote.Nkey = string(seed)
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	sopts := &server.Options{
		ServerName:         agentServerPrefix + o.Host,
		DontListen:         true,
		JetStream:          true,
		JetStreamDomain:    events.Domain(o.Host),
		StoreDir:           filepath.Join(o.DataDir, "jetstream"),
		JetStreamMaxStore:  o.OutboxMaxBytes + o.ExtraStoreBytes + 64<<20,
		JetStreamMaxMemory: 16 << 20,
		SyncAlways:         o.SyncAlways,
		FeatureFlags:       map[string]bool{"js_ack_fc_v2": true, "js_api_reply_v2": true}, // reply v2: host-scoped replies to the deploy inbox's source (deploy.go)
	}
	if len(urls) > 0 {
		sopts.LeafNode = server.LeafNodeOpts{ReconnectInterval: o.ReconnectInterval, Remotes: []*server.RemoteLeafOpts{remote}}
	}
	a := &Agent{opts: o, log: o.Log}
	var err error
	if a.schemas, err = schemas.Load(); err != nil {
		return nil, err
	}
	// The agent reports the hub link itself, once per change; the server's
	// own retry errors go to debug.
	if a.srv, err = startServer(sopts, o.Log, "leafnode", "Leafnode", "leaf node", " - lid:"); err != nil {
		return nil, err
	}
	a.nc, err = nats.Connect("", nats.InProcessServer(a.srv), nats.Name("pinkie-agent"), nats.MaxReconnects(-1))
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("connect to agent server: %w", err)
	}
	if a.js, err = jetstream.New(a.nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		a.Close()
		return nil, err
	}
	// The HUB consumer must exist before the first event: an interest
	// stream without consumers keeps nothing.
	cfg := outboxConfig(o.OutboxMaxBytes, o.OutboxMaxAge)
	if old, err := a.js.Stream(ctx, OutboxStream); err == nil {
		cfg.FirstSeq = old.CachedInfo().Config.FirstSeq // cannot change
	} else if errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg.FirstSeq = newOutboxFirstSeq(time.Now())
	} else {
		a.Close()
		return nil, fmt.Errorf("read OUTBOX: %w", err)
	}
	if a.outbox, err = a.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		a.Close()
		return nil, fmt.Errorf("create OUTBOX: %w", err)
	}
	if _, err := a.js.CreateOrUpdatePushConsumer(ctx, OutboxStream, outboxConsumerConfig(o.Host)); err != nil {
		a.Close()
		return nil, fmt.Errorf("create OUTBOX consumer for the hub: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	if len(urls) > 0 {
		a.wg.Add(1)
		go a.watchLink(runCtx)
	}
	a.wg.Add(len(o.Services))
	runServices(runCtx, a.log, o.Services, AgentService.Name, func(ctx context.Context, s AgentService) error { return s.Run(ctx, a) }, a.wg.Done)
	a.log.Info("agent started", "host", o.Host, "hub", o.HubURLs, "data", o.DataDir, "auth", o.NkeyFile != "", "hub_compression", o.HubCompression)
	return a, nil
}

// Connected reports whether the leaf link to the hub is up.
func (a *Agent) Connected() bool { return a.srv.NumLeafNodes() > 0 }

// watchLink logs the hub link's state when it changes, not at every retry.
// It looks every 100ms for 30s after a change, where flapping shows, and
// every second after that: the idle agent's wakeups are its CPU
// (scripts/bench/agent-footprint).
func (a *Agent) watchLink(ctx context.Context) {
	defer a.wg.Done()
	const fast, slow = 100 * time.Millisecond, time.Second
	t := time.NewTimer(fast)
	defer t.Stop()
	state := "starting"
	since := time.Now()
	// A link that drops again right after every connect (two agents with
	// the same name or key push each other off the hub) is reported once,
	// and its flapping kept out of the log until it holds again. Brief is
	// well above the reconnect interval (2 s by default), the time the
	// other agent takes to push this one off again: at 2 s, a loaded
	// machine's slower reconnect reset the count and the flapping went on
	// being logged.
	const brief, stable = 10 * time.Second, 30 * time.Second
	flaps, quiet := 0, false
	for {
		now := a.Connected()
		switch {
		case now && state != "connected":
			if !quiet {
				a.log.Info("hub connected; sending what the OUTBOX holds", "host", a.opts.Host, "pending", a.Pending(ctx), "after", time.Since(since).Round(time.Millisecond))
			}
			state, since = "connected", time.Now()
		case now && quiet && time.Since(since) > stable:
			a.log.Info("hub connection holds again", "host", a.opts.Host)
			quiet, flaps = false, 0
		case !now && state == "connected":
			if time.Since(since) < brief {
				flaps++
			} else {
				flaps = 0
			}
			switch {
			case flaps == 3 && !quiet:
				a.log.Error("the hub keeps dropping this agent's connection right after it is made; is another agent connected with the same name or key?", "host", a.opts.Host)
				quiet = true
			case !quiet:
				a.log.Warn("hub unreachable; events are kept in the OUTBOX until it is back", "host", a.opts.Host)
			}
			state, since = "disconnected", time.Now()
		case !now && state == "starting" && time.Since(since) > 5*time.Second:
			a.log.Warn("hub not reachable yet; events are kept in the OUTBOX until it is", "host", a.opts.Host, "hub", a.opts.HubURLs)
			state = "disconnected"
		}
		if time.Since(since) < stable || quiet {
			t.Reset(fast)
		} else {
			t.Reset(slow)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pending returns how many events the OUTBOX holds that the hub has not
// taken yet.
func (a *Agent) Pending(ctx context.Context) uint64 {
	info, err := a.outbox.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// Host is the agent's host name.
func (a *Agent) Host() string { return a.opts.Host }

// JetStream returns the agent's local JetStream (domain pinkie_<host>).
func (a *Agent) JetStream() jetstream.JetStream { return a.js }

// Server returns the embedded nats-server.
func (a *Agent) Server() *server.Server { return a.srv }

// Publish stores an event in the OUTBOX under evt.<kind>[.<object>] and
// returns once it is stored. The event is checked against its schema
// first: a producer's mistake is reported here, not at the hub.
func (a *Agent) Publish(ctx context.Context, e events.Event, object string) error {
	k, ok := events.Lookup(e.Type())
	if !ok {
		return fmt.Errorf("unknown event type %q", e.Type())
	}
	_, err := a.publishOn(ctx, events.LocalSubject(k.Name, object), e)
	return err
}

// Publisher is the OUTBOX as an events.Publisher: Publish with the
// subject given (an outbox subject, events.LocalSubject), acknowledged
// by the OUTBOX.
func (a *Agent) Publisher() events.Publisher { return events.PublisherFunc(a.publishOn) }

func (a *Agent) publishOn(ctx context.Context, subject string, e events.Event) (events.Ack, error) {
	m, err := a.messageOn(subject, e)
	if err != nil {
		return events.Ack{}, err
	}
	ack, err := a.js.PublishMsg(ctx, m)
	if err != nil {
		return events.Ack{}, fmt.Errorf("store %s in OUTBOX: %w", m.Subject, err)
	}
	return eventAck(ack), nil
}

// PublishAsync queues an event for the OUTBOX without waiting; the future
// reports whether it was stored. For bulk producers and benchmarks.
func (a *Agent) PublishAsync(e events.Event, object string) (jetstream.PubAckFuture, error) {
	m, err := a.message(e, object)
	if err != nil {
		return nil, err
	}
	return a.js.PublishMsgAsync(m)
}

// PublishAsyncComplete is closed when every queued PublishAsync is settled.
func (a *Agent) PublishAsyncComplete() <-chan struct{} { return a.js.PublishAsyncComplete() }

func (a *Agent) message(e events.Event, object string) (*nats.Msg, error) {
	k, ok := events.Lookup(e.Type())
	if !ok {
		return nil, fmt.Errorf("unknown event type %q", e.Type())
	}
	return a.messageOn(events.LocalSubject(k.Name, object), e)
}

// messageOn is the OUTBOX message of e on subject, after the checks
// Publish makes.
func (a *Agent) messageOn(subject string, e events.Event) (*nats.Msg, error) {
	k, ok := events.Lookup(e.Type())
	if !ok {
		return nil, fmt.Errorf("unknown event type %q", e.Type())
	}
	b, err := events.Encode(e)
	if err != nil {
		return nil, err
	}
	if len(b) > events.MaxSize {
		return nil, fmt.Errorf("%s event is %d bytes, over the %d byte limit", k.Name, len(b), events.MaxSize)
	}
	if err := a.schemas.ValidateData(e.Type(), e.Data()); err != nil {
		return nil, err
	}
	return encodedEventMsg(subject, b, e.ID()), nil
}

// Close stops the agent: the link watcher, the connection and the server,
// flushing the store. Safe to call more than once.
func (a *Agent) Close() {
	a.once.Do(func() {
		if a.stop != nil {
			a.stop()
		}
		a.wg.Wait()
		if a.nc != nil {
			_ = a.nc.Drain()
			a.nc.Close()
		}
		if a.srv != nil {
			stopServer(a.srv)
		}
		a.log.Info("agent stopped", "host", a.opts.Host)
	})
}
