package streams

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// HubOptions configure a hub.
type HubOptions struct {
	// DataDir holds the JetStream file store.
	DataDir string
	// NATSAddr, LeafAddr and HTTPAddr are host:port listeners for clients,
	// agents' leaf connections and HTTP (/healthz, /metrics). Port 0 picks
	// a free port.
	NATSAddr, LeafAddr, HTTPAddr string
	// AuthDir holds auth.json (pinkie keys init). Empty means no
	// authentication, which is allowed on loopback only.
	AuthDir string
	// MaxEventBytes is the largest event accepted (default events.MaxSize).
	MaxEventBytes int
	// MaxStore and MaxMemory bound JetStream (defaults 10 GiB and 256 MiB).
	// Shares of MaxStore bound the streams hosts fill (streams/budget.go).
	MaxStore, MaxMemory int64
	// Budget bounds what each host may send (zero: the defaults).
	Budget HostBudget
	// SyncAlways makes the store fsync every write.
	SyncAlways bool
	// TLSCert and TLSKey, when set, make the client and leaf listeners
	// speak TLS only.
	TLSCert, TLSKey string
	Log             *slog.Logger
	Version         string
	// IngestCheck builds the check of every event an agent sends
	// (package consumers/ingest) from what only the running hub knows.
	// Required: without it the hub would store nothing.
	IngestCheck func(IngestCheckEnv) IngestCheck
	// Services run inside the hub once its streams exist.
	Services []HubService
	// HTTPHandler, when set, serves every HTTP path besides /metrics and
	// /healthz (the dashboard).
	HTTPHandler http.Handler
	// Health configures what /healthz calls unhealthy, how the hub watches
	// its own consumers and when it gives up (health.go).
	Health HealthOptions
	// MetricsTokenFile holds a bearer token that lets a client beyond
	// loopback see per-host detail on /metrics and /healthz.
	MetricsTokenFile string
	// FleetMetrics serves /metrics/fleet (the fleet's state for
	// Prometheus, package fleetmetrics) to loopback clients and to the
	// bearer token in FleetMetricsTokenFile; nil answers 404.
	FleetMetrics          http.Handler
	FleetMetricsTokenFile string
	// NixCacheBudget bounds the Nix cache (default DefaultNixCacheShare
	// of MaxStore); NixCacheGrace keeps fresh uploads (default
	// DefaultNixCacheGrace). See nixcache_retention.go.
	NixCacheBudget int64
	NixCacheGrace  time.Duration
	// NixSigningKeyFile is the fleet's Nix secret key, when it is not
	// AuthDir's nix-signing.sec (a systemd credential, say).
	NixSigningKeyFile string
	// ServerName names this node (default pinkie-hub); every node of a
	// cluster needs its own.
	ServerName string
	// Cluster makes the hub a node of a clustered hub (cluster.go).
	Cluster ClusterOptions
	// LeafCompression is the S2 compression of agents' leaf connections
	// (LeafCompressionModes; default s2_auto: none on a fast link, more
	// the slower it is). Any S2 mode, even the uncompressed one s2_auto
	// picks on a LAN, keeps encoder buffers per connection: "off" saves
	// about 5 MiB of hub memory per agent.
	LeafCompression string
}

// LeafCompressionModes are the values HubOptions.LeafCompression takes.
var LeafCompressionModes = []string{server.CompressionOff, server.CompressionS2Auto, server.CompressionS2Fast, server.CompressionS2Better, server.CompressionS2Best}

