package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// The hub serves its Nix binary cache to agents over NATS request/reply on
// their leaf link (issue 12): agents have no HTTP access to the hub. Every
// subject is scoped by host, so a host's leaf key can call only its own
// (leafPermissions), and replies go to an inbox under the same host's
// prefix, which only that host's leaf may receive.
//
//	_pinkie.nixcache.<host>.narinfo  body: store hash     → the narinfo
//	_pinkie.nixcache.<host>.nar      body: narChunkRequest → ≤ narChunkSize bytes
//	_pinkie.nixcache.<host>.key      body: empty          → the fleet's public key
//	_pinkie.nixcache.<host>.closure  body: closureRequest → the closure's narinfos, a page
//	                                                        (nixcache_closure.go)
//
// Errors come back as an empty body with HeaderNixCacheError (and
// HeaderNixCacheStatus 404 for what the cache lacks), never as silence.
const (
	nixCacheSubjectPrefix = events.NixCacheSubjectPrefix
	// narChunkSize is the most one NAR reply carries: the requester pulls
	// chunks in order, a few on their way, so request pacing is the flow
	// control and a cut resumes at its offset.
	narChunkSize = 512 << 10

	HeaderNixCacheError  = "Pinkie-Nix-Cache-Error"
	HeaderNixCacheStatus = "Pinkie-Nix-Cache-Status"
	HeaderNarSize        = "Pinkie-Nar-Size"
)

// nixCacheSubject is the subject a host calls for op (narinfo, nar, key).
func nixCacheSubject(host, op string) string { return nixCacheSubjectPrefix + "." + host + "." + op }

// nixCacheInboxPrefix is where a host's replies go: its agent's requests
// use it as their inbox prefix.
func nixCacheInboxPrefix(host string) string { return nixCacheSubjectPrefix + "." + host + ".r" }

// nixCacheLeafPublish and nixCacheLeafSubscribe are what a host's leaf key
// needs to use the hub's cache: call its own subjects (reads, and uploads
// on its own name: nixcache_put.go), receive its own replies.
func nixCacheLeafPublish(host string) []string {
	return append([]string{nixCacheSubject(host, "narinfo"), nixCacheSubject(host, "nar"), nixCacheSubject(host, "key"), nixCacheSubject(host, "closure")},
		nixCachePutLeafPublish(host)...)
}

func nixCacheLeafSubscribe(host string) []string {
	return []string{nixCacheInboxPrefix(host) + ".>"}
}

// narChunkRequest asks for the bytes of a NAR from Offset on.
type narChunkRequest struct {
	URL    string `json:"url"`
	Offset int64  `json:"offset"`
}

// maxNixCacheRequest bounds a request body: a hash or a URL and an offset.
const maxNixCacheRequest = 1024

// nixCacheService answers agents' cache requests on the hub.
type nixCacheService struct {
	h       *Hub
	readers narReaders
}

// startNixCacheService subscribes the hub to every host's cache subjects.
// The subscriptions end with the hub's connection.
func (h *Hub) startNixCacheService(ctx context.Context) error {
	s := &nixCacheService{h: h, readers: narReaders{open: map[string]*narReader{}}}
	// NAR chunks on their own subscription, so a large NAR in flight does
	// not hold up narinfo lookups; several NARs (of one host or several)
	// served at once, each NAR's chunks in the order they were asked for,
	// so its reader goes on where the previous chunk stopped.
	nars := newLanes(nixServeParallel, 256, func(m *nats.Msg) { s.serve(ctx, m, s.nar) })
	for op, handle := range map[string]func(context.Context, string, *nats.Msg) *nats.Msg{
		"narinfo": s.narinfo, "key": s.key, "nar": s.nar, "closure": s.closure,
	} {
		cb := func(m *nats.Msg) { s.serve(ctx, m, handle) }
		if op == "nar" {
			cb = func(m *nats.Msg) { nars.add(narLaneKey(m), m) }
		}
		sub, err := h.nc.Subscribe(nixCacheSubjectPrefix+".*."+op, leaderOnly(h, cb))
		if err != nil {
			return fmt.Errorf("subscribe to the nix cache's %s requests: %w", op, err)
		}
		_ = sub.SetPendingLimits(1024, 64<<20)
	}
	return nil
}

// nixServeParallel is how many NAR transfers the hub reads chunks for at
// once (agents' prefetches pull a few NARs each).
const nixServeParallel = 16

