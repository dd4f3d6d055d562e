package streams

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/nixcache"
)

// Uploads into the hub's Nix cache over NATS, for those who have no
// JetStream rights at the hub (operators' `pinkie deploy` builds, builder
// agents): a request/reply service on
// _pinkie.nixcache.put.<who>.{has,nar,narinfo}, where who is "operator"
// (operators, through the CLIENTS account's import) or a host's name (that
// host's agent, over its leaf link: leafPermissions lets each host send on
// its own name only, with replies to its own nix cache inbox).
//
//   - has: a JSON list of store hashes → {"missing": [...]}.
//   - nar: one chunk of a NAR file, headers Pinkie-Url (nar/<hash>.nar.xz),
//     Pinkie-Offset and Pinkie-Size (the whole file's size) →
//     {"offset": bytes staged so far} or {"stored": true}. A chunk at the
//     wrong offset is not taken; the reply says where to go on, so an
//     upload cut short (or a hub restarted) resumes where it stopped.
//     The whole file is checked against the hash its URL names before it
//     enters the cache.
//     A NAR of one chunk may carry its narinfo (HeaderNarinfo, base64):
//     once the NAR is in, the narinfo is taken as by the narinfo call
//     and the reply says {"stored": true, "narinfo": true}, one round
//     trip for a small path instead of two.
//   - narinfo: the narinfo; taken only when its NAR is in the cache (whose
//     file hash was checked on upload) and its FileHash, when given, is
//     the one the NAR's name says. From an operator it must be signed by
//     the fleet's key (nix-signing.pub in the auth directory): operators
//     hold the secret key. From a host it comes unsigned (hosts never hold
//     the fleet's secret key): the hub drops whatever signatures it
//     carries and signs it with the fleet's secret key (nix-signing.sec),
//     so any authenticated host may put paths the cache lacks, and what it
//     puts is trusted fleet-wide. A path already in the cache is never
//     replaced.
const (
	nixCachePutPrefix = events.NixCachePutPrefix
	// NixCachePutOperator is what operators' uploads are sent on.
	NixCachePutOperator = nixCachePutPrefix + ".operator"
	nixPutChunk         = 512 << 10
	maxNarFile          = 8 << 30
	// narStoreChunk is the size of the object store's chunks of a NAR
	// (its default is 128 KiB): fewer messages to store, and to read
	// back for agents (nixcache_serve.go reads whatever size they are).
	narStoreChunk = 512 << 10
)

// NixCachePutHost is what host's agent sends its uploads on.
func NixCachePutHost(host string) string { return nixCachePutPrefix + "." + host }

// nixCachePutOps are the upload calls. Each is its own subscription and
// its own literal permission: nats-server 2.15.2 does not pass the hub's
// interest in a subject ending in a wildcard to a leaf whose permission
// also ends in one (its sublist ReverseMatch misses that case), so
// requests would find no responder at the agent.
var nixCachePutOps = []string{"has", "nar", "narinfo"}

// nixCachePutLeafPublish is what a host's leaf key needs to upload.
func nixCachePutLeafPublish(host string) []string {
	subjects := make([]string, 0, len(nixCachePutOps))
	for _, op := range nixCachePutOps {
		subjects = append(subjects, NixCachePutHost(host)+"."+op)
	}
	return subjects
}

// HeaderNarinfo carries, base64, the narinfo of a NAR sent in one chunk.
const HeaderNarinfo = "Pinkie-Narinfo"

// nixPutReply is the service's answer.
type nixPutReply struct {
	Missing []string `json:"missing,omitempty"`
	Offset  int64    `json:"offset,omitempty"`
	Stored  bool     `json:"stored,omitempty"`
	// Narinfo: the narinfo the NAR came with is in the cache too.
	Narinfo bool   `json:"narinfo,omitempty"`
	Error   string `json:"error,omitempty"`
}

// nixPutService stages NAR uploads in a directory until they are whole.
type nixPutService struct {
	cache *NixCache
	// trusted are the keys an upload must be signed by (the fleet's,
	// from the auth directory); without them, any signature will do.
	trusted []nixcache.PublicKey
	// signer is the fleet's secret key, which signs hosts' uploads; nil
	// when the hub has none, and then hosts' uploads are refused.
	signer *nixcache.SecretKey
	// orders say which hosts are builders at work (nil: any host).
	orders *buildOrderIndex
	// staging holds NARs until they are whole; one file's chunks are
	// handled in order, one at a time (lanes), several files at once.
	staging string
	// recent are NARs this hub stored lately, whose narinfo comes next.
	recent recentNars
	// staged are the staging files of NARs on their way.
	staged stagedFiles
}

