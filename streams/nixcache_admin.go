package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// The cache's retention at work in the hub, and its admin service for
// `pinkie cache ls|stats|gc`: requests on _pinkie.nixcache.admin.<op>.
// ls and stats are open to readers and operators, gc to operators only
// (roles.go); hosts' leaf keys may call none of them. The admin token
// cannot clash with a host's subjects (_pinkie.nixcache.<host>.narinfo,
// .nar, .key, .r.>): no host operation is called ls, stats or gc.
//
//	ls    body {"offset":N,"limit":N} → entries oldest upload first, and next
//	stats body empty                  → NixCacheStats
//	gc    body {"dry_run":bool}       → NixGCResult
const (
	NixCacheAdminPrefix = events.NixCacheAdminPrefix
	// NixCacheAdminLs, NixCacheAdminStats and NixCacheAdminGC are the
	// admin calls.
	NixCacheAdminLs    = NixCacheAdminPrefix + ".ls"
	NixCacheAdminStats = NixCacheAdminPrefix + ".stats"
	NixCacheAdminGC    = NixCacheAdminPrefix + ".gc"
	// nixLsPage bounds one ls reply (about 200 bytes an entry, under the
	// hub's 1 MiB payload); nixGCListed bounds the paths a gc reply names.
	nixLsPage   = 2000
	nixGCListed = 1000
	// nixRetentionEvery is how often the hub checks its cache against the
	// budget besides after uploads; nixRetentionSettle lets a burst of
	// uploads end first.
	nixRetentionEvery  = 10 * time.Minute
	nixRetentionSettle = 2 * time.Second
)

// nixRetention holds the cache to its budget.
type nixRetention struct {
	h      *Hub
	cache  *NixCache
	budget int64
	grace  time.Duration
	roots  *nixRootsReader
	now    func() time.Time

	mu      sync.Mutex // one collection at a time
	wasOver bool
}

func (h *Hub) startNixRetention(ctx context.Context) error {
	budget := h.opts.NixCacheBudget
	if budget <= 0 {
		budget = int64(float64(h.opts.MaxStore) * DefaultNixCacheShare)
	}
	grace := h.opts.NixCacheGrace
	if grace <= 0 {
		grace = DefaultNixCacheGrace
	}
	r := &nixRetention{h: h, cache: h.nixCache, budget: budget, grace: grace, now: time.Now,
		roots: &nixRootsReader{h: h, roots: newNixRoots()}}
	h.nixRetention = r
	for subject, handle := range map[string]func(context.Context, []byte) nixAdminReply{
		NixCacheAdminLs: r.ls, NixCacheAdminStats: r.stats, NixCacheAdminGC: r.gcRequest,
	} {
		if _, err := h.nc.Subscribe(subject, leaderOnly(h, func(m *nats.Msg) {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			reply := handle(rctx, m.Data)
			if reply.Error != "" {
				h.log.Warn("nix cache admin request failed", "subject", m.Subject, "err", reply.Error)
			}
			b, _ := json.Marshal(reply)
			_ = m.Respond(b)
		})); err != nil {
			return fmt.Errorf("subscribe to %s: %w", subject, err)
		}
	}
	h.wg.Add(1)
	go func() { defer h.wg.Done(); r.run(ctx) }()
	h.log.Info("nix cache retention", "budget_bytes", budget, "grace", grace)
	return nil
}

// run collects after uploads that bring the cache over budget, and every
// nixRetentionEvery.
func (r *nixRetention) run(ctx context.Context) {
	w, err := r.cache.narinfo.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	var updates <-chan jetstream.KeyValueEntry
	if err != nil {
		r.h.log.Warn("nix cache retention: watch uploads; checking every "+nixRetentionEvery.String()+" only", "err", err)
	} else {
		defer w.Stop()
		updates = w.Updates()
	}
	tick := time.NewTicker(nixRetentionEvery)
	defer tick.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	check := func() {
		if err := r.auto(ctx); err != nil && ctx.Err() == nil {
			r.h.log.Warn("nix cache retention", "err", err)
		}
	}
	check()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			settle.Reset(nixRetentionSettle)
		case <-settle.C:
			check()
		case <-tick.C:
			check()
		}
	}
}