// Hub is a running pinkie hub.
type Hub struct {
	opts    HubOptions
	log     *slog.Logger
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	schemas *schemas.Set
	metrics *hubMetrics
	http    *http.Server
	httpLn  net.Listener
	svcKey  nkeys.KeyPair
	gateKP  nkeys.KeyPair // the consumer gate's in-process user in CLIENTS
	gateNC  *nats.Conn
	webKP   nkeys.KeyPair // the dashboard terminal's in-process user in CLIENTS (shell_web.go)
	sopts   *server.Options

	budget *budgets

	// srcMu orders changes of INGEST's sources; sourcingStopped is set
	// once they are removed for good at shutdown.
	srcMu           sync.Mutex
	sourcingStopped bool

	mu        sync.Mutex
	hosts     map[string]bool // hosts the hub takes events from (INGEST sources them unless the budgets pause them)
	authMod   time.Time
	auth      *Auth
	stop      context.CancelFunc
	runCtx    context.Context // until Close: what the hub's goroutines run in
	wg        sync.WaitGroup
	checked   chan pendingPub
	pending   chan pendingPub
	ackerDone chan struct{}
	closed    bool
	// closing is closed when Close starts: a forward that fails is then
	// left for the next start instead of retried.
	closing chan struct{}

	check    IngestCheck // HubOptions.IngestCheck's, for every run of the ingest check
	ingestMu sync.Mutex  // one start, restart or stop of the ingest check at a time
	ingest   *ingestRun
	// ingestSettled is the stream sequence of the newest INGEST message
	// whose forward is stored; everything the check took before it is too.
	ingestSettled atomic.Uint64
	watch         consumerWatch
	health        healthState
	metricsToken  []byte
	fleetToken    []byte // --fleet-metrics-token-file
	nixCache      *NixCache
	nixRetention  *nixRetention
	orders        *buildOrderIndex // the planner's build orders, read from DEPLOY
	replicas      int              // of every stream and bucket (cluster.go)
	upgrade       bool             // a single hub's streams move into the new cluster at start (upgrade.go)
	leading       atomic.Bool      // on a cluster: this node leads LeaderStream
	ingestFenced  atomic.Bool      // the ingest check stopped: this node lost the lead (cluster.go)
	routeQuorum   atomic.Bool      // on a cluster: routes to a majority at the last poll (cluster.go)
}