func (h *Hub) startNixPut() error {
	s := &nixPutService{cache: h.nixCache, staging: filepath.Join(h.opts.DataDir, "nixcache-staging"), orders: h.orders}
	if h.opts.AuthDir != "" || h.opts.NixSigningKeyFile != "" {
		if k, err := h.fleetNixPublicKey(); err == nil {
			s.trusted = []nixcache.PublicKey{k}
		} else {
			h.log.Warn("no fleet Nix signing key in the auth directory: the nix cache takes uploads signed by any key (add one: pinkie keys add-nix-key DIR)", "err", err)
		}
		if k, err := h.fleetNixSecretKey(); err != nil {
			h.log.Warn("the fleet's Nix secret key is unusable: the nix cache refuses hosts' uploads (it cannot sign them)", "err", err)
		} else {
			s.signer = k
		}
	}
	if err := os.MkdirAll(s.staging, 0o700); err != nil {
		return fmt.Errorf("nix cache staging: %w", err)
	}
	handle := func(m *nats.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A host's replies go to its own inbox only: one host may not aim
		// the hub's answers at another's (as nixcache_serve.go).
		if who := nixPutWho(m.Subject); who != "operator" && !strings.HasPrefix(m.Reply, nixCacheInboxPrefix(who)+".") {
			h.log.Warn("nix cache upload with a reply subject outside the host's inbox; ignored", "subject", m.Subject, "reply", m.Reply)
			return
		}
		r := s.mayUpload(nixPutWho(m.Subject))
		if r.Error == "" {
			r = s.handle(ctx, m)
		}
		if r.Error != "" {
			h.log.Warn("nix cache upload refused", "subject", m.Subject, "err", r.Error)
		}
		b, _ := json.Marshal(r)
		_ = m.Respond(b)
	}
	// NAR chunks of several files at once, each file's in order; the
	// narinfos of several paths at once (each stands alone).
	nars := newLanes(nixPutParallel, 128, handle)
	infos := newLanes(nixPutParallel, 128, handle)
	for _, op := range nixCachePutOps {
		cb := handle
		switch op {
		case "nar":
			cb = func(m *nats.Msg) { nars.add(m.Header.Get("Pinkie-Url"), m) }
		case "narinfo":
			cb = func(m *nats.Msg) { infos.add(m.Reply, m) }
		}
		if _, err := h.nc.Subscribe(nixCachePutPrefix+".*."+op, leaderOnly(h, cb)); err != nil {
			return fmt.Errorf("nix cache uploads: %w", err)
		}
	}
	return nil
}

// nixPutParallel is how many NAR files the hub takes chunks of at once.
const nixPutParallel = 8

// hostUploadWindow is how long after its last build order a builder host
// may upload (requests expire after a day by default).
const hostUploadWindow = 24 * time.Hour

// mayUpload lets an operator upload, and a host only while it is a builder
// at work: ordered by the hub's planner to build within the last day. Any
// other host's upload would be a path the hub signs for the whole fleet.
func (s *nixPutService) mayUpload(who string) nixPutReply {
	if who == "operator" || s.orders == nil {
		return nixPutReply{}
	}
	ok, err := s.orders.OrderedSince(who, time.Now().Add(-hostUploadWindow))
	if err != nil {
		return nixPutReply{Error: "look up build orders: " + err.Error()}
	}
	if !ok {
		return nixPutReply{Error: fmt.Sprintf("host %s was not ordered to build anything in the last %s: only builders at work upload into the fleet's cache", who, hostUploadWindow)}
	}
	return nixPutReply{}
}

// nixPutWho is the <who> of an upload subject: "operator" or a host.
func nixPutWho(subject string) string {
	rest := strings.TrimPrefix(subject, nixCachePutPrefix+".")
	who, _, _ := strings.Cut(rest, ".")
	return who
}