// usage is what the cache's streams hold now, cheaply (no listing).
func (r *nixRetention) usage(ctx context.Context) (int64, error) {
	ks, err := r.cache.narinfo.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s status: %w", NixNarinfoBucket, err)
	}
	ost, err := r.cache.nar.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s status: %w", NixNarBucket, err)
	}
	return int64(ks.Bytes() + ost.Size()), nil
}

// auto collects when the cache's streams hold more than the budget.
func (r *nixRetention) auto(ctx context.Context) error {
	if !r.h.Leading() {
		return nil // the hub leader collects (cluster.go)
	}
	used, err := r.usage(ctx)
	if err != nil || used <= r.currentBudget() {
		return err
	}
	res, err := r.gc(ctx, false)
	if err != nil {
		return err
	}
	if len(res.Dropped) > 0 || res.DroppedNARs > 0 {
		r.h.log.Info("nix cache over budget: dropped the oldest paths no deploy needs",
			"paths", len(res.Dropped), "nars", res.DroppedNARs, "bytes_freed", res.BytesFreed, "bytes", res.BytesAfter, "budget_bytes", res.BudgetBytes)
	}
	return nil
}

// currentBudget is the budget (tests change it).
func (r *nixRetention) currentBudget() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.budget
}

// gc brings the cache under budget (or says what it would drop).
func (r *nixRetention) gc(ctx context.Context, dryRun bool) (NixGCResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	roots, err := r.roots.current(ctx, now)
	if err != nil {
		return NixGCResult{}, err
	}
	v, err := r.cache.view(ctx, roots, now.Add(-r.grace))
	if err != nil {
		return NixGCResult{}, err
	}
	drop, dropNars, after := v.plan(r.budget)
	res := NixGCResult{DryRun: dryRun, BudgetBytes: r.budget, BytesBefore: v.total, BytesAfter: after, DroppedNARs: len(dropNars)}
	for _, e := range drop {
		res.Dropped = append(res.Dropped, *e)
	}
	res.OverBudget = after > r.budget
	if res.OverBudget != r.wasOver {
		if res.OverBudget {
			st := v.stats(r.budget, r.grace)
			r.h.log.Warn("nix cache: what its deploys need is more than its budget; keeping it all (raise --cache-budget)",
				"kept_bytes", st.KeptBytes, "budget_bytes", r.budget)
		}
		r.wasOver = res.OverBudget
	}
	if dryRun {
		res.BytesFreed = v.total - after
		return res, nil
	}
	freed, nars, err := r.cache.collect(ctx, drop, dropNars)
	res.BytesFreed, res.DroppedNARs, res.BytesAfter = freed, nars, v.total-freed
	res.OverBudget = res.BytesAfter > r.budget
	return res, err
}

// nixAdminReply is the admin service's answer.
type nixAdminReply struct {
	Error   string          `json:"error,omitempty"`
	Entries []NixCacheEntry `json:"entries,omitempty"`
	Next    int             `json:"next,omitempty"`
	Stats   *NixCacheStats  `json:"stats,omitempty"`
	GC      *NixGCResult    `json:"gc,omitempty"`
}

type nixLsRequest struct {
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
}

type nixGCRequest struct {
	DryRun bool `json:"dry_run"`
}

func (r *nixRetention) currentView(ctx context.Context) (*nixCacheView, error) {
	now := r.now()
	roots, err := r.roots.current(ctx, now)
	if err != nil {
		return nil, err
	}
	return r.cache.view(ctx, roots, now.Add(-r.grace))
}