// StartHub starts the hub: the embedded server, its streams and buckets,
// the ingest check and the HTTP endpoints.
func StartHub(ctx context.Context, o HubOptions) (*Hub, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.IngestCheck == nil {
		return nil, errors.New("start hub: no ingest check (HubOptions.IngestCheck)")
	}
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = events.MaxSize
	}
	if o.MaxStore <= 0 {
		o.MaxStore = 10 << 30
	}
	if o.MaxMemory <= 0 {
		o.MaxMemory = 256 << 20
	}
	if o.LeafCompression == "" {
		o.LeafCompression = server.CompressionS2Auto
	}
	if !slices.Contains(LeafCompressionModes, o.LeafCompression) {
		return nil, fmt.Errorf("hub: --leaf-compression %q: want one of %s", o.LeafCompression, strings.Join(LeafCompressionModes, ", "))
	}
	if o.MaxStore < MinMaxStore {
		return nil, fmt.Errorf("hub: --max-store %d is below %d bytes (32 MiB), the least the hub's streams need", o.MaxStore, MinMaxStore)
	}
	if o.DataDir == "" {
		return nil, errors.New("hub: --data is required")
	}
	nh, np, err := splitHostPort("--nats", o.NATSAddr)
	if err != nil {
		return nil, err
	}
	lh, lp, err := splitHostPort("--leaf", o.LeafAddr)
	if err != nil {
		return nil, err
	}
	hh, _, err := splitHostPort("--http", o.HTTPAddr)
	if err != nil {
		return nil, err
	}
	h := &Hub{opts: o, log: o.Log, hosts: map[string]bool{}, budget: newBudgets(o.Budget, time.Now), closing: make(chan struct{})}
	h.opts.Health = o.Health.withDefaults()
	if o.MetricsTokenFile != "" {
		if h.metricsToken, err = readMetricsToken(o.MetricsTokenFile); err != nil {
			return nil, err
		}
	}
	if o.FleetMetricsTokenFile != "" {
		if h.fleetToken, err = readToken("--fleet-metrics-token-file", o.FleetMetricsTokenFile); err != nil {
			return nil, err
		}
	}
	h.health.init()
	if o.AuthDir == "" {
		for flag, host := range map[string]string{"--nats": nh, "--leaf": lh, "--http": hh} {
			if !isLoopback(host) {
				return nil, fmt.Errorf("%w: %s %s is not a loopback address; run with --auth DIR (create one with: pinkie keys init DIR --hosts ...)", ErrNotLoopback, flag, host)
			}
		}
	} else {
		a, err := LoadAuth(o.AuthDir)
		if err != nil {
			return nil, err
		}
		h.auth = a
		if st, err := os.Stat(filepath.Join(o.AuthDir, AuthFileName)); err == nil {
			h.authMod = st.ModTime()
		}
	}
	if h.schemas, err = schemas.Load(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	h.svcKey, err = nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	if h.gateKP, err = nkeys.CreateUser(); err != nil {
		return nil, err
	}
	if h.webKP, err = nkeys.CreateUser(); err != nil {
		return nil, err
	}
	sopts := &server.Options{
		ServerName:         cmp.Or(o.ServerName, "pinkie-hub"),
		Host:               nh,
		Port:               randomPort(np),
		JetStream:          true,
		JetStreamDomain:    events.HubDomain,
		StoreDir:           filepath.Join(o.DataDir, "jetstream"),
		JetStreamMaxStore:  o.MaxStore,
		JetStreamMaxMemory: o.MaxMemory,
		SyncAlways:         o.SyncAlways,
		MaxPayload:         int32(max(o.MaxEventBytes*2, 1<<20)),
		FeatureFlags:       map[string]bool{"js_api_reply_v2": true},
		LeafNode:           server.LeafNodeOpts{Host: lh, Port: randomPort(lp), NoAdvertise: true, Compression: server.CompressionOpts{Mode: o.LeafCompression}},
		// nats-server caps a stream at 1,000 consumers unless told
		// otherwise, and DEPLOY holds one per host: a fleet of 1,000
		// hosts could not deploy to its last ones. Clients' consumers
		// are bounded by the gate (gateMaxConsumers).
		JetStreamLimits: server.JSLimitOpts{DefaultMaxConsumers: -1},
	}
	if h.auth != nil {
		pub, _ := h.svcKey.PublicKey()
		gpub, _ := h.gateKP.PublicKey()
		wpub, _ := h.webKP.PublicKey()
		if sopts.Accounts, sopts.Nkeys, err = nkeyUsers(h.auth, pub, gpub, wpub); err != nil {
			return nil, err
		}
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("hub: --tls-cert and --tls-key go together")
	}
	var tc *tls.Config
	if o.TLSCert != "" {
		if tc, err = serverTLS(o.TLSCert, o.TLSKey); err != nil {
			return nil, err
		}
		sopts.TLS, sopts.TLSConfig, sopts.TLSTimeout = true, tc, 5
		sopts.LeafNode.TLSConfig, sopts.LeafNode.TLSTimeout = tc.Clone(), 5
	}
	if err := h.configureCluster(sopts, tc); err != nil {
		return nil, err
	}
	if h.upgrade {
		if err := h.upgradeStandalone(ctx, sopts); err != nil {
			return nil, err
		}
	}
	if h.srv, err = startServer(sopts, o.Log, slices.Concat(hubServerQuiet, clusterQuiet)...); err != nil {
		return nil, err
	}
	if !h.clustered() {
		// A cluster's stores are lowered by their leader's updates, not
		// by a standalone server on one node's copy.
		if h.srv, err = fitReservations(h.srv, sopts, limitsFor(o.MaxStore), o.Log); err != nil {
			return nil, err
		}
	}
	// Pin the ports a random choice resolved, so a reload keeps them.
	h.sopts = sopts.Clone()
	if vz, err := h.srv.Varz(nil); err == nil {
		h.sopts.Port, h.sopts.LeafNode.Port = vz.Port, vz.LeafNode.Port
	}
	if err := h.connect(); err != nil {
		h.Close()
		return nil, err
	}
	if h.auth != nil {
		if err := h.startGate(); err != nil {
			h.Close()
			return nil, err
		}
	}
	h.metrics = newHubMetrics(h)
	if err := h.untilFormed(ctx, "create streams", h.ensureStreams); err != nil {
		h.Close()
		return nil, err
	}
	h.orders = newBuildOrderIndex(h.js)
	h.check = o.IngestCheck(IngestCheckEnv{Schemas: h.schemas, MaxEventBytes: o.MaxEventBytes, Known: h.sources, Orders: h.orders})
	runCtx, cancel := context.WithCancel(context.Background())
	h.mu.Lock()
	h.stop, h.runCtx = cancel, runCtx
	h.mu.Unlock()
	if !h.clustered() {
		if err := h.startIngest(runCtx); err != nil {
			h.Close()
			return nil, err
		}
	}
	if err := h.startNixPut(); err != nil {
		h.Close()
		return nil, err
	}
	if err := h.startNixCacheService(runCtx); err != nil {
		h.Close()
		return nil, err
	}
	if err := h.startNixRetention(runCtx); err != nil {
		h.Close()
		return nil, err
	}
	if err := h.startHTTP(hh, o.HTTPAddr); err != nil {
		h.Close()
		return nil, err
	}
	h.wg.Add(4)
	go h.watchHosts(runCtx)
	go h.runBudget(runCtx)
	go h.watchConsumers(runCtx)
	go h.watchHealth(runCtx)
	runService := func(ctx context.Context, s HubService) error {
		err := s.Run(ctx, h)
		if ctx.Err() == nil {
			h.health.serviceStopped(s.Name(), err, time.Now())
			if err != nil && storeErrorKind(err) == "full" {
				// A service that cannot write for want of room says the
				// store is full as much as a failed forward does.
				h.health.storeFailed(err, time.Now())
				h.metrics.storeErrors.WithLabelValues("full").Inc()
			}
		}
		return err
	}
	everyNode := o.Services
	if h.clustered() {
		// The once-only work runs on the hub leader (cluster.go).
		var leaderOnly []HubService
		leaderOnly, everyNode = splitServices(o.Services)
		h.wg.Add(1)
		go h.followLeadership(runCtx, leaderOnly, runService)
	}
	h.wg.Add(len(everyNode))
	runServices(runCtx, h.log, everyNode, HubService.Name, runService, h.wg.Done)
	h.log.Info("hub started", "nats", h.ClientURL(), "leaf", h.LeafURL(), "http", "http://"+h.HTTPAddr(),
		"data", o.DataDir, "auth", o.AuthDir != "", "hosts", len(h.hosts), "server", h.srv.Name(), "cluster", h.clustered(), "replicas", h.Replicas(),
		"leaf_compression", o.LeafCompression)
	return h, nil
}

