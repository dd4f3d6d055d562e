package streams

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/nixcache"
)

// Retention of the hub's Nix cache (issue 12): the cache is held to a size
// budget. It keeps the closure (following narinfo References) of every
// retention root (nixcache_roots.go: each host's current and previous
// deploy, deploys under way) and of every path uploaded within the grace
// window, and drops the rest oldest upload first until it is under budget.
// A dropped path takes the cached paths that refer to it along (they would
// be incomplete without it), so every closure left in the cache is whole.
// A path goes narinfo first, then its NAR, and a NAR goes only when no
// narinfo names it any more (two store paths with the same contents share
// one), checked against a fresh listing right before the NAR is deleted.

// DefaultNixCacheShare is the default budget's share of --max-store. The
// streams hosts fill reserve 80 % of it (budget.go); the rest holds the
// deploy record, alerts, buckets and the cache: the cache takes half of
// that, so a full cache never crowds out the others.
const DefaultNixCacheShare = 0.10

// DefaultNixCacheGrace is how long a fresh upload is kept whatever the
// roots say: the time between a builder's upload and the deploy record
// naming its path (built, activation.ordered) is seconds to minutes.
const DefaultNixCacheGrace = time.Hour

// NixCacheEntry is one store path in the cache.
type NixCacheEntry struct {
	StorePath string `json:"store_path"`
	// NarSize is the path's NAR, uncompressed; FileSize the (compressed)
	// file the cache holds, 0 when it lacks it.
	NarSize  uint64    `json:"nar_size"`
	FileSize int64     `json:"file_size"`
	Uploaded time.Time `json:"uploaded"`
	// KeptBecause says why retention keeps it: current:<host>,
	// previous:<host>, pending:<host> (a deploy under way), recent
	// (uploaded within the grace window); empty: collectable.
	KeptBecause []string `json:"kept_because,omitempty"`

	hash, url string
	info      int64 // narinfo bytes
	refs      []string
}

// NixCacheStats sums up the cache against its budget.
type NixCacheStats struct {
	Paths        int     `json:"paths"`
	Bytes        int64   `json:"bytes"`
	BudgetBytes  int64   `json:"budget_bytes"`
	GraceSeconds float64 `json:"grace_seconds"`
	KeptPaths    int     `json:"kept_paths"`
	KeptBytes    int64   `json:"kept_bytes"`
	// Collectable is everything retention may drop (it drops only what
	// brings the cache under budget); orphan NARs (no narinfo names them,
	// older than the grace window) count in it.
	CollectablePaths int   `json:"collectable_paths"`
	CollectableBytes int64 `json:"collectable_bytes"`
	OrphanNARs       int   `json:"orphan_nars"`
}

// NixGCResult is what a collection dropped (or would drop: DryRun).
type NixGCResult struct {
	DryRun      bool  `json:"dry_run"`
	BudgetBytes int64 `json:"budget_bytes"`
	BytesBefore int64 `json:"bytes_before"`
	BytesAfter  int64 `json:"bytes_after"`
	BytesFreed  int64 `json:"bytes_freed"`
	// DroppedPaths counts the paths dropped; Dropped names them (the
	// first 1000 in a reply).
	DroppedPaths int             `json:"dropped_paths"`
	Dropped      []NixCacheEntry `json:"dropped"`
	DroppedNARs  int             `json:"dropped_nars"`
	// OverBudget: what retention must keep is more than the budget.
	OverBudget bool `json:"over_budget,omitempty"`
}

// nixCacheView is the cache as listed at one moment, with retention's
// verdict on each path.
type nixCacheView struct {
	entries []*NixCacheEntry          // oldest upload first
	byHash  map[string]*NixCacheEntry // store hash → entry
	nars    map[string]*jetstream.ObjectInfo
	orphans []string // NAR URLs no narinfo names, past the grace window
	total   int64
}

