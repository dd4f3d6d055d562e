package streams

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// A clustered hub is several hub processes whose embedded nats-servers
// form one NATS cluster (routes between them) with Raft-replicated
// JetStream. Every node serves clients, agents' leaf connections, HTTP and
// the dashboard. What must happen once — the ingest check, INGEST's
// sources and budgets, projections, the alerter, the notifier, the deploy
// planner — runs on one node at a time, the hub leader: the node that
// leads the Raft group of the LeaderStream. Raft elects it, so there is
// no home-made lease and no clock to trust; when the leader dies or steps
// down (nats stream cluster step-down HUBLEADER), another node takes over
// from what the streams and consumers hold (each of these consumers
// resumes from its durable state, and every write they make carries a
// Nats-Msg-Id, so work done twice around a change of leader is stored
// once).
//
// Why one leader for all and not shared pull consumers: every one of
// these consumers is an ordered fold (the ingest check acknowledges
// cumulatively and keeps per-host order; projections and the alerter fold
// in stream order; the notifier keeps pending deliveries in memory; the
// planner folds DEPLOY), so none of them can split its work.

// LeaderStream is the stream whose Raft leader is the hub leader. It holds
// no messages.
const LeaderStream = events.StreamLeader

// ErrClusterNotFormed is returned by StartHub when the cluster did not
// elect a JetStream leader, or had too few nodes for the replicas, within
// the cluster's wait: a fault of the moment, not of the configuration.
var ErrClusterNotFormed = errors.New("the cluster did not form")

// ClusterName is the NATS cluster name every hub node uses.
const ClusterName = "pinkie-hub"

// RouteUser is the user name hub nodes present on their routes; the
// password is ClusterSecretFile in the auth directory.
const RouteUser = "pinkie-route"

// ClusterSecretFileName is the route password inside an auth directory.
// Every node must hold the same one (copy the auth directory).
const ClusterSecretFileName = "cluster.secret"

// ClusterSecretFile is where the route password of the auth directory dir
// is kept.
func ClusterSecretFile(dir string) string { return filepath.Join(dir, ClusterSecretFileName) }

// ClusterOptions configure a hub node's part in a cluster.
type ClusterOptions struct {
	// Addr is the route listener host:port. Empty: no cluster.
	Addr string
	// Routes are the other nodes' route URLs, nats-route://HOST:PORT
	// (this node's own may be among them).
	Routes []string
	// Replicas of every stream and bucket; 0 picks 3 when the cluster has
	// at least three nodes, else 1.
	Replicas int
	// Wait bounds how long the hub waits at start for the cluster to elect
	// a JetStream leader and have room for the replicas (default 2m).
	Wait time.Duration
	// CA is the CA certificate file that signs the nodes' route
	// certificates (with TLS: the hub's --tls-cert); empty trusts the
	// system's.
	CA string
}

// clustered reports whether the hub runs as a node of a cluster.
func (h *Hub) clustered() bool { return h.opts.Cluster.Addr != "" }

// Replicas is how many replicas the hub gives its streams and buckets.
func (h *Hub) Replicas() int { return max(h.replicas, 1) }

// Leading reports whether this node runs the hub's once-only work: always
// on a single node; on a cluster, while it leads LeaderStream.
func (h *Hub) Leading() bool { return !h.clustered() || h.leading.Load() }

// loadClusterSecret reads the route password, creating it when the auth
// directory has none yet.
func loadClusterSecret(dir string) (string, error) {
	p := ClusterSecretFile(dir)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		if err := newClusterSecret(p); err != nil {
			return "", err
		}
		b, err = os.ReadFile(p)
	}
	if err != nil {
		return "", fmt.Errorf("read route password: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < 16 {
		return "", fmt.Errorf("route password %s: shorter than 16 characters", p)
	}
	return s, nil
}

// newClusterSecret writes a new random route password to path, unless
// one is there already.
func newClusterSecret(path string) error {
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return fmt.Errorf("make route password: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write route password: %w", err)
	}
	_, err = f.WriteString(base64.RawURLEncoding.EncodeToString(buf) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write route password %s: %w", path, err)
	}
	return nil
}