func (s *nixPutService) handle(ctx context.Context, m *nats.Msg) nixPutReply {
	op := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	switch op {
	case "has":
		var hashes []string
		if err := json.Unmarshal(m.Data, &hashes); err != nil {
			return nixPutReply{Error: "has: want a JSON list of store hashes: " + err.Error()}
		}
		for _, h := range hashes {
			if !storeHashRE.MatchString(h) {
				return nixPutReply{Error: fmt.Sprintf("has: %q is not a store hash", h)}
			}
		}
		missing, err := s.cache.lacking(ctx, hashes)
		if err != nil {
			return nixPutReply{Error: "has: " + err.Error()}
		}
		return nixPutReply{Missing: missing}
	case "nar":
		r := s.putNar(ctx, m)
		if enc := m.Header.Get(HeaderNarinfo); enc != "" && r.Stored && r.Error == "" {
			info, err := base64.StdEncoding.DecodeString(enc)
			if err != nil || len(info) > maxNarinfo {
				return nixPutReply{Error: fmt.Sprintf("nar: the narinfo sent with %s is not base64 of at most %d bytes", m.Header.Get("Pinkie-Url"), maxNarinfo)}
			}
			if ri := s.putNarinfo(ctx, info, nixPutWho(m.Subject)); ri.Error != "" {
				return ri
			}
			r.Narinfo = true
		}
		return r
	case "narinfo":
		return s.putNarinfo(ctx, m.Data, nixPutWho(m.Subject))
	default:
		return nixPutReply{Error: fmt.Sprintf("unknown upload call %q", op)}
	}
}

// lacking are the hashes (in their order) whose narinfo the cache lacks.
func (c *NixCache) lacking(ctx context.Context, hashes []string) ([]string, error) {
	infos, err := c.narinfos(ctx, hashes)
	if err != nil {
		return nil, err
	}
	var missing []string
	for i, h := range hashes {
		if infos[i] == nil {
			missing = append(missing, h)
		}
	}
	return missing, nil
}

func (s *nixPutService) putNar(ctx context.Context, m *nats.Msg) nixPutReply {
	url := m.Header.Get("Pinkie-Url")
	if !narURLRE.MatchString(url) {
		return nixPutReply{Error: fmt.Sprintf("nar: %q is not a NAR file name under nar/", url)}
	}
	offset, err1 := strconv.ParseInt(m.Header.Get("Pinkie-Offset"), 10, 64)
	size, err2 := strconv.ParseInt(m.Header.Get("Pinkie-Size"), 10, 64)
	if err1 != nil || err2 != nil || offset < 0 || size <= 0 || size > maxNarFile || offset+int64(len(m.Data)) > size {
		return nixPutReply{Error: "nar: bad Pinkie-Offset or Pinkie-Size"}
	}
	part := filepath.Join(s.staging, strings.ReplaceAll(url, "/", "_")+".part")
	// A NAR that comes whole in one chunk (most paths) goes into the
	// cache from memory: no staging file to create and remove.
	if offset == 0 && int64(len(m.Data)) == size && !s.staged.isOpen(part) {
		if _, err := os.Stat(part); errors.Is(err, os.ErrNotExist) {
			if _, err := s.cache.nar.GetInfo(ctx, url); err == nil {
				return nixPutReply{Stored: true}
			}
			r, _ := s.storeNar(ctx, url, bytes.NewReader(m.Data))
			return r
		}
	}
	f, err := s.staged.open(part)
	if err != nil {
		return nixPutReply{Error: "nar: staging: " + err.Error()}
	}
	st, err := f.Stat()
	if err != nil {
		s.staged.close(part, false)
		return nixPutReply{Error: "nar: staging: " + err.Error()}
	}
	have := st.Size()
	// Only a NAR not staged yet is looked up in the cache: chunks on
	// their way cost no lookup each.
	if have == 0 {
		if _, err := s.cache.nar.GetInfo(ctx, url); err == nil {
			s.staged.close(part, true)
			return nixPutReply{Stored: true}
		}
	}
	if offset != have {
		return nixPutReply{Offset: have} // resume here
	}
	if _, err := f.WriteAt(m.Data, offset); err != nil {
		s.staged.close(part, false)
		return nixPutReply{Error: "nar: staging: " + err.Error()}
	}
	have += int64(len(m.Data))
	if have < size {
		return nixPutReply{Offset: have}
	}
	// Whole: it enters the cache if it is the file its name says.
	r, bad := s.storeNar(ctx, url, io.NewSectionReader(f, 0, size))
	s.staged.close(part, r.Stored || bad)
	return r
}

