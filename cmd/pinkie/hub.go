package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/streams"
)

func defaultDataDir(a *app, fallback string) string {
	// systemd's StateDirectory= sets STATE_DIRECTORY.
	if d := a.getenv("STATE_DIRECTORY"); d != "" {
		return d
	}
	return fallback
}

func runHub(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("hub", "", `
Run the hub: an embedded nats-server with JetStream (domain "hub") holding the
fleet's streams (INGEST, HOSTS, DEPLOY, ALERTS, DEADLETTER, FLEET, ALERTLOG) and KV buckets, a
client listener, a leaf-node listener for agents, and HTTP with the web
dashboard (docs/dashboard.md), /healthz and Prometheus /metrics. Without an
identity provider (the config's dashboard.oidc) the hub prints a one-time
login link for the local admin on its standard error. Every event an agent sends is checked on ingest: valid
events go to HOSTS on pinkie.host.<host>.<kind>, others to
pinkie.deadletter.<host> with the reason.

Without --auth the hub listens on loopback only. With --auth DIR (made by
'pinkie keys init') every client and agent must present an nkey; the auth file
is re-read when it changes, so 'pinkie keys add-host' needs no restart.
SIGTERM or Ctrl-C shuts down cleanly, within about 15 seconds even when the
store is full: nothing acknowledged is lost (a forward still failing is left
in INGEST for the next start).

/healthz answers 503 with the reasons when JetStream is disabled, the ingest
check lags (--ingest-lag-max, --ingest-lag-max-age), a consumer the hub owns is
missing (the hub recreates it), the store is full or failing, or a hub
service restarts in a loop. When nats-server disables JetStream (the disk is
full) or the store keeps failing to write, the hub exits with status 1 so that
its service manager restarts it once there is room again.

/metrics and /healthz name hosts only to clients on loopback or presenting
the bearer token of --metrics-token-file; everyone else gets status and
numbers summed over hosts. /metrics/fleet is the fleet's state for
Prometheus (filesystems, memory, load, drives, pools, arrays, databases,
guests, deploys, alerts; node_exporter's names where it has them, with a
host label): loopback clients, or the bearer token of
--fleet-metrics-token-file, else 401.

Clustered hub: run three (or five) hubs, each with its own --server-name,
--data and a route listener --cluster HOST:PORT, all given every node's
route URL with --routes (repeat or comma-separate; a node's own URL may be
among them), and the same --auth directory: its cluster.secret (made by
'pinkie keys init', or on first use) is the routes' password; with
--tls-cert the routes speak mutual TLS too (--cluster-ca names the CA).
Streams and buckets then have 3 replicas (1 when --routes names fewer
than three nodes; --replicas overrides). Every node serves clients,
agents (give agents every node's leaf URL), HTTP and the dashboard; the
ingest check, projections, alerter, notifier and deploy planner run on one
node at a time, the one leading the HUBLEADER stream's Raft group, and move
to another when it fails. A node waits --cluster-wait at start for the
cluster to form, then exits with status 1 (its service manager restarts it).
A fresh cluster needs all its nodes up once (to place the replicas); after
that any majority runs it. A single hub's data directory moves into a new
cluster in place: start it with --cluster and every node's route first,
then the new nodes (see the README, "From one hub to three").`)
	data := fs.String("data", cli.DefaultDataDir(a.getenv, "/var/lib/pinkie-hub"), "data directory for the JetStream store (env STATE_DIRECTORY)")
	natsAddr := fs.String("nats", "127.0.0.1:4222", "client listener `ADDR` (host:port; port 0 picks one)")
	leafAddr := fs.String("leaf", "127.0.0.1:7422", "leaf-node listener `ADDR` for agents")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP listener `ADDR` for the dashboard, /healthz and /metrics")
	tlsCert := fs.String("tls-cert", "", "certificate `FILE` (PEM): the client and leaf listeners speak TLS only")
	tlsKey := fs.String("tls-key", "", "private key `FILE` (PEM) for --tls-cert")
	auth := fs.String("auth", "", "auth `DIR` made by 'pinkie keys init' (required beyond loopback)")
	maxEvent := fs.Int("max-event-bytes", 64<<10, "largest event accepted; larger ones go to the dead letters")
	maxStore := fs.Int64("max-store", 10<<30, "JetStream file store limit in bytes; HOSTS may take 60 %, INGEST 15 %, DEADLETTER 5 %, the rest stays free for deploys, alerts and buckets")
	hostRate := fs.String("host-rate", fmt.Sprintf("%d,%d", streams.DefaultHostEventsPerSec, streams.DefaultHostBytesPerSec), "per-host ingest budget `EVENTS,BYTES` per second; a host over it is paused at its source (its events wait in its OUTBOX); 'off' disables")
	hostBurst := fs.String("host-burst", fmt.Sprintf("%d,%d", streams.DefaultHostBurstEvents, streams.DefaultHostBurstBytes), "what a host may send at once (catching up after an outage) before --host-rate applies: `EVENTS,BYTES`")
	hostCooldown := fs.Duration("host-cooldown", streams.DefaultHostCooldown, "least pause of a host over its budget; it doubles with each pause in a row, up to twice the time --host-rate takes to refill a tenth of --host-burst (100s with the defaults)")
	syncAlways := fs.Bool("sync-always", false, "fsync every write (survives power loss, slower)")
	metricsToken := fs.String("metrics-token-file", "", "`FILE` holding a bearer token that shows per-host detail on /metrics and /healthz to clients beyond loopback")
	fleetToken := fs.String("fleet-metrics-token-file", "", "`FILE` holding a bearer token that lets clients beyond loopback scrape /metrics/fleet (every host's state for Prometheus; loopback needs none)")
	lagMax := fs.Uint64("ingest-lag-max", 10000, "/healthz is not ok with more INGEST messages than this not yet checked")
	lagAge := fs.Duration("ingest-lag-max-age", time.Minute, "/healthz is not ok when the oldest unchecked INGEST message is older than this")
	configFile := fs.String("config", "", "hub configuration `FILE` (JSON: alert rules, notification channels, deploy and dashboard settings)")
	cacheBudget := fs.String("cache-budget", "", "`SIZE` the hub's Nix cache is held to (e.g. 20GiB); retention keeps the closures of each host's current and previous deploy and of deploys under way, and drops the rest oldest first (pinkie cache --help). Default: a tenth of --max-store")
	cacheGrace := fs.Duration("cache-grace", streams.DefaultNixCacheGrace, "fresh uploads to the Nix cache are kept this long whatever the deploy record says (a deploy names the paths it uploaded within seconds to minutes)")
	nixKey := fs.String("nix-signing-key", "", "the fleet's Nix secret key `FILE`, when it is not --auth DIR's nix-signing.sec (e.g. a systemd credential)")
	rebuildProjections := fs.Bool("rebuild-projections", false, "empty the projection buckets (pinkie-inventory, pinkie-drives, pinkie-alerts, pinkie-guests) and replay their streams from the start")
	serverName := fs.String("server-name", "", "this node's `NAME`, unique in a cluster (default pinkie-hub)")
	clusterAddr := fs.String("cluster", "", "route listener `ADDR` (host:port) of this node of a clustered hub")
	var routes cli.StringList
	fs.Var(&routes, "routes", "route `URL` of a node of the cluster, nats-route://HOST:PORT (repeat or comma-separate; list every node)")
	replicas := fs.Int("replicas", 0, "replicas of every stream and bucket (default: 3 on a cluster of three or more nodes, else 1)")
	clusterWait := fs.Duration("cluster-wait", 2*time.Minute, "how long a node waits at start for the cluster to elect a JetStream leader")
	leafCompression := fs.String("leaf-compression", "s2_auto", "S2 compression of agents' leaf connections: off, s2_auto (by round-trip time: none on a LAN, more on slower links), s2_fast, s2_better or s2_best. Every mode but off keeps encoder buffers per agent (about 5 MiB of hub memory each): use off for hundreds of agents on a LAN")
	clusterCA := fs.String("cluster-ca", "", "CA certificate `FILE` that signs the nodes' --tls-cert, trusted on routes (default: the system's)")
	mkLog := cli.LogFlags(fs, a.stderr)
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	budget, err := hostBudget(*hostRate, *hostBurst, *hostCooldown)
	if err != nil {
		return err
	}
	if *cacheGrace <= 0 {
		return cli.Usagef("--cache-grace %s: want more than 0", *cacheGrace)
	}
	if !slices.Contains(streams.LeafCompressionModes, *leafCompression) {
		return cli.Usagef("--leaf-compression %q: want one of %s", *leafCompression, strings.Join(streams.LeafCompressionModes, ", "))
	}
	var cacheBytes int64
	if *cacheBudget != "" {
		if cacheBytes, err = fleetview.ParseByteSize(*cacheBudget); err != nil {
			return cli.Usagef("--cache-budget: %v", err)
		}
		if cacheBytes > *maxStore {
			return cli.Usagef("--cache-budget %s is more than --max-store %d bytes: the cache lives in the hub's store", *cacheBudget, *maxStore)
		}
	}
	log, err := mkLog()
	if err != nil {
		return err
	}
	cfg, err := loadHubConfig(*configFile)
	if err != nil {
		return err
	}
	cfg.rebuildProjections = *rebuildProjections
	opts, err := withHubParts(streams.HubOptions{
		DataDir: *data, NATSAddr: *natsAddr, LeafAddr: *leafAddr, HTTPAddr: *httpAddr,
		AuthDir: *auth, TLSCert: *tlsCert, TLSKey: *tlsKey, MaxEventBytes: *maxEvent, MaxStore: *maxStore, SyncAlways: *syncAlways, Budget: budget, Log: log,
		MetricsTokenFile: *metricsToken, FleetMetricsTokenFile: *fleetToken, NixCacheBudget: cacheBytes, NixCacheGrace: *cacheGrace, NixSigningKeyFile: *nixKey, ServerName: *serverName, LeafCompression: *leafCompression,
		Cluster: streams.ClusterOptions{Addr: *clusterAddr, Routes: routes, Replicas: *replicas, Wait: *clusterWait, CA: *clusterCA},
		Health:  streams.HealthOptions{IngestLagMessages: *lagMax, IngestLagAge: *lagAge},
	}, cfg, a.stderr)
	if err != nil {
		return err
	}
	h, err := streams.StartHub(ctx, opts)
	if err != nil {
		if errors.Is(err, streams.ErrNotLoopback) || errors.Is(err, os.ErrNotExist) {
			return cli.Usagef("%v", err)
		}
		if errors.Is(err, streams.ErrClusterNotFormed) {
			// The service manager should try again: the other nodes may
			// be back by then.
			return cli.ExitError{Code: cli.ExitFinding, Err: err}
		}
		return cli.UsageExit(err)
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-h.Failed():
		log.Error("shutting down: the hub failed", "err", h.Err())
	}
	h.Close()
	if err := h.Err(); err != nil {
		return cli.ExitError{Code: cli.ExitFinding, Err: err}
	}
	return nil
}