// standaloneStore reports whether the JetStream store at dir was made by
// a server outside a cluster: it holds streams but no meta group.
func standaloneStore(dir string) bool {
	streams, err := os.ReadDir(filepath.Join(dir, "jetstream", server.DEFAULT_GLOBAL_ACCOUNT, "streams"))
	if err != nil || len(streams) == 0 {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, "jetstream", server.DEFAULT_SYSTEM_ACCOUNT, "_js_"))
	return errors.Is(err, os.ErrNotExist)
}

// parseRoutes checks the route URLs and returns them with the route
// credential in them.
func parseRoutes(routes []string, password string) ([]*url.URL, error) {
	var out []*url.URL
	seen := map[string]bool{}
	for _, r := range routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || u.Port() == "" {
			return nil, fmt.Errorf("--routes %q: want nats-route://HOST:PORT", r)
		}
		if u.Scheme != "nats-route" && u.Scheme != "nats" && u.Scheme != "tls" {
			return nil, fmt.Errorf("--routes %q: unknown scheme %q, want nats-route://", r, u.Scheme)
		}
		if u.User != nil {
			return nil, fmt.Errorf("--routes %q: leave the credential out; the hub uses the auth directory's %s", r, ClusterSecretFileName)
		}
		if seen[u.Host] {
			continue
		}
		seen[u.Host] = true
		u.User = url.UserPassword(RouteUser, password)
		out = append(out, u)
	}
	return out, nil
}