func (r *nixRetention) ls(ctx context.Context, body []byte) nixAdminReply {
	var q nixLsRequest
	if len(body) > 0 {
		if err := json.Unmarshal(body, &q); err != nil {
			return nixAdminReply{Error: "ls: want {\"offset\":N,\"limit\":N}: " + err.Error()}
		}
	}
	if q.Limit <= 0 || q.Limit > nixLsPage {
		q.Limit = nixLsPage
	}
	v, err := r.currentView(ctx)
	if err != nil {
		return nixAdminReply{Error: err.Error()}
	}
	out := nixAdminReply{Entries: []NixCacheEntry{}}
	for i := max(q.Offset, 0); i < len(v.entries) && len(out.Entries) < q.Limit; i++ {
		out.Entries = append(out.Entries, *v.entries[i])
		if len(out.Entries) == q.Limit && i+1 < len(v.entries) {
			out.Next = i + 1
		}
	}
	return out
}

func (r *nixRetention) stats(ctx context.Context, _ []byte) nixAdminReply {
	v, err := r.currentView(ctx)
	if err != nil {
		return nixAdminReply{Error: err.Error()}
	}
	st := v.stats(r.currentBudget(), r.grace)
	return nixAdminReply{Stats: &st}
}

func (r *nixRetention) gcRequest(ctx context.Context, body []byte) nixAdminReply {
	var q nixGCRequest
	if len(body) > 0 {
		if err := json.Unmarshal(body, &q); err != nil {
			return nixAdminReply{Error: "gc: want {\"dry_run\":bool}: " + err.Error()}
		}
	}
	res, err := r.gc(ctx, q.DryRun)
	if err != nil {
		return nixAdminReply{Error: err.Error()}
	}
	if !q.DryRun {
		r.h.log.Info("nix cache collected on request", "paths", len(res.Dropped), "nars", res.DroppedNARs, "bytes_freed", res.BytesFreed, "bytes", res.BytesAfter, "budget_bytes", res.BudgetBytes)
	}
	res.DroppedPaths = len(res.Dropped)
	if len(res.Dropped) > nixGCListed {
		res.Dropped = res.Dropped[:nixGCListed]
	}
	return nixAdminReply{GC: &res}
}

// nixAdminCall sends one admin request and decodes its reply.
func nixAdminCall(ctx context.Context, c Requester, subject string, body any) (nixAdminReply, error) {
	b, _ := json.Marshal(body)
	resp, err := c.Request(ctx, &nats.Msg{Subject: subject, Data: b})
	if err != nil {
		return nixAdminReply{}, fmt.Errorf("nix cache %s: %w", subject, err)
	}
	var r nixAdminReply
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return r, fmt.Errorf("nix cache %s: bad reply: %w", subject, err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("nix cache: %s", r.Error)
	}
	return r, nil
}

// NixCacheList lists every path in the hub's cache, oldest upload first,
// with why retention keeps it.
func NixCacheList(ctx context.Context, c Requester) ([]NixCacheEntry, error) {
	var out []NixCacheEntry
	offset := 0
	for range 100000 { // bounded: a page each, far beyond any cache
		r, err := nixAdminCall(ctx, c, NixCacheAdminLs, nixLsRequest{Offset: offset, Limit: nixLsPage})
		if err != nil {
			return nil, err
		}
		out = append(out, r.Entries...)
		if r.Next <= offset {
			return out, nil
		}
		offset = r.Next
	}
	return out, nil
}

// NixCacheStatsOf sums the hub's cache up against its budget.
func NixCacheStatsOf(ctx context.Context, c Requester) (NixCacheStats, error) {
	r, err := nixAdminCall(ctx, c, NixCacheAdminStats, struct{}{})
	if err != nil {
		return NixCacheStats{}, err
	}
	if r.Stats == nil {
		return NixCacheStats{}, fmt.Errorf("nix cache stats: the hub's reply holds no stats")
	}
	return *r.Stats, nil
}

// NixCacheCollect has the hub bring its cache under budget now (dryRun:
// only say what it would drop).
func NixCacheCollect(ctx context.Context, c Requester, dryRun bool) (NixGCResult, error) {
	r, err := nixAdminCall(ctx, c, NixCacheAdminGC, nixGCRequest{DryRun: dryRun})
	if err != nil {
		return NixGCResult{}, err
	}
	if r.GC == nil {
		return NixGCResult{}, fmt.Errorf("nix cache gc: the hub's reply holds no result")
	}
	return *r.GC, nil
}
