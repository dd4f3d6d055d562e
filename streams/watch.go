package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The hub keeps its own durable consumers alive: the ingest check's
// consumer on INGEST and every AGENT_<host> on DEPLOY. If one disappears
// (anyone with the right to delete consumers can remove it), nothing
// flows through it any more, silently: ingest stops for the whole fleet,
// or one host stops getting deploys. The hub notices in two ways, the
// JetStream advisory $JS.EVENT.ADVISORY.CONSUMER.DELETED.<stream>.<name>
// (at once) and a periodic check of every kept consumer (the backstop for
// an advisory that was missed), and recreates the consumer where it stood.

// consumerDeletedAdvisory is where the server announces a deleted consumer.
const consumerDeletedAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.DELETED"

// keptConsumer is one durable consumer the hub made and keeps alive.
type keptConsumer struct {
	stream, name string
	// kind labels it in /metrics and in what /healthz tells anyone:
	// "ingest" or "deploy", never a host name.
	kind string
	// recreate makes it again, delivering from just past floor.
	recreate func(ctx context.Context, floor uint64) error
	// floor is the newest ack floor (stream sequence) seen.
	floor   uint64
	missing bool
	// why is the last failure to recreate it.
	why string
}

// recreation is one consumer the hub had to recreate, for /healthz.
type recreation struct {
	At       time.Time `json:"at"`
	Stream   string    `json:"stream"`
	Consumer string    `json:"consumer"`
	From     uint64    `json:"from_seq"`
}

// consumerWatch is the set of consumers the hub keeps.
type consumerWatch struct {
	mu        sync.Mutex
	kept      map[string]*keptConsumer // by stream/name
	recreated []recreation             // the last few
	count     uint64
	kick      chan struct{}
}

func (w *consumerWatch) kicker() chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kick == nil {
		w.kick = make(chan struct{}, 1)
	}
	return w.kick
}

// keepConsumer adds a consumer to those the hub recreates when they
// disappear; floor is its ack floor as last seen.
func (h *Hub) keepConsumer(stream, name, kind string, floor uint64, recreate func(ctx context.Context, floor uint64) error) {
	w := &h.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kept == nil {
		w.kept = map[string]*keptConsumer{}
	}
	key := stream + "/" + name
	if k, ok := w.kept[key]; ok {
		k.recreate, k.floor = recreate, max(k.floor, floor)
		return
	}
	w.kept[key] = &keptConsumer{stream: stream, name: name, kind: kind, floor: floor, recreate: recreate}
}

// checkConsumersSoon asks the watcher for a check now.
func (h *Hub) checkConsumersSoon() {
	select {
	case h.watch.kicker() <- struct{}{}:
	default:
	}
}

// watchConsumers checks the kept consumers whenever the server announces
// the deletion of one, and every ConsumerCheck as a backstop.
func (h *Hub) watchConsumers(ctx context.Context) {
	defer h.wg.Done()
	kick := h.watch.kicker()
	sub, err := h.nc.Subscribe(consumerDeletedAdvisory+".>", func(m *nats.Msg) {
		var adv struct {
			Stream   string `json:"stream"`
			Consumer string `json:"consumer"`
		}
		if json.Unmarshal(m.Data, &adv) == nil && h.keeps(adv.Stream, adv.Consumer) {
			h.checkConsumersSoon()
		}
	})
	if err != nil {
		h.log.Error("subscribe to consumer deletions; relying on the periodic check", "err", err)
	} else {
		defer func() { _ = sub.Unsubscribe() }()
	}
	t := time.NewTicker(h.opts.Health.ConsumerCheck)
	defer t.Stop()
	// A recreation that failed (the server was busy deleting it, say) is
	// tried again soon, backing off to the periodic check.
	var retry <-chan time.Time
	backoff := 250 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-t.C:
		case <-retry:
		}
		if h.checkConsumers(ctx) {
			retry, backoff = nil, 250*time.Millisecond
			continue
		}
		retry = time.After(backoff)
		backoff = min(backoff*2, h.opts.Health.ConsumerCheck)
	}
}

func (h *Hub) keeps(stream, name string) bool {
	h.watch.mu.Lock()
	defer h.watch.mu.Unlock()
	_, ok := h.watch.kept[stream+"/"+name]
	return ok
}

// checkConsumers looks up every kept consumer and recreates the missing.
// It reports false if one is still missing.
func (h *Hub) checkConsumers(ctx context.Context) bool {
	if !h.Leading() {
		return true // the leader keeps them (cluster.go)
	}
	if !h.srv.JetStreamEnabled() {
		return true // the health check reports that; nothing can be created now
	}
	allThere := true
	h.watch.mu.Lock()
	kept := make([]*keptConsumer, 0, len(h.watch.kept))
	for _, k := range h.watch.kept {
		kept = append(kept, k)
	}
	h.watch.mu.Unlock()
	sort.Slice(kept, func(i, j int) bool { return kept[i].stream+kept[i].name < kept[j].stream+kept[j].name })
	for _, k := range kept {
		if ctx.Err() != nil {
			return true
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := consumerInfo(cctx, h.js, k.stream, k.name)
		cancel()
		h.watch.mu.Lock()
		floor, recreate := k.floor, k.recreate
		if err == nil {
			k.floor = max(k.floor, info.AckFloor.Stream)
			k.missing, k.why = false, ""
		}
		h.watch.mu.Unlock()
		if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			continue // there, or the server cannot tell now (the health check reports that)
		}
		h.log.Error("a consumer the hub owns is missing (deleted by someone?); recreating it",
			"stream", k.stream, "consumer", k.name, "last_ack_floor", floor, "deliver_from", floor+1)
		h.watch.mu.Lock()
		k.missing = true
		h.watch.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = recreate(rctx, floor)
		cancel()
		h.watch.mu.Lock()
		if err != nil {
			k.why = err.Error()
		} else {
			k.missing, k.why = false, ""
			h.watch.count++
			h.watch.recreated = append(h.watch.recreated, recreation{At: time.Now().UTC(), Stream: k.stream, Consumer: k.name, From: floor + 1})
			if n := len(h.watch.recreated); n > 10 {
				h.watch.recreated = h.watch.recreated[n-10:]
			}
		}
		h.watch.mu.Unlock()
		if err != nil {
			allThere = false
			if ctx.Err() == nil {
				h.log.Error("recreate a consumer the hub owns", "stream", k.stream, "consumer", k.name, "err", err)
			}
			continue
		}
		h.metrics.recreated.WithLabelValues(k.kind).Inc()
		h.log.Error("recreated a consumer the hub owns", "stream", k.stream, "consumer", k.name, "deliver_from", floor+1)
	}
	return allThere
}

