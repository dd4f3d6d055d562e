package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// Moving a single hub's data directory into a cluster, in place.
//
// A cluster node drops the streams its JetStream meta group does not know
// (as orphans, about 30 s after it starts), so a single hub's store cannot
// simply be opened by a clustered server; and nats-server forms no
// cluster of one node (a new meta group waits for a second peer), so the
// streams move in when the cluster first forms. The first time a hub
// starts with --cluster on a single hub's data directory it
//
//  1. opens the old store with a private standalone server (no listener)
//     and takes a snapshot of every stream, consumers included, into
//     DATA/upgrade/ (each fsynced; snapshots.json, written last, says they
//     are complete);
//  2. moves DATA/jetstream aside to DATA/jetstream.single-hub (kept as a
//     backup);
//  3. starts the clustered server on a new DATA/jetstream without the leaf
//     listener (no agent sends while it imports) and its client listener
//     on a private loopback port, waits for the cluster's meta leader,
//     claims the cluster's formation (FormationStream: the other nodes
//     create no stream while it is claimed), and restores each stream,
//     with its consumers, sequences and acknowledgement floors;
//  4. removes DATA/upgrade, releases the claim, and starts as usual.
//
// Each step can be cut short by a crash: the same command started again
// takes snapshots again while snapshots.json is missing, moves the store
// while it is still in place, and restores only the streams the cluster
// does not yet hold as they were. A stream the cluster holds that this
// node did not restore (the cluster formed without it) stops the upgrade:
// it would be two histories.

const (
	upgradeDirName  = "upgrade"
	upgradeManifest = "snapshots.json"
	// SingleHubBackupDir is where, inside a hub's data directory, the
	// single hub's store is kept after its streams moved into a cluster.
	SingleHubBackupDir = "jetstream.single-hub"
)

// upgradeSnapshot is one stream's snapshot as snapshots.json lists it.
type upgradeSnapshot struct {
	Stream  string `json:"stream"`
	Msgs    uint64 `json:"msgs"`
	LastSeq uint64 `json:"last_seq"`
	// Durables are the stream's durable consumers (ephemeral ones may
	// be gone by the time the restore is checked).
	Durables []string `json:"durables"`
	Bytes    int64    `json:"bytes"`
}

// upgradePending reports whether an upgrade of the data directory dir was
// cut short after its snapshots were complete.
func upgradePending(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, upgradeDirName, upgradeManifest))
	return err == nil
}

// upgradeStandalone moves the single hub's streams in the data directory
// into the new cluster sopts describes (upgrade.go's comment).
func (h *Hub) upgradeStandalone(ctx context.Context, sopts *server.Options) error {
	dir := h.opts.DataDir
	up := filepath.Join(dir, upgradeDirName)
	store := filepath.Join(dir, "jetstream")
	backup := filepath.Join(dir, SingleHubBackupDir)
	start := time.Now()
	h.log.Info("moving a single hub's streams into the cluster", "data", dir)
	snaps, err := readUpgradeManifest(up)
	if errors.Is(err, os.ErrNotExist) {
		if snaps, err = h.snapshotStandalone(ctx, store, up); err != nil {
			return fmt.Errorf("upgrade %s: snapshot the single hub's streams: %w", dir, err)
		}
	} else if err != nil {
		return fmt.Errorf("upgrade %s: %w", dir, err)
	}
	snapped := time.Now()
	if standaloneStore(store) {
		if _, err := os.Stat(backup); err == nil {
			return fmt.Errorf("upgrade %s: %s exists already (an earlier upgrade's backup): move it away first", dir, backup)
		}
		if err := os.Rename(store, backup); err != nil {
			return fmt.Errorf("upgrade %s: move the single hub's store aside: %w", dir, err)
		}
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("upgrade %s: %w", dir, err)
		}
		h.log.Info("moved the single hub's store aside", "backup", backup)
	}
	if err := h.restoreClustered(ctx, sopts, up, snaps); err != nil {
		return fmt.Errorf("upgrade %s: restore the streams into the cluster: %w", dir, err)
	}
	if err := os.RemoveAll(up); err != nil {
		return fmt.Errorf("upgrade %s: remove the snapshots: %w", dir, err)
	}
	var msgs uint64
	for _, s := range snaps {
		msgs += s.Msgs
	}
	h.log.Info("moved the single hub's streams into the cluster", "streams", len(snaps), "msgs", msgs,
		"took", time.Since(start).Round(time.Millisecond), "snapshots_took", snapped.Sub(start).Round(time.Millisecond), "backup", backup)
	return nil
}