// otherRoutes drops this node's own route (at own) from routes:
// nats-server counts the configured routes to size a new cluster's
// JetStream meta group, and its own route among them keeps a cluster
// with a node down from electing a meta leader.
func otherRoutes(own string, routes []*url.URL) []*url.URL {
	_, ownPort, _ := net.SplitHostPort(own)
	var out []*url.URL
	for _, r := range routes {
		if r.Port() == ownPort && isOwnHost(r.Hostname(), own) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// clusterSize is how many nodes the route list names, this one included
// whether or not it is listed.
func clusterSize(own string, routes []*url.URL) int { return len(otherRoutes(own, routes)) + 1 }

// isOwnHost reports whether host names this machine's listener at own.
func isOwnHost(host, own string) bool {
	ownHost, _, _ := net.SplitHostPort(own)
	if host == ownHost {
		return true
	}
	if ownHost != "" && ownHost != "0.0.0.0" && ownHost != "::" {
		return false
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ip := range ips {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return true
			}
		}
	}
	return false
}

// configureCluster adds the cluster listener, routes and their
// credential (and TLS) to the server options, and sets h.replicas.
func (h *Hub) configureCluster(sopts *server.Options, tc *tls.Config) error {
	c := h.opts.Cluster
	if c.Addr == "" {
		if len(c.Routes) > 0 {
			return errors.New("hub: --routes needs --cluster (this node's route listener)")
		}
		if c.Replicas > 1 {
			return fmt.Errorf("hub: --replicas %d needs a cluster (--cluster, --routes)", c.Replicas)
		}
		if upgradePending(h.opts.DataDir) {
			return fmt.Errorf("hub: --data %s is half way into a cluster (%s). Start it again with the same --cluster and --routes to finish, or undo it: %s",
				h.opts.DataDir, filepath.Join(h.opts.DataDir, upgradeDirName), undoUpgrade(h.opts.DataDir))
		}
		h.replicas = 1
		return nil
	}
	if h.opts.AuthDir == "" {
		return errors.New("hub: a cluster (--cluster) needs --auth DIR: the nodes authenticate their routes with its " + ClusterSecretFileName)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("hub: --replicas %d: want 1 to 5 (JetStream's limit)", c.Replicas)
	}
	ch, cp, err := splitHostPort("--cluster", c.Addr)
	if err != nil {
		return err
	}
	secret, err := loadClusterSecret(h.opts.AuthDir)
	if err != nil {
		return err
	}
	routes, err := parseRoutes(c.Routes, secret)
	if err != nil {
		return err
	}
	own := net.JoinHostPort(ch, fmt.Sprint(cp))
	size := clusterSize(own, routes)
	h.replicas = c.Replicas
	if h.replicas == 0 {
		h.replicas = 1
		if size >= 3 {
			h.replicas = 3
		}
	}
	if h.replicas > size {
		return fmt.Errorf("hub: --replicas %d but --routes names a cluster of %d nodes", h.replicas, size)
	}
	if size < 2 {
		return fmt.Errorf("hub: --routes names no node but this one: nats-server forms no JetStream cluster of one node (its meta group waits for a second); give every node's route, nats-route://HOST:PORT")
	}
	if standaloneStore(filepath.Join(h.opts.DataDir, "jetstream")) || upgradePending(h.opts.DataDir) {
		// A single hub's streams: StartHub moves them into the new
		// cluster (upgrade.go).
		h.upgrade = true
	} else if err := removeUpgradeLeftovers(h.opts.DataDir); err != nil {
		return err
	}
	sopts.Cluster = server.ClusterOpts{
		Name: ClusterName, Host: ch, Port: randomPort(cp),
		Username: RouteUser, Password: secret, AuthTimeout: 5,
		// Routes are between hub nodes only: no gossip of routes the
		// operator did not list.
		NoAdvertise: true,
	}
	sopts.Routes = otherRoutes(own, routes)
	if tc != nil {
		rc := tc.Clone()
		pool, err := clientTLS(c.CA)
		if err != nil {
			return fmt.Errorf("--cluster-ca: %w", err)
		}
		// Mutual TLS: a node presents its certificate and checks the
		// other's against the CA (the system's when --cluster-ca is empty).
		rc.RootCAs, rc.ClientCAs = pool.RootCAs, pool.RootCAs
		rc.ClientAuth = tls.RequireAndVerifyClientCert
		sopts.Cluster.TLSConfig, sopts.Cluster.TLSTimeout = rc, 5
	}
	return nil
}

// replicated sets a stream config's replicas to the hub's.
func (h *Hub) replicated(cfg jetstream.StreamConfig) jetstream.StreamConfig {
	cfg.Replicas = h.Replicas()
	return cfg
}

// leaderStreamConfig is LeaderStream: no messages, only a Raft group.
func (h *Hub) leaderStreamConfig() jetstream.StreamConfig {
	return h.replicated(jetstream.StreamConfig{
		Name: LeaderStream, Description: "empty; its Raft leader is the hub leader, which runs the ingest check, projections, alerter, notifier and planner",
		Subjects: []string{events.LeaderSubject}, Storage: jetstream.FileStorage, MaxMsgs: 1, Discard: jetstream.DiscardNew,
	})
}

// untilFormed retries step until it succeeds, the cluster's wait runs out,
// or ctx ends: at start, a cluster may still be electing its JetStream
// leader or waiting for enough nodes to place the replicas.
func (h *Hub) untilFormed(ctx context.Context, what string, step func(context.Context) error) error {
	if !h.clustered() {
		return step(ctx)
	}
	wait := h.opts.Cluster.Wait
	if wait <= 0 {
		wait = 2 * time.Minute
	}
	deadline := time.Now().Add(wait)
	logged := time.Time{}
	// A request sent before the cluster has a JetStream meta leader gets
	// no answer: wait for one first.
	for !h.srv.JetStreamIsCurrent() && time.Now().Before(deadline) {
		if time.Since(logged) > 10*time.Second {
			h.log.Info("waiting for the cluster to elect a JetStream leader", "step", what)
			logged = time.Now()
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	for pause := 100 * time.Millisecond; ; pause = min(pause*2, 2*time.Second) {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := step(sctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w within %s (is a JetStream leader elected, are %d nodes up? see 'nats server report jetstream'): %w", what, ErrClusterNotFormed, wait, h.Replicas(), err)
		}
		if time.Since(logged) > 10*time.Second {
			h.log.Info("waiting for the cluster to form", "step", what, "replicas", h.Replicas(), "err", err)
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

// leaderServices are the services that run on the leader only; the rest
// (EveryNode) run on every node.
func splitServices(all []HubService) (leader, every []HubService) {
	for _, s := range all {
		if e, ok := s.(EveryNodeService); ok && e.EveryNode() {
			every = append(every, s)
		} else {
			leader = append(leader, s)
		}
	}
	return leader, every
}

// EveryNodeService is a HubService that runs on every node of a clustered
// hub (the dashboard). Other services run on the hub leader only.
type EveryNodeService interface {
	HubService
	EveryNode() bool
}

// followLeadership runs the once-only work while this node leads
// LeaderStream, and stops it when it does not. It polls the Raft state
// (cheap, local) every leaderPoll.
func (h *Hub) followLeadership(ctx context.Context, services []HubService, runService func(context.Context, HubService) error) {
	defer h.wg.Done()
	var stop func()
	t := time.NewTicker(leaderPoll)
	defer t.Stop()
	var peers []string
	for n := 0; ; n++ {
		if n%20 == 0 {
			peers = h.logPeers(peers)
		}
		h.routeQuorum.Store(h.hasRouteQuorum())
		lead := h.leadsNow()
		switch {
		case lead && stop == nil:
			stop = h.lead(ctx, services, runService)
		case !lead && stop != nil:
			h.log.Info("this node no longer leads the hub; stopping the ingest check and the hub's consumers")
			stop()
			stop = nil
		case stop != nil && h.ingestFenced.Swap(false):
			// The lead was lost and won back between two polls: the
			// check stopped taking from INGEST; start over.
			h.log.Info("this node lost and regained the lead; restarting the ingest check and the hub's consumers")
			stop()
			stop = nil
		}
		select {
		case <-ctx.Done():
			if stop != nil {
				stop()
			}
			return
		case <-t.C:
		}
	}
}

const leaderPoll = 250 * time.Millisecond

// leadsNow reports whether this node leads the hub at this instant (its
// Raft state, not the last poll): the ingest check asks before every
// fetch and every forward, so a node that has lost the lead stops taking
// from INGEST's consumer, which a new leader recreates under the same
// name. A single hub always leads.
//
// A leader cut off from the others keeps its Raft lead until its
// lost-quorum check (about 20 s here), while the majority elects another:
// a node leads only while it also has routes to a majority of the nodes
// (routeQuorum, from the last poll), so once-only work that needs no
// quorum of its own (the notifier's deliveries) does not run twice.
func (h *Hub) leadsNow() bool {
	return !h.clustered() || (h.routeQuorum.Load() && h.srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, LeaderStream))
}

// hasRouteQuorum reports whether this node has routes to enough others
// to make a majority of the cluster with itself.
func (h *Hub) hasRouteQuorum() bool {
	rz, err := h.srv.Routez(nil)
	if err != nil {
		return false
	}
	peers := map[string]bool{}
	for _, r := range rz.Routes {
		if r.RemoteName != "" {
			peers[r.RemoteName] = true
		}
	}
	size := len(h.sopts.Routes) + 1
	return 2*(len(peers)+1) > size
}

// fenced logs that the ingest check stopped for want of the lead.
func (h *Hub) fenced() {
	h.ingestFenced.Store(true)
	h.log.Warn("this node lost the lead: its ingest check stops taking from INGEST (the new leader goes on from the ack floor)")
}

// takeoverGrace is how long a new leader waits before it recreates
// INGEST's consumer: the old leader hears of the new term within it and
// stops fetching (leadsNow), so no two checks take from the consumer.
const takeoverGrace = 2 * time.Second

// clusterQuiet are nats-server messages a clustered hub logs at debug:
// the server repeats a failed route connection every second for as long
// as a node is down; the hub logs the nodes it has routes to when they
// change (logPeers).
var clusterQuiet = []string{"Error trying to connect to route"}

// logPeers logs the nodes this one has routes to when they differ from
// before, and returns them.
func (h *Hub) logPeers(before []string) []string {
	rz, err := h.srv.Routez(nil)
	if err != nil {
		return before
	}
	seen := map[string]bool{}
	var now []string
	for _, r := range rz.Routes {
		if r.RemoteName != "" && !seen[r.RemoteName] {
			seen[r.RemoteName] = true
			now = append(now, r.RemoteName)
		}
	}
	slices.Sort(now)
	if slices.Equal(now, before) {
		return before
	}
	want := len(h.sopts.Routes) // the other nodes
	if len(now) < want {
		h.log.Warn("cluster routes", "connected", now, "of", want)
	} else {
		h.log.Info("cluster routes", "connected", now)
	}
	return now
}

// lead starts the once-only work and returns what stops it.
func (h *Hub) lead(parent context.Context, services []HubService, runService func(context.Context, HubService) error) func() {
	h.log.Info("this node leads the hub: it runs the ingest check and the hub's consumers", "server", h.srv.Name())
	ctx, cancel := context.WithCancel(parent)
	h.leading.Store(true)
	h.ingestFenced.Store(false)
	var svcs sync.WaitGroup
	setupDone := make(chan struct{})
	go func() {
		defer close(setupDone)
		// INGEST's sources and the replicas of buckets made before this
		// node led, then the check: each retried until it works. The
		// check runs in the hub's own context: losing the lead stops it
		// the way a clean shutdown does (what it took is finished).
		sleepCtx(ctx, takeoverGrace)
		for pause := 200 * time.Millisecond; ctx.Err() == nil; pause = min(pause*2, 5*time.Second) {
			err := h.resyncSources(ctx)
			if err == nil {
				err = h.raiseReplicas(ctx)
			}
			if err == nil {
				err = h.startIngest(parent)
			}
			if err == nil {
				break
			}
			h.log.Error("take over as hub leader; retrying", "err", err, "after", pause)
			sleepCtx(ctx, pause)
		}
		if ctx.Err() != nil {
			return
		}
		svcs.Add(len(services))
		runServices(ctx, h.log, services, HubService.Name, runService, svcs.Done)
	}()
	return func() {
		h.leading.Store(false)
		cancel()
		<-setupDone
		h.ingestMu.Lock()
		h.stopIngest(time.Now().Add(5 * time.Second))
		h.ingestMu.Unlock()
		h.forgetKeptConsumers()
		done := make(chan struct{})
		go func() { svcs.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			h.log.Warn("hub services did not stop within 10s of losing the lead")
		}
	}
}

// forgetKeptConsumers stops watching the consumers this node made while
// it led: the next leader keeps them.
func (h *Hub) forgetKeptConsumers() {
	h.watch.mu.Lock()
	h.watch.kept = nil
	h.watch.mu.Unlock()
}

// raiseReplicas gives every stream of the hub's account fewer replicas
// than the hub's its due: streams and buckets made by a single node before
// it joined a cluster, or before --replicas was raised.
func (h *Hub) raiseReplicas(ctx context.Context) error {
	want := h.Replicas()
	if want <= 1 {
		return nil
	}
	names := h.js.StreamNames(ctx)
	var low []string
	for n := range names.Name() {
		low = append(low, n)
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	for _, n := range low {
		st, err := h.js.Stream(ctx, n)
		if err != nil {
			return fmt.Errorf("stream %s: %w", n, err)
		}
		cfg := st.CachedInfo().Config
		if cfg.Replicas >= want {
			continue
		}
		h.log.Info("raising a stream's replicas", "stream", n, "from", cfg.Replicas, "to", want)
		cfg.Replicas = want
		if _, err := h.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("raise replicas of %s to %d: %w", n, want, err)
		}
	}
	return nil
}

// clusterProblems is what /healthz reports of this node's part in the
// cluster: not ok while its copy of the JetStream meta data, streams or
// consumers is not current (a restarted node catching up), so a rolling
// restart can wait for /healthz before stopping the next node.
func (h *Hub) clusterProblems() []string {
	if !h.clustered() {
		return nil
	}
	st := h.srv.Healthz(&server.HealthzOptions{})
	if st == nil || st.Status == "ok" {
		return nil
	}
	why := st.Error
	if why == "" && len(st.Errors) > 0 {
		why = st.Errors[0].Error
	}
	return []string{"this cluster node is not current with the others (catching up, or no quorum): " + why}
}