func (h *Hub) connect() error {
	opts := []nats.Option{nats.InProcessServer(h.srv), nats.Name("pinkie-hub-services"), nats.MaxReconnects(-1)}
	if h.auth != nil {
		pub, _ := h.svcKey.PublicKey()
		opts = append(opts, nats.Nkey(pub, h.svcKey.Sign))
	}
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return fmt.Errorf("connect hub services: %w", err)
	}
	h.nc = nc
	// A store that fails to write does not answer a publish: give up on
	// its acknowledgement after a while, so the forward is retried.
	h.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("hub jetstream: %w", err)
	}
	return nil
}

// ensureStreams creates or updates every stream, KV bucket and the ingest
// consumer; it is idempotent and runs on every start.
func (h *Hub) ensureStreams(ctx context.Context) error {
	if h.clustered() && !h.srv.JetStreamIsLeader() {
		// Concurrent creations of one stream on a forming cluster can go
		// unanswered: the node of the JetStream meta leader creates them,
		// LeaderStream last, and the others wait for that.
		if _, err := h.js.Stream(ctx, LeaderStream); err != nil {
			return fmt.Errorf("wait for the meta leader's node to create the streams: %w", err)
		}
	} else if h.clustered() {
		// A node may be moving a single hub's streams in (upgrade.go).
		if err := h.awaitFormation(ctx); err != nil {
			return err
		}
	}
	for _, cfg := range hubStreams(limitsFor(h.opts.MaxStore)) {
		if _, err := h.js.CreateOrUpdateStream(ctx, h.replicated(cfg)); err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	for _, b := range Buckets {
		if _, err := h.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b, History: 5, Storage: jetstream.FileStorage, Replicas: h.Replicas()}); err != nil {
			return fmt.Errorf("create KV bucket %s: %w", b, err)
		}
	}
	var err error
	if h.nixCache, err = OpenNixCache(ctx, h.js, h.Replicas()); err != nil {
		return err
	}
	hosts := map[string]bool{}
	if h.auth != nil {
		for _, n := range h.auth.HostNames() {
			hosts[n] = true
		}
	} else {
		// Without an auth file, the hosts sourced before stay sourced.
		for _, host := range h.loadKnownHosts() {
			hosts[host] = true
		}
		if st, err := h.js.Stream(ctx, IngestStream); err == nil {
			for _, src := range st.CachedInfo().Config.Sources {
				if host, ok := hostOfSource(src.External); ok {
					hosts[host] = true
				}
			}
		}
	}
	if err := h.setIngestHosts(ctx, hosts); err != nil {
		return err
	}
	if h.clustered() {
		if _, err := h.js.CreateOrUpdateStream(ctx, h.leaderStreamConfig()); err != nil {
			return fmt.Errorf("create stream %s: %w", LeaderStream, err)
		}
		if err := h.releaseFormation(ctx); err != nil {
			return err
		}
	}
	return nil
}