// snapshotStandalone opens the single hub's store at store with a private
// standalone server and writes a snapshot of every stream into up, then
// the manifest that says they are complete.
func (h *Hub) snapshotStandalone(ctx context.Context, store, up string) ([]upgradeSnapshot, error) {
	if err := os.RemoveAll(up); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(up, 0o700); err != nil {
		return nil, err
	}
	srv, err := startServer(&server.Options{
		ServerName: "pinkie-hub-upgrade", JetStream: true, JetStreamDomain: events.HubDomain, StoreDir: store,
		JetStreamMaxStore: h.opts.MaxStore, JetStreamMaxMemory: h.opts.MaxMemory,
		DontListen: true, NoSystemAccount: true,
	}, h.log)
	if err != nil {
		return nil, fmt.Errorf("open the single hub's store: %w", err)
	}
	defer stopServer(srv)
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("pinkie-hub-upgrade"))
	if err != nil {
		return nil, fmt.Errorf("connect to the single hub's store: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var names []string
	list := js.StreamNames(ctx)
	for n := range list.Name() {
		names = append(names, n)
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	var snaps []upgradeSnapshot
	for _, name := range names {
		durables, err := durableConsumers(ctx, js, name)
		if err != nil {
			return nil, err
		}
		s, err := snapshotStream(ctx, nc, name, up)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", name, err)
		}
		s.Durables = durables
		h.log.Info("took a snapshot of a stream", "stream", name, "msgs", s.Msgs, "durables", len(s.Durables), "bytes", s.Bytes)
		snaps = append(snaps, s)
	}
	b, err := json.MarshalIndent(snaps, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := syncDir(up); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(up, upgradeManifest), b, 0o600); err != nil {
		return nil, err
	}
	return snaps, syncDir(up)
}

// removeUpgradeLeftovers removes the snapshots of a finished upgrade
// that a crash left behind (snapshots.json is removed first).
func removeUpgradeLeftovers(dir string) error {
	up := filepath.Join(dir, upgradeDirName)
	if _, err := os.Stat(up); err != nil {
		return nil
	}
	if err := os.RemoveAll(up); err != nil {
		return fmt.Errorf("remove the snapshots of a finished upgrade: %w", err)
	}
	return nil
}

// readUpgradeManifest reads the snapshots an earlier start completed.
func readUpgradeManifest(up string) ([]upgradeSnapshot, error) {
	b, err := os.ReadFile(filepath.Join(up, upgradeManifest))
	if err != nil {
		return nil, err
	}
	var snaps []upgradeSnapshot
	if err := json.Unmarshal(b, &snaps); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(up, upgradeManifest), err)
	}
	return snaps, nil
}

// restoreClustered starts the clustered server of sopts without its leaf
// listener (and its client listener on a private loopback port: agents
// and clients wait), claims the cluster's formation, restores every
// snapshot it does not hold yet, and stops the server again.
func (h *Hub) restoreClustered(ctx context.Context, sopts *server.Options, up string, snaps []upgradeSnapshot) error {
	o := sopts.Clone()
	o.LeafNode = server.LeafNodeOpts{}
	o.Host, o.Port = "127.0.0.1", server.RANDOM_PORT
	srv, err := startServer(o, h.log, clusterQuiet...)
	if err != nil {
		return err
	}
	defer stopServer(srv)
	h.srv = srv
	defer func() { h.srv = nil }()
	if err := h.connect(); err != nil {
		return err
	}
	defer func() { h.nc.Close(); h.nc, h.js = nil, nil }()
	// Our interest in this subject reaches the other nodes with our
	// routes, before the cluster can elect a meta leader: a new node sees
	// it and creates no stream (awaitFormation).
	if _, err := h.nc.Subscribe(upgradingSubject+"."+srv.Name(), func(*nats.Msg) {}); err != nil {
		return err
	}
	if err := h.nc.Flush(); err != nil {
		return err
	}
	wait := h.opts.Cluster.Wait
	if wait <= 0 {
		wait = 2 * time.Minute
	}
	deadline := time.Now().Add(wait)
	logged := time.Now()
	for !srv.JetStreamIsCurrent() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: no JetStream meta leader within %s (start the other nodes)", ErrClusterNotFormed, wait)
		}
		if time.Since(logged) > 10*time.Second {
			h.log.Info("waiting for the other nodes to form the cluster the single hub's streams move into")
			logged = time.Now()
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	var refused error
	if err := h.untilFormed(ctx, "claim the cluster's formation", func(ctx context.Context) error {
		err := h.claimUpgrade(ctx)
		if errors.Is(err, errUpgradeConflict) {
			refused = err // no use waiting
			return nil
		}
		return err
	}); err != nil {
		return err
	}
	if refused != nil {
		return refused
	}
	for _, s := range snaps {
		if err := h.restoreStream(ctx, up, s); err != nil {
			return fmt.Errorf("%s: %w", s.Stream, err)
		}
	}
	// Complete: the manifest goes before the claim, so a crash between
	// them does not restore streams the cluster has written to since.
	if err := os.Remove(filepath.Join(up, upgradeManifest)); err != nil {
		return err
	}
	if err := syncDir(up); err != nil {
		return err
	}
	h.upgrade = false
	return h.untilFormed(ctx, "release the cluster's formation", h.releaseFormation)
}