// listNarinfos reads every narinfo in the cache.
func (c *NixCache) listNarinfos(ctx context.Context) (map[string]*NixCacheEntry, error) {
	w, err := c.narinfo.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", NixNarinfoBucket, err)
	}
	defer w.Stop()
	out := map[string]*NixCacheEntry{}
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s: %w", NixNarinfoBucket, ctx.Err())
		case e = <-w.Updates():
		}
		if e == nil {
			return out, nil // caught up
		}
		ni, err := nixcache.ParseNarInfo(e.Value())
		if err != nil {
			// Unreadable: listed (so it can be dropped), with no NAR.
			out[e.Key()] = &NixCacheEntry{StorePath: "/nix/store/" + e.Key() + "-?", hash: e.Key(), Uploaded: e.Created(), info: int64(len(e.Value()))}
			continue
		}
		ent := &NixCacheEntry{StorePath: ni.StorePath, NarSize: ni.NarSize, Uploaded: e.Created(), hash: e.Key(), url: ni.URL, info: int64(len(e.Value()))}
		for _, r := range ni.References {
			if len(r) >= 32 {
				ent.refs = append(ent.refs, r[:32])
			}
		}
		out[e.Key()] = ent
	}
}

// listNars reads every NAR's info.
func (c *NixCache) listNars(ctx context.Context) (map[string]*jetstream.ObjectInfo, error) {
	list, err := c.nar.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, fmt.Errorf("list %s: %w", NixNarBucket, err)
	}
	out := make(map[string]*jetstream.ObjectInfo, len(list))
	for _, oi := range list {
		out[oi.Name] = oi
	}
	return out, nil
}

// view lists the cache and marks what the roots, and uploads after
// recentSince, keep.
func (c *NixCache) view(ctx context.Context, roots map[string][]string, recentSince time.Time) (*nixCacheView, error) {
	byHash, err := c.listNarinfos(ctx)
	if err != nil {
		return nil, err
	}
	nars, err := c.listNars(ctx)
	if err != nil {
		return nil, err
	}
	v := &nixCacheView{byHash: byHash, nars: nars}
	named := map[string]bool{}
	for _, e := range byHash {
		v.entries = append(v.entries, e)
		v.total += e.info
		if oi := nars[e.url]; oi != nil {
			e.FileSize = int64(oi.Size)
		}
		named[e.url] = true
	}
	for url, oi := range nars {
		v.total += int64(oi.Size)
		if !named[url] && oi.ModTime.Before(recentSince) {
			v.orphans = append(v.orphans, url)
		}
	}
	sort.Strings(v.orphans)
	sort.Slice(v.entries, func(i, j int) bool {
		a, b := v.entries[i], v.entries[j]
		if !a.Uploaded.Equal(b.Uploaded) {
			return a.Uploaded.Before(b.Uploaded)
		}
		return a.hash < b.hash
	})
	// Keep the closure of each root, and of each recent upload (an
	// upload sends only what the cache lacks: the rest of its closure is
	// older).
	var mark func(hash, why string)
	mark = func(hash, why string) {
		e := byHash[hash]
		if e == nil {
			return
		}
		for _, w := range e.KeptBecause {
			if w == why {
				return
			}
		}
		e.KeptBecause = append(e.KeptBecause, why)
		for _, r := range e.refs {
			mark(r, why)
		}
	}
	for path, whys := range roots {
		base := strings.TrimPrefix(path, "/nix/store/")
		if len(base) < 32 || base == path {
			continue
		}
		for _, why := range whys {
			mark(base[:32], why)
		}
	}
	for _, e := range v.entries {
		if !e.Uploaded.Before(recentSince) {
			mark(e.hash, keptRecent)
		}
	}
	for _, e := range v.entries {
		sort.Strings(e.KeptBecause)
	}
	return v, nil
}