// hostBudget reads --host-rate, --host-burst and --host-cooldown.
func hostBudget(rate, burst string, cooldown time.Duration) (streams.HostBudget, error) {
	if strings.TrimSpace(rate) == "off" {
		return streams.HostBudget{Off: true}, nil
	}
	var b streams.HostBudget
	var err error
	if b.EventsPerSec, b.BytesPerSec, err = eventsAndBytes("--host-rate", rate); err != nil {
		return b, err
	}
	if b.BurstEvents, b.BurstBytes, err = eventsAndBytes("--host-burst", burst); err != nil {
		return b, err
	}
	if cooldown <= 0 || cooldown > streams.MaxHostCooldown {
		return b, cli.Usagef("--host-cooldown %s: want more than 0 and at most %s", cooldown, streams.MaxHostCooldown)
	}
	b.Cooldown = cooldown
	return b, nil
}

// eventsAndBytes parses "EVENTS,BYTES" (both positive numbers).
func eventsAndBytes(flag, s string) (float64, float64, error) {
	ev, by, ok := strings.Cut(s, ",")
	e, err1 := strconv.ParseFloat(strings.TrimSpace(ev), 64)
	b, err2 := strconv.ParseFloat(strings.TrimSpace(by), 64)
	if !ok || err1 != nil || err2 != nil || !(e > 0) || !(b > 0) || math.IsInf(e, 0) || math.IsInf(b, 0) {
		return 0, 0, cli.Usagef("%s %q: want EVENTS,BYTES, two positive numbers (e.g. 100,262144)", flag, s)
	}
	return e, b, nil
}