// restoreStream restores the snapshot s unless the cluster holds the
// stream as it was already (a restart after a crash); a stream it holds
// otherwise (a restore cut short) is deleted and restored again.
func (h *Hub) restoreStream(ctx context.Context, up string, s upgradeSnapshot) error {
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := h.js.Stream(ictx, s.Stream)
	cancel()
	marker := filepath.Join(up, s.Stream+".restoring")
	_, restoring := os.Stat(marker)
	switch {
	case err == nil && restoring != nil:
		return fmt.Errorf("%w: the cluster holds a stream %s this node did not restore. %s", errUpgradeConflict, s.Stream, undoUpgrade(h.opts.DataDir))
	case err == nil:
		got := st.CachedInfo().State
		if got.Msgs == s.Msgs && got.LastSeq == s.LastSeq && h.missingDurables(ctx, s) == nil {
			h.log.Info("stream restored already", "stream", s.Stream, "msgs", got.Msgs)
			return nil
		}
		h.log.Warn("a stream's restore was cut short; restoring it again", "stream", s.Stream, "msgs", got.Msgs, "want", s.Msgs)
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := h.js.DeleteStream(dctx, s.Stream)
		cancel()
		if err != nil {
			return fmt.Errorf("delete the partly restored stream: %w", err)
		}
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("look the stream up: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(up, s.Stream+".json"))
	if err != nil {
		return err
	}
	var meta snapshotMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return fmt.Errorf("read %s.json: %w", s.Stream, err)
	}
	meta.Config.Replicas = 1
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		return err
	}
	if err := syncDir(up); err != nil {
		return err
	}
	h.log.Info("restoring a stream", "stream", s.Stream, "msgs", s.Msgs)
	err = restoreSnapshot(ctx, h.nc, meta, filepath.Join(up, s.Stream+".snap"))
	if isAPIError(err, errRestoreNameInUse) {
		// A restore this node began before it stopped holds the name:
		// the cluster keeps a failed restore's assignment, and reports
		// no stream for it, until it is deleted.
		h.log.Warn("an earlier restore of the stream holds its name; deleting it and restoring again", "stream", s.Stream)
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		derr := h.js.DeleteStream(dctx, s.Stream)
		cancel()
		if derr != nil && !errors.Is(derr, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete the earlier restore's stream: %w", derr)
		}
		err = restoreSnapshot(ctx, h.nc, meta, filepath.Join(up, s.Stream+".snap"))
	}
	if err != nil {
		return err
	}
	// The restored consumers are assigned to the cluster after the
	// stream: wait for them, or a stop now would lose them.
	deadline := time.Now().Add(time.Minute)
	for {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := h.js.Stream(ictx, s.Stream)
		cancel()
		if err == nil {
			got := st.CachedInfo().State
			if got.Msgs != s.Msgs || got.LastSeq != s.LastSeq {
				return fmt.Errorf("restored %d messages up to sequence %d, the snapshot held %d up to %d", got.Msgs, got.LastSeq, s.Msgs, s.LastSeq)
			}
			if err = h.missingDurables(ctx, s); err == nil {
				h.log.Info("restored a stream", "stream", s.Stream, "msgs", got.Msgs, "last_seq", got.LastSeq, "consumers", got.Consumers)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restored, but not its consumers within a minute: %w", err)
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// durableConsumers names the durable consumers of stream.
func durableConsumers(ctx context.Context, js jetstream.JetStream, stream string) ([]string, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	var out []string
	list := st.ListConsumers(ctx)
	for ci := range list.Info() {
		if ci.Config.Durable != "" {
			out = append(out, ci.Name)
		}
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("list the consumers of %s: %w", stream, err)
	}
	return out, nil
}

// missingDurables says which of the snapshot's durable consumers the
// cluster does not hold (nil: none).
func (h *Hub) missingDurables(ctx context.Context, s upgradeSnapshot) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := h.js.Stream(ctx, s.Stream)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	names := st.ConsumerNames(ctx)
	for n := range names.Name() {
		have[n] = true
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list the consumers: %w", err)
	}
	for _, name := range s.Durables {
		if !have[name] {
			return fmt.Errorf("consumer %s is missing", name)
		}
	}
	return nil
}

// errUpgradeConflict: the cluster formed without this node's streams.
var errUpgradeConflict = errors.New("upgrade refused")

// undoUpgrade says how to take a data directory whose upgrade cannot
// finish back to a single hub's.
func undoUpgrade(dir string) string {
	if standaloneStore(filepath.Join(dir, "jetstream")) {
		return fmt.Sprintf("To start it as a single hub again: rm -r %s", filepath.Join(dir, upgradeDirName))
	}
	return fmt.Sprintf("To start it as a single hub again: rm -r %s %s && mv %s %s (and to form the cluster with it: stop every node, rm -r DATA/jetstream on the others, start this one first)",
		filepath.Join(dir, "jetstream"), filepath.Join(dir, upgradeDirName), filepath.Join(dir, SingleHubBackupDir), filepath.Join(dir, "jetstream"))
}