// missingConsumers reports the kept consumers known to be missing: a
// line without host names for anyone, and one per consumer for trusted
// readers.
func (h *Hub) missingConsumers() (problems, details []string) {
	h.watch.mu.Lock()
	defer h.watch.mu.Unlock()
	byKind := map[string]int{}
	for _, k := range h.watch.kept {
		if !k.missing {
			continue
		}
		byKind[k.kind]++
		d := fmt.Sprintf("consumer %s on %s is missing", k.name, k.stream)
		if k.why != "" {
			d += "; recreating it failed: " + k.why
		}
		details = append(details, d)
	}
	for _, kind := range []string{"ingest", "deploy"} {
		if n := byKind[kind]; n > 0 {
			problems = append(problems, fmt.Sprintf("%d %s consumer(s) the hub owns are missing and could not be recreated yet", n, kind))
		}
	}
	sort.Strings(details)
	return problems, details
}

// recreateIngest is how the ingest check's consumer comes back: stop the
// run that read the old one (its acknowledgements would reach the new
// consumer and confuse its ack floor), then start a new run just past the
// newer of the last ack floor seen and the last forward stored. Nothing
// is skipped: everything up to there is in HOSTS or DEADLETTER.
func (h *Hub) recreateIngest(ctx context.Context, floor uint64) error {
	h.ingestMu.Lock()
	defer h.ingestMu.Unlock()
	select {
	case <-h.closing:
		return errors.New("the hub is closing")
	default:
	}
	settled, err := h.abortIngest()
	if err != nil {
		// A run that cannot be stopped cannot be replaced safely: a
		// restart of the hub can.
		h.fail(fmt.Errorf("recreate the ingest consumer: %w", err))
		return err
	}
	floor = max(floor, settled)
	if err := h.runIngest(h.ingestParent(), floor); err != nil {
		return err
	}
	return nil
}

// ingestParent is the context ingest runs live in: until the hub stops.
func (h *Hub) ingestParent() context.Context {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runCtx
}

// deployConsumerFrom is AGENT_<host>'s config for a recreation: from just
// past floor, or, with no floor seen, from the host's latest request (as a
// new host starts).
func deployConsumerFrom(ctx context.Context, js jetstream.JetStream, host string, floor uint64) (jetstream.ConsumerConfig, error) {
	if floor > 0 {
		return deployHubConsumerConfig(host, floor+1), nil
	}
	start, err := deployConsumerStart(ctx, js, host)
	return deployHubConsumerConfig(host, start), err
}

// ensureDeployConsumer creates AGENT_<host>, or updates it keeping where
// it delivers from (a start policy cannot be changed by an update). One
// an older hub made with "last per subject" is made anew from just past
// its ack floor (deployHubConsumerConfig says why).
func ensureDeployConsumer(ctx context.Context, h *Hub, host string) error {
	name := deployHubConsumer(host)
	var cfg jetstream.ConsumerConfig
	var floor uint64
	info, err := consumerInfo(ctx, h.js, DeployStream, name)
	switch {
	case err == nil && info.Config.DeliverPolicy == jetstream.DeliverByStartSequencePolicy:
		cfg, floor = deployHubConsumerConfig(host, info.Config.OptStartSeq), info.AckFloor.Stream
	case err == nil:
		floor = info.AckFloor.Stream
		if cfg, err = deployConsumerFrom(ctx, h.js, host, floor); err != nil {
			return err
		}
		if err := h.js.DeleteConsumer(ctx, DeployStream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("replace %s's last-per-subject consumer: %w", name, err)
		}
		h.log.Info("deploy consumer made anew to deliver from a sequence", "consumer", name, "from", cfg.OptStartSeq)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if cfg, err = deployConsumerFrom(ctx, h.js, host, 0); err != nil {
			return err
		}
	default:
		return err
	}
	if _, err := h.js.CreateOrUpdatePushConsumer(ctx, DeployStream, cfg); err != nil {
		return err
	}
	h.keepConsumer(DeployStream, name, "deploy", floor, func(ctx context.Context, floor uint64) error {
		cfg, err := deployConsumerFrom(ctx, h.js, host, floor)
		if err != nil {
			return err
		}
		_, err = h.js.CreateOrUpdatePushConsumer(ctx, DeployStream, cfg)
		return err
	})
	return nil
}

// consumerInfo looks up a pull or push consumer.
func consumerInfo(ctx context.Context, js jetstream.JetStream, stream, name string) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, stream, name)
	if err == nil {
		return c.CachedInfo(), nil
	}
	if !errors.Is(err, jetstream.ErrNotPullConsumer) {
		return nil, err
	}
	pc, err := js.PushConsumer(ctx, stream, name)
	if err != nil {
		return nil, err
	}
	return pc.CachedInfo(), nil
}