// hostOfSource is the host whose OUTBOX a source of INGEST reads, from
// its API prefix $JS.pinkie_<host>.API.
func hostOfSource(ext *jetstream.ExternalStream) (string, bool) {
	if ext == nil {
		return "", false
	}
	d := strings.TrimSuffix(strings.TrimPrefix(ext.APIPrefix, "$JS."), ".API")
	host, ok := strings.CutPrefix(d, "pinkie_")
	return host, ok && events.ValidHost(host) == nil
}

// setIngestHosts makes INGEST source exactly these hosts, less those
// their ingest budget pauses.
func (h *Hub) setIngestHosts(ctx context.Context, hosts map[string]bool) error {
	h.srcMu.Lock()
	defer h.srcMu.Unlock()
	return h.setIngestHostsLocked(ctx, hosts)
}

func (h *Hub) setIngestHostsLocked(ctx context.Context, hosts map[string]bool) error {
	if h.sourcingStopped {
		return nil
	}
	names := make([]string, 0, len(hosts))
	sourced := make([]string, 0, len(hosts))
	for n := range hosts {
		names = append(names, n)
		if h.budget.sourced(n) {
			sourced = append(sourced, n)
		}
	}
	sort.Strings(names)
	sort.Strings(sourced)
	// A hub restarted under a thousand reconnecting agents may be too
	// busy to answer the stream update in time: retried, not fatal.
	if err := h.whileBusy(ctx, fmt.Sprintf("configure %s sources for %d hosts", IngestStream, len(sourced)), func(ctx context.Context) error {
		return h.configureIngest(ctx, sourced)
	}); err != nil {
		return err
	}
	h.mu.Lock()
	h.hosts = hosts
	h.mu.Unlock()
	if h.auth == nil {
		b, _ := json.Marshal(names)
		if err := writeFileAtomic(filepath.Join(h.opts.DataDir, knownHostsFile), b, 0o600); err != nil {
			h.log.Warn("remember sourced hosts", "err", err)
		}
	}
	return nil
}

