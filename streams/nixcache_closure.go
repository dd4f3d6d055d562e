package streams

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/nixcache"
)

// The closure op: an agent about to fetch a store path asks the hub once
// for the narinfos of its whole closure (the hub walks the References of
// the narinfos it holds), instead of one narinfo round trip per path, and
// then pulls the NARs it lacks several at once (nixcache_prefetch.go).
// Same host scoping as every other cache request (nixcache_serve.go).

// closureRequest asks for the closure of the path with store hash Hash,
// its narinfos from From on (a page: the reply says where the next starts).
type closureRequest struct {
	Hash string `json:"hash"`
	From int    `json:"from"`
}

// closureReply is one page of a closure: narinfos as the cache holds them
// (signed, byte for byte), references first; Next is where the next page
// starts, 0 on the last. Missing names references the cache lacks.
type closureReply struct {
	NarInfos []string `json:"narinfos"`
	Total    int      `json:"total"`
	Next     int      `json:"next,omitempty"`
	Missing  []string `json:"missing,omitempty"`
}

// closurePageBytes bounds the narinfo bytes of one reply (well under the
// default 1 MiB payload limit, JSON escaping included); a variable for
// the paging test.
var closurePageBytes atomic.Int64 // 384 KiB; tests lower it

func init() { closurePageBytes.Store(384 << 10) }

// closureMaxPaths bounds the walk.
const closureMaxPaths = 200_000

func (s *nixCacheService) closure(ctx context.Context, _ string, m *nats.Msg) *nats.Msg {
	var req closureRequest
	if len(m.Data) > maxNixCacheRequest {
		return nixCacheError(400, "closure request of %d bytes, over %d", len(m.Data), maxNixCacheRequest)
	} else if err := decodeStrict(m.Data, &req); err != nil {
		return nixCacheError(400, "closure request is not {\"hash\":…,\"from\":…}: %v", err)
	}
	if !storeHashRE.MatchString(req.Hash) {
		return nixCacheError(400, "closure request hash %.64q is not a store path hash (32 characters of nix base32)", req.Hash)
	}
	if req.From < 0 {
		return nixCacheError(400, "closure request from %d is negative", req.From)
	}
	infos, missing, err := s.h.nixCache.closure(ctx, req.Hash)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nixCacheError(404, "no path %s in the hub's cache", req.Hash)
	case err != nil:
		return nixCacheError(503, "walking the closure of %s in the hub's cache: %v", req.Hash, err)
	case req.From > len(infos):
		return nixCacheError(400, "closure request from %d is beyond the %d paths of %s's closure", req.From, len(infos), req.Hash)
	}
	rep := closureReply{Total: len(infos), Missing: missing}
	size := 0
	for i := req.From; i < len(infos); i++ {
		if size > 0 && int64(size+len(infos[i])) > closurePageBytes.Load() {
			rep.Next = i
			break
		}
		rep.NarInfos = append(rep.NarInfos, string(infos[i]))
		size += len(infos[i])
	}
	r := nats.NewMsg("")
	r.Data, err = json.Marshal(rep)
	if err != nil {
		return nixCacheError(500, "encode the closure of %s: %v", req.Hash, err)
	}
	return r
}

// closure walks the References of the narinfos from the path with store
// hash root: every narinfo of its closure, each after its references
// (a path the others need comes first), and the references the cache
// lacks. ErrKeyNotFound: the cache lacks root itself.
func (c *NixCache) closure(ctx context.Context, root string) (infos [][]byte, missing []string, err error) {
	type node struct {
		info []byte
		refs []string
	}
	nodes := map[string]*node{}
	absent := map[string]bool{}
	// Breadth first, each level's narinfos looked up several at once.
	level := []string{root}
	for len(level) > 0 {
		if len(nodes)+len(level) > closureMaxPaths {
			return nil, nil, errors.New("the closure has more paths than the walk's bound")
		}
		values, err := c.narinfos(ctx, level)
		if err != nil {
			return nil, nil, err
		}
		var next []string
		for i, h := range level {
			if values[i] == nil {
				if h == root {
					return nil, nil, jetstream.ErrKeyNotFound
				}
				absent[h] = true
				missing = append(missing, h)
				continue
			}
			n := &node{info: values[i]}
			if ni, err := nixcache.ParseNarInfo(n.info); err == nil {
				for _, ref := range ni.References {
					if len(ref) >= 32 && storeHashRE.MatchString(ref[:32]) && ref[:32] != h {
						n.refs = append(n.refs, ref[:32])
					}
				}
			}
			sort.Strings(n.refs)
			nodes[h] = n
		}
		// The next level: references not seen yet, each once.
		seen := map[string]bool{}
		for _, h := range level {
			if n := nodes[h]; n != nil {
				for _, ref := range n.refs {
					if nodes[ref] == nil && !absent[ref] && !seen[ref] {
						seen[ref] = true
						next = append(next, ref)
					}
				}
			}
		}
		level = next
	}
	// References first: a post-order walk (iterative, the closure can be deep).
	done := map[string]bool{}
	type frame struct {
		h string
		i int
	}
	stack := []frame{{h: root}}
	done[root] = true
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		n := nodes[f.h]
		if f.i < len(n.refs) {
			ref := n.refs[f.i]
			f.i++
			if !done[ref] && nodes[ref] != nil {
				done[ref] = true
				stack = append(stack, frame{h: ref})
			}
			continue
		}
		infos = append(infos, n.info)
		stack = stack[:len(stack)-1]
	}
	sort.Strings(missing)
	return infos, missing, nil
}