// stats sums the view up.
func (v *nixCacheView) stats(budget int64, grace time.Duration) NixCacheStats {
	st := NixCacheStats{Paths: len(v.entries), Bytes: v.total, BudgetBytes: budget, GraceSeconds: grace.Seconds(), OrphanNARs: len(v.orphans)}
	keptURL := map[string]bool{}
	for _, e := range v.entries {
		if len(e.KeptBecause) > 0 {
			st.KeptPaths++
			st.KeptBytes += e.info
			keptURL[e.url] = true
		}
	}
	counted := map[string]bool{}
	for _, e := range v.entries {
		if len(e.KeptBecause) > 0 {
			if oi := v.nars[e.url]; oi != nil && !counted[e.url] {
				st.KeptBytes += int64(oi.Size)
				counted[e.url] = true
			}
			continue
		}
		st.CollectablePaths++
		st.CollectableBytes += e.info
		if oi := v.nars[e.url]; oi != nil && !keptURL[e.url] && !counted[e.url] {
			st.CollectableBytes += int64(oi.Size)
			counted[e.url] = true
		}
	}
	for _, url := range v.orphans {
		st.CollectableBytes += int64(v.nars[url].Size)
	}
	return st
}

// plan picks what to drop to bring the view under budget: orphan NARs
// first, then paths oldest upload first, each with the collectable paths
// that refer to it.
func (v *nixCacheView) plan(budget int64) (drop []*NixCacheEntry, dropNars []string, after int64) {
	after = v.total
	urlRefs := map[string]int{}
	referrers := map[string][]*NixCacheEntry{}
	for _, e := range v.entries {
		urlRefs[e.url]++
		for _, r := range e.refs {
			if r != e.hash {
				referrers[r] = append(referrers[r], e)
			}
		}
	}
	for _, url := range v.orphans {
		if after <= budget {
			return drop, dropNars, after
		}
		dropNars = append(dropNars, url)
		after -= int64(v.nars[url].Size)
	}
	dropped := map[string]bool{}
	var dropOne func(e *NixCacheEntry)
	dropOne = func(e *NixCacheEntry) {
		if dropped[e.hash] || len(e.KeptBecause) > 0 {
			return
		}
		dropped[e.hash] = true
		drop = append(drop, e)
		after -= e.info
		if urlRefs[e.url]--; urlRefs[e.url] == 0 {
			if oi := v.nars[e.url]; oi != nil {
				dropNars = append(dropNars, e.url)
				after -= int64(oi.Size)
			}
		}
		for _, r := range referrers[e.hash] {
			dropOne(r)
		}
	}
	for _, e := range v.entries {
		if after <= budget {
			break
		}
		dropOne(e)
	}
	return drop, dropNars, after
}

// collect deletes what plan picked: every narinfo first, then each NAR
// that no narinfo names in a fresh listing (an upload may have named it
// since the plan).
func (c *NixCache) collect(ctx context.Context, drop []*NixCacheEntry, dropNars []string) (freed int64, nars int, err error) {
	for _, e := range drop {
		if err := c.narinfo.Purge(ctx, e.hash); err != nil {
			return freed, nars, fmt.Errorf("drop the narinfo of %s: %w", e.StorePath, err)
		}
		freed += e.info
	}
	if len(dropNars) == 0 {
		return freed, nars, nil
	}
	// No narinfo is taken between the listing and the deletes (putNarinfo
	// holds namingMu while it checks for its NAR and stores the narinfo).
	c.namingMu.Lock()
	defer c.namingMu.Unlock()
	left, err := c.listNarinfos(ctx)
	if err != nil {
		return freed, nars, err
	}
	named := map[string]bool{}
	for _, e := range left {
		named[e.url] = true
	}
	for _, url := range dropNars {
		if named[url] {
			continue
		}
		oi, err := c.nar.GetInfo(ctx, url)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			continue
		} else if err != nil {
			return freed, nars, fmt.Errorf("drop NAR %s: %w", url, err)
		}
		if err := c.nar.Delete(ctx, url); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return freed, nars, fmt.Errorf("drop NAR %s: %w", url, err)
		}
		freed += int64(oi.Size)
		nars++
	}
	// Deletion markers older than half an hour go (jetstream's default).
	if err := c.narinfo.PurgeDeletes(ctx); err != nil {
		return freed, nars, fmt.Errorf("clean up %s: %w", NixNarinfoBucket, err)
	}
	return freed, nars, nil
}