// configureIngest sets INGEST's sources. On a cluster only the leader
// does (its budgets pause and resume hosts); another node only creates
// INGEST when it is missing.
func (h *Hub) configureIngest(ctx context.Context, sourced []string) error {
	cfg := h.replicated(ingestConfig(sourced, limitsFor(h.opts.MaxStore).ingest))
	if !h.Leading() {
		_, err := h.js.Stream(ctx, IngestStream)
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
	}
	_, err := h.js.CreateOrUpdateStream(ctx, cfg)
	return err
}

// knownHostsFile remembers, without an auth file, which hosts INGEST
// sources: the sources are removed at every clean shutdown.
const knownHostsFile = "hosts.json"

func (h *Hub) loadKnownHosts() []string {
	b, err := os.ReadFile(filepath.Join(h.opts.DataDir, knownHostsFile))
	if err != nil {
		return nil
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		h.log.Warn("read sourced hosts", "file", knownHostsFile, "err", err)
		return nil
	}
	var out []string
	for _, n := range names {
		if events.ValidHost(n) == nil {
			out = append(out, n)
		}
	}
	return out
}

// stopSourcing removes INGEST's sources before the server shuts down.
// nats-server stops JetStream before it closes leaf connections, so a
// source still flowing at that moment could have an agent's events
// acknowledged (and dropped from its OUTBOX) without their being stored.
// Without sources nothing flows; the next start adds them again and each
// resumes from its agent's consumer, where it stopped.
func (h *Hub) stopSourcing(deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	h.srcMu.Lock()
	h.sourcingStopped = true
	_, err := h.js.CreateOrUpdateStream(ctx, ingestConfig(nil, limitsFor(h.opts.MaxStore).ingest))
	h.srcMu.Unlock()
	if err != nil {
		h.log.Warn("stop sourcing before shutdown", "err", err)
		return
	}
	// Let messages already received be stored before JetStream stops.
	if d := time.Now().Add(2 * time.Second); d.Before(deadline) {
		deadline = d
	}
	for time.Now().Before(deadline) {
		st, err := h.js.Stream(ctx, IngestStream)
		if err != nil || len(st.CachedInfo().Sources) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Hosts returns the hosts the hub sources events from.
func (h *Hub) Hosts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.hosts))
	for n := range h.hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// watchHosts keeps the sourced hosts current: with an auth file, it
// reloads the file when it changes (new keys take effect without a
// restart); without one, it adds every agent that connects.
func (h *Hub) watchHosts(ctx context.Context) {
	defer h.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := h.refreshHosts(ctx); err != nil && ctx.Err() == nil {
			h.log.Error("refresh hosts", "err", err)
		}
	}
}

func (h *Hub) refreshHosts(ctx context.Context) error {
	if h.auth != nil {
		p := filepath.Join(h.opts.AuthDir, AuthFileName)
		st, err := os.Stat(p)
		if err != nil || st.ModTime().Equal(h.authMod) {
			return err
		}
		a, err := LoadAuth(h.opts.AuthDir)
		if err != nil {
			return fmt.Errorf("reload auth file (keeping the previous one): %w", err)
		}
		newOpts := h.sopts.Clone()
		pub, _ := h.svcKey.PublicKey()
		gpub, _ := h.gateKP.PublicKey()
		wpub, _ := h.webKP.PublicKey()
		if newOpts.Accounts, newOpts.Nkeys, err = nkeyUsers(a, pub, gpub, wpub); err != nil {
			return err
		}
		if err := h.srv.ReloadOptions(newOpts); err != nil {
			return fmt.Errorf("apply new auth file: %w", err)
		}
		h.auth, h.authMod = a, st.ModTime()
		hosts := map[string]bool{}
		for _, n := range a.HostNames() {
			hosts[n] = true
		}
		h.log.Info("auth file reloaded", "hosts", len(hosts))
		return h.setIngestHosts(ctx, hosts)
	}
	connected := h.connectedAgents()
	h.mu.Lock()
	hosts := map[string]bool{}
	changed := false
	for n := range h.hosts {
		hosts[n] = true
	}
	for n := range connected {
		if !hosts[n] {
			hosts[n], changed = true, true
		}
	}
	h.mu.Unlock()
	if !changed {
		return nil
	}
	h.log.Info("new agent connected; sourcing its events", "hosts", len(hosts))
	return h.setIngestHosts(ctx, hosts)
}