// narLaneKey is the lane of a NAR chunk request: the caller's subject (its
// host) and the NAR it asks for. A request that is not a chunk request has
// a lane of its own and is refused by nar.
func narLaneKey(m *nats.Msg) string {
	var req narChunkRequest
	if len(m.Data) > maxNixCacheRequest || json.Unmarshal(m.Data, &req) != nil {
		return m.Subject + " ?" + m.Reply
	}
	return m.Subject + " " + req.URL
}

// leaderOnly runs handle on the hub leader only: on a clustered hub every
// node sees the cache's requests, and one answers, the one that stages
// uploads and collects (a single hub always leads).
func leaderOnly(h *Hub, handle nats.MsgHandler) nats.MsgHandler {
	return func(m *nats.Msg) {
		if h.Leading() {
			handle(m)
		}
	}
}

// serve checks who asks and where the answer goes, runs handle and sends
// its reply.
func (s *nixCacheService) serve(ctx context.Context, m *nats.Msg, handle func(context.Context, string, *nats.Msg) *nats.Msg) {
	tokens := strings.Split(m.Subject, ".")
	if len(tokens) != 4 {
		return
	}
	host := tokens[2]
	// A reply outside the caller's own inbox would let one host aim the
	// hub's answers at another's: no answer at all.
	if events.ValidHost(host) != nil || !strings.HasPrefix(m.Reply, nixCacheInboxPrefix(host)+".") {
		s.h.log.Warn("nix cache request with a reply subject outside the caller's inbox; ignored", "subject", m.Subject, "reply", m.Reply)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reply := handle(rctx, host, m)
	reply.Subject = m.Reply
	if err := s.h.nc.PublishMsg(reply); err != nil {
		s.h.log.Warn("nix cache reply failed", "subject", m.Subject, "host", host, "err", err)
	}
}

func nixCacheError(status int, format string, args ...any) *nats.Msg {
	r := nats.NewMsg("")
	r.Header.Set(HeaderNixCacheStatus, strconv.Itoa(status))
	r.Header.Set(HeaderNixCacheError, fmt.Sprintf(format, args...))
	return r
}

func (s *nixCacheService) narinfo(ctx context.Context, host string, m *nats.Msg) *nats.Msg {
	hash := string(m.Data)
	if !storeHashRE.MatchString(hash) {
		return nixCacheError(400, "narinfo request %.64q is not a store path hash (32 characters of nix base32)", hash)
	}
	e, err := s.h.nixCache.narinfo.Get(ctx, hash)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nixCacheError(404, "no path %s in the hub's cache", hash)
	} else if err != nil {
		return nixCacheError(503, "the hub's cache is unavailable: %v", err)
	}
	r := nats.NewMsg("")
	r.Data = e.Value()
	return r
}

func (s *nixCacheService) key(_ context.Context, _ string, _ *nats.Msg) *nats.Msg {
	key, err := s.h.fleetNixPublicKey()
	if errors.Is(err, errNoFleetNixKey) {
		return nixCacheError(404, "%v", err)
	} else if err != nil {
		return nixCacheError(500, "the fleet signing key: %v", err)
	}
	r := nats.NewMsg("")
	r.Data = []byte(key.String())
	return r
}

func (s *nixCacheService) nar(ctx context.Context, host string, m *nats.Msg) *nats.Msg {
	if len(m.Data) > maxNixCacheRequest {
		return nixCacheError(400, "NAR request of %d bytes, over %d", len(m.Data), maxNixCacheRequest)
	}
	var req narChunkRequest
	if err := decodeStrict(m.Data, &req); err != nil {
		return nixCacheError(400, "NAR request is not {\"url\":…,\"offset\":…}: %v", err)
	}
	if !narURLRE.MatchString(req.URL) || path.Clean(req.URL) != req.URL {
		return nixCacheError(400, "NAR request URL %.80q is not a NAR file under nar/", req.URL)
	}
	if req.Offset < 0 {
		return nixCacheError(400, "NAR request offset %d is negative", req.Offset)
	}
	buf, size, err := s.readers.chunk(ctx, s.h.nixCache, host, req)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nixCacheError(404, "no NAR %s in the hub's cache", req.URL)
	case errors.Is(err, errBeyondNar):
		return nixCacheError(400, "NAR request offset %d is beyond %s's %d bytes", req.Offset, req.URL, size)
	case err != nil:
		s.h.log.Warn("reading a NAR from the cache failed", "host", host, "url", req.URL, "offset", req.Offset, "err", err)
		return nixCacheError(503, "reading %s from the hub's cache: %v", req.URL, err)
	}
	r := nats.NewMsg("")
	r.Header.Set(HeaderNarSize, strconv.FormatInt(size, 10))
	r.Data = buf
	return r
}