// storeNar puts a whole NAR file into the cache, if it is the file its
// name (its sha256) says; bad: it is not, and is dropped.
func (s *nixPutService) storeNar(ctx context.Context, url string, r io.ReadSeeker) (reply nixPutReply, bad bool) {
	sum := sha256.New()
	if _, err := io.Copy(sum, r); err != nil {
		return nixPutReply{Error: "nar: staging: " + err.Error()}, false
	}
	want := strings.TrimPrefix(url, "nar/")
	want = want[:strings.IndexByte(want, '.')]
	if got := nixcache.NixBase32(sum.Sum(nil)); got != want {
		return nixPutReply{Error: fmt.Sprintf("nar: %s has sha256 %s, not the %s its name says; dropped", url, got, want)}, true
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nixPutReply{Error: "nar: staging: " + err.Error()}, false
	}
	if _, err := s.cache.nar.Put(ctx, jetstream.ObjectMeta{Name: url, Opts: &jetstream.ObjectMetaOptions{ChunkSize: narStoreChunk}}, r); err != nil {
		return nixPutReply{Error: "nar: store: " + err.Error()}, false
	}
	s.recent.add(url)
	return nixPutReply{Stored: true}, false
}

func (s *nixPutService) putNarinfo(ctx context.Context, info []byte, who string) nixPutReply {
	ni, err := nixcache.ParseNarInfo(info)
	if err != nil {
		return nixPutReply{Error: "narinfo: " + err.Error()}
	}
	if who != "operator" {
		// A host's upload: the hub vouches for it with the fleet key.
		if s.signer == nil {
			return nixPutReply{Error: fmt.Sprintf("narinfo of %s: the hub has no fleet secret key to sign hosts' uploads with (pinkie keys add-nix-key AUTHDIR, then restart the hub)", ni.StorePath)}
		}
		ni.Sigs = nil
		if err := ni.Sign(*s.signer); err != nil {
			return nixPutReply{Error: fmt.Sprintf("narinfo of %s: sign: %v", ni.StorePath, err)}
		}
		info = ni.Format()
	} else if len(s.trusted) > 0 {
		if _, err := ni.Verify(s.trusted); err != nil {
			return nixPutReply{Error: fmt.Sprintf("narinfo of %s: %v (uploads must be signed with the fleet's key: nix copy --to 'file://DIR?secret-key=nix-signing.sec')", ni.StorePath, err)}
		}
	} else if len(ni.Sigs) == 0 {
		return nixPutReply{Error: "narinfo: unsigned; uploads must be signed with the fleet's key (nix copy --to 'file://DIR?secret-key=FILE')"}
	}
	hash := ni.HashPart()
	if ni.StoreDir() != "/nix/store" || !storeHashRE.MatchString(hash) {
		return nixPutReply{Error: fmt.Sprintf("narinfo: %s is not a /nix/store path", ni.StorePath)}
	}
	if err := checkNarURL(ni.URL); err != nil {
		return nixPutReply{Error: "narinfo: " + err.Error()}
	}
	if ni.FileHash != nil {
		if want := "nar/" + nixcache.NixBase32(ni.FileHash[:]) + "."; !strings.HasPrefix(ni.URL, want) {
			return nixPutReply{Error: fmt.Sprintf("narinfo of %s: FileHash %s is not the hash its URL %s names", ni.StorePath, ni.FileHash, ni.URL)}
		}
	}
	s.cache.namingMu.RLock()
	defer s.cache.namingMu.RUnlock()
	if s.recent.has(ni.URL) {
		// Stored just now by this hub: no lookup, which would load (and
		// keep cached for seconds) the store's block that holds it.
	} else if _, err := s.cache.nar.GetInfo(ctx, ni.URL); err != nil {
		return nixPutReply{Error: fmt.Sprintf("narinfo: its NAR %s is not in the cache yet: %v", ni.URL, err)}
	}
	if _, err := s.cache.narinfo.Create(ctx, hash, info); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return nixPutReply{Error: "narinfo: " + err.Error()}
	}
	return nixPutReply{Stored: true}
}