// connectedAgents returns the hosts with a leaf connection, by the server
// name agents give themselves (pinkie-agent-<host>). With auth, a host's
// key pins what it may send, whatever name it claims.
func (h *Hub) connectedAgents() map[string]bool {
	out := map[string]bool{}
	lz, err := h.srv.Leafz(nil)
	if err != nil {
		return out
	}
	for _, l := range lz.Leafs {
		if host, ok := strings.CutPrefix(l.Name, agentServerPrefix); ok && events.ValidHost(host) == nil {
			out[host] = true
		}
	}
	return out
}

// ClientURL is the nats:// URL clients connect to.
func (h *Hub) ClientURL() string { return h.srv.ClientURL() }

// LeafURL is the nats-leaf:// URL agents connect to.
func (h *Hub) LeafURL() string {
	scheme := "nats-leaf"
	if h.sopts.LeafNode.TLSConfig != nil {
		scheme = "tls"
	}
	return fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(h.sopts.LeafNode.Host, fmt.Sprint(h.sopts.LeafNode.Port)))
}

// HTTPAddr is the address of the HTTP listener.
func (h *Hub) HTTPAddr() string { return h.httpLn.Addr().String() }

// Server returns the embedded nats-server.
func (h *Hub) Server() *server.Server { return h.srv }

// JetStream returns the hub's own in-process JetStream client.
func (h *Hub) JetStream() jetstream.JetStream { return h.js }

// Conn returns the hub's own in-process connection.
func (h *Hub) Conn() *nats.Conn { return h.nc }

// Close stops the hub cleanly: the ingest check finishes what it took, the
// HTTP server stops, and the store is flushed and closed. It returns within
// about closeTimeout even when the store cannot take writes: forwards still
// failing are left unacknowledged, and INGEST delivers them again at the
// next start. It is safe to call more than once.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.closing)
	h.mu.Unlock()
	start := time.Now()
	if h.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = h.http.Shutdown(ctx)
		cancel()
	}
	if h.js != nil && h.srv != nil && h.srv.JetStreamEnabled() && !h.clustered() {
		// On a cluster INGEST's sources stay: the next leader's copy of
		// INGEST goes on sourcing, and this node's share of the stream
		// is replicated, not the only one.
		h.stopSourcing(time.Now().Add(3 * time.Second))
	}
	h.ingestMu.Lock()
	h.stopIngest(start.Add(closeTimeout - 3*time.Second))
	h.ingestMu.Unlock()
	if h.stop != nil {
		h.stop()
	}
	waited := make(chan struct{})
	go func() { h.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(max(time.Until(start.Add(closeTimeout-time.Second)), time.Second)):
		h.log.Warn("hub services did not stop in time; stopping the server under them")
	}
	if h.gateNC != nil {
		h.gateNC.Close()
	}
	if h.nc != nil {
		_ = h.nc.Drain()
		h.nc.Close()
	}
	if h.srv != nil {
		stopServer(h.srv)
	}
	h.log.Info("hub stopped", "took", time.Since(start).Round(time.Millisecond))
}

// closeTimeout bounds Close before the server itself shuts down (which
// flushes and closes the store, usually in well under a second).
const closeTimeout = 12 * time.Second