var errBeyondNar = errors.New("offset beyond the NAR")

// narReaders keeps the readers of NARs being pulled, keyed by the host
// and the offset their next chunk starts at, so pulling a NAR in order
// reads it once: the agent keeps several requests on their way, in order
// on one connection, and the hub answers them one after the other on the
// NAR's lane (several NARs at once, each in order). A request at any other offset (a resumed transfer)
// opens a new reader and skips to it.
type narReaders struct {
	mu   sync.Mutex
	open map[string]*narReader
}

// narReader reads a NAR from the object store one stored chunk at a time
// (direct gets of the next message on the object's chunk subject), so the
// hub holds at most one stored chunk per reader, and opening one costs a
// lookup, not a consumer (ObjectStore.Get pushes the whole object into a
// consumer's buffers at once).
type narReader struct {
	stream jetstream.Stream
	subj   string // the object's chunk subject
	next   uint64 // the stream sequence to look for the next chunk from
	left   []byte // the part of the last chunk not served yet
	size   int64
	used   time.Time
}

const (
	narReaderIdle = 30 * time.Second
	narReadersMax = 32
)

func narReaderKey(host, url string, off int64) string {
	return host + " " + url + "@" + strconv.FormatInt(off, 10)
}

func (rs *narReaders) take(key string) *narReader {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	now := time.Now()
	for k, r := range rs.open {
		if now.Sub(r.used) > narReaderIdle {
			delete(rs.open, k)
		}
	}
	r := rs.open[key]
	delete(rs.open, key)
	return r
}

func (rs *narReaders) put(key string, r *narReader) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for len(rs.open) >= narReadersMax {
		oldest := ""
		for k, o := range rs.open {
			if oldest == "" || o.used.Before(rs.open[oldest].used) {
				oldest = k
			}
		}
		delete(rs.open, oldest)
	}
	r.used = time.Now()
	rs.open[key] = r
}

// chunk reads at most narChunkSize bytes of req.URL from req.Offset and
// returns them with the NAR's size.
func (rs *narReaders) chunk(ctx context.Context, c *NixCache, host string, req narChunkRequest) ([]byte, int64, error) {
	r := rs.take(narReaderKey(host, req.URL, req.Offset))
	if r == nil {
		info, err := c.nar.GetInfo(ctx, req.URL)
		if err != nil {
			return nil, 0, err
		}
		r = &narReader{stream: c.narStream, subj: narChunkSubject(info.NUID), next: 1, size: int64(info.Size)}
		if req.Offset > r.size {
			return nil, r.size, errBeyondNar
		}
		if err := r.skip(ctx, req.Offset); err != nil {
			return nil, r.size, fmt.Errorf("skip to offset %d: %w", req.Offset, err)
		}
	}
	buf := make([]byte, min(int64(narChunkSize), r.size-req.Offset))
	if err := r.readFull(ctx, buf); err != nil {
		return nil, r.size, err
	}
	if next := req.Offset + int64(len(buf)); next < r.size {
		rs.put(narReaderKey(host, req.URL, next), r)
	}
	return buf, r.size, nil
}

// narChunkSubject is where the object store keeps the chunks of the
// object with this NUID (the object store's layout, ADR-20).
func narChunkSubject(nuid string) string { return events.ObjectChunkSubject(NixNarBucket, nuid) }

// fill makes sure r.left holds bytes: the next stored chunk if needed.
func (r *narReader) fill(ctx context.Context) error {
	if len(r.left) > 0 {
		return nil
	}
	m, err := r.stream.GetMsg(ctx, r.next, jetstream.WithGetMsgSubject(r.subj))
	if err != nil {
		return fmt.Errorf("read the NAR's chunk after sequence %d: %w", r.next, err)
	}
	if len(m.Data) == 0 {
		return fmt.Errorf("the NAR's chunk at sequence %d is empty", m.Sequence)
	}
	r.next, r.left = m.Sequence+1, m.Data
	return nil
}

func (r *narReader) readFull(ctx context.Context, buf []byte) error {
	for n := 0; n < len(buf); {
		if err := r.fill(ctx); err != nil {
			return err
		}
		k := copy(buf[n:], r.left)
		r.left, n = r.left[k:], n+k
	}
	return nil
}

func (r *narReader) skip(ctx context.Context, n int64) error {
	for n > 0 {
		if err := r.fill(ctx); err != nil {
			return err
		}
		k := min(n, int64(len(r.left)))
		r.left, n = r.left[k:], n-k
	}
	return nil
}
