package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// The formation of a new cluster: the node of the meta leader creates the
// hub's streams, unless a node moves a single hub's streams in
// (upgrade.go); that node claims the formation first, and shows interest
// in upgradingSubject while it runs, so that no node creates streams of
// its own that the move would collide with.

const (
	// FormationStream is made by the node that creates a new cluster's
	// streams, before them, and deleted once LeaderStream exists: its
	// metadata says whether the streams are new or a single hub's moved
	// in (FormationKey).
	FormationStream = events.StreamFormation
	FormationKey    = "pinkie_formation"
)

// formationClaim is FormationStream's config with claim as its
// FormationKey.
func (h *Hub) formationClaim(claim string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: FormationStream, Description: "being made: the hub's streams are created (" + FormationKey + "=new) or moved in from a single hub (upgrade:NODE)",
		Subjects: []string{events.FormationSubject}, Storage: jetstream.FileStorage, MaxMsgs: 1, Discard: jetstream.DiscardNew,
		Metadata: map[string]string{FormationKey: claim},
	}
}

// claimFormation claims a new cluster's formation for claim, or finds
// the claim already made, and returns it.
func (h *Hub) claimFormation(ctx context.Context, claim string) (string, error) {
	st, err := h.js.CreateStream(ctx, h.formationClaim(claim))
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return "", fmt.Errorf("claim the cluster's formation: %w", err)
	}
	if err != nil {
		if st, err = h.js.Stream(ctx, FormationStream); err != nil {
			return "", fmt.Errorf("read the cluster's formation claim: %w", err)
		}
	}
	return st.CachedInfo().Config.Metadata[FormationKey], nil
}

// claimUpgrade claims the formation of the cluster for moving this node's
// single hub's streams in, unless the cluster has streams of its own.
func (h *Hub) claimUpgrade(ctx context.Context) error {
	mine := "upgrade:" + h.srv.Name()
	if _, err := h.js.Stream(ctx, LeaderStream); err == nil {
		return fmt.Errorf("%w: the cluster has its hub streams already, so this node's single hub streams cannot move in. %s", errUpgradeConflict, undoUpgrade(h.opts.DataDir))
	}
	got, err := h.claimFormation(ctx, mine)
	if err != nil {
		return err
	}
	if got != mine {
		return fmt.Errorf("%w: another node claimed the cluster's formation (%s=%s): start the node with the single hub's data first, the others after it. %s", errUpgradeConflict, FormationKey, got, undoUpgrade(h.opts.DataDir))
	}
	return nil
}

// upgradingSubject.NODE has interest while NODE moves a single hub's
// streams into a new cluster. No client or agent may subscribe to it
// (roles.go: clients' and hosts' subscribe permissions).
const upgradingSubject = events.UpgradingSubject

// peerUpgrading names a node this one has a route to that is moving a
// single hub's streams into the cluster ("": none).
func (h *Hub) peerUpgrading() string {
	rz, err := h.srv.Routez(&server.RoutezOptions{SubscriptionsDetail: true})
	if err != nil {
		return ""
	}
	for _, r := range rz.Routes {
		for _, sd := range r.SubsDetail {
			// (A route's subscriptions do not say their account.)
			if node, ok := strings.CutPrefix(sd.Subject, upgradingSubject+"."); ok {
				return node
			}
		}
	}
	return ""
}

// releaseFormation deletes this node's claim on the cluster's formation.
func (h *Hub) releaseFormation(ctx context.Context) error {
	if err := h.js.DeleteStream(ctx, FormationStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("release the cluster's formation: %w", err)
	}
	return nil
}

// awaitFormation runs on the node of the meta leader before it creates
// the hub's streams on a cluster that has none: it claims the formation
// for new streams, and fails (to be retried) while a node moves a single
// hub's streams in. A claim left by this node's own finished upgrade is
// released.
func (h *Hub) awaitFormation(ctx context.Context) error {
	if _, err := h.js.Stream(ctx, LeaderStream); err == nil {
		return nil // formed before
	}
	if node := h.peerUpgrading(); node != "" {
		h.log.Info("a node moves a single hub's streams into the new cluster; this one waits before it creates any", "node", node)
		return fmt.Errorf("waiting for %s to move a single hub's streams into the cluster", node)
	}
	got, err := h.claimFormation(ctx, "new")
	if err != nil {
		return err
	}
	switch {
	case got == "new":
		return nil
	case got == "upgrade:"+h.srv.Name() && !h.upgrade:
		if err := h.releaseFormation(ctx); err != nil {
			return err
		}
		return fmt.Errorf("released the formation claim of this node's finished upgrade; claiming again")
	default:
		h.log.Info("a node moves a single hub's streams into the new cluster; this one waits before it creates any", FormationKey, got)
		return fmt.Errorf("waiting for a single hub's streams to move into the cluster (%s=%s)", FormationKey, got)
	}
}
