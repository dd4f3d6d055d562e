package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/nixcache"
)

// NixSubstituter is an agent's loopback binary cache for nix: it speaks the
// binary cache protocol on 127.0.0.1 (/nix-cache-info, /<hash>.narinfo,
// /nar/<file>) and answers from the hub's cache over the agent's leaf link
// (nixcache_serve.go), streaming NAR chunks as they arrive. Read-only.
type NixSubstituter struct {
	host   string
	pinned string
	log    *slog.Logger
	// addr is where it listens; ln the listener until Run takes it.
	addr string
	ln   net.Listener
	// Timeout bounds one request to the hub (default 30s).
	Timeout time.Duration

	// budget holds a token for each NAR chunk asked for or held and not
	// yet written to nix (narFetchBudget).
	budget chan struct{}

	mu     sync.Mutex
	nc     *nats.Conn
	mux    *nixMux // replies to NAR chunk requests
	learnt string
	sizes  map[string]int64 // NAR file sizes by URL, from narinfos served
	// transfers counts NARs on their way (fetched or uploaded); raised is
	// what the Go memory limit was raised by for them.
	transfers int
	raised    int64
	lower     *time.Timer

	// servedNars and servedBytes count the NAR files (whole ones) and
	// bytes served to nix since the start, prefetched ones when they came
	// from the hub: the activator's difference around a fetch is what that
	// fetch took from the hub.
	servedNars, servedBytes atomic.Int64

	pf prefetchState // closure prefetches (nixcache_prefetch.go)
}

// Served returns how many whole NAR files, and how many bytes of NAR
// files, the substituter has served to nix since it started.
func (s *NixSubstituter) Served() (nars int, bytes int64) {
	return int(s.servedNars.Load()), s.servedBytes.Load()
}

// NewNixSubstituter listens on listen (a loopback address; "" is
// 127.0.0.1 on a random port) for host's agent. pinnedKey, when set, is
// the fleet key nix is told to trust, whatever the hub says.
func NewNixSubstituter(host, listen, pinnedKey string, log *slog.Logger) (*NixSubstituter, error) {
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	h, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--cache-listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--cache-listen %q: the substituter serves loopback only (127.0.0.1 or ::1)", listen)
	}
	if pinnedKey != "" {
		if _, err := nixcache.ParsePublicKey(pinnedKey); err != nil {
			return nil, fmt.Errorf("--nix-trusted-key: %w", err)
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("--cache-listen: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &NixSubstituter{host: host, pinned: pinnedKey, log: log, addr: ln.Addr().String(), ln: ln, Timeout: 30 * time.Second,
		budget: make(chan struct{}, narFetchBudget)}, nil
}

// Name implements AgentService.
func (s *NixSubstituter) Name() string { return "nix-substituter" }

// URL is the substituter's address for nix.
func (s *NixSubstituter) URL() string { return "http://" + s.addr }

// Run implements AgentService: it serves until ctx ends.
func (s *NixSubstituter) Run(ctx context.Context, a *Agent) error {
	nc, err := nats.Connect("", nats.InProcessServer(a.Server()), nats.Name("pinkie-agent-nix-substituter"),
		nats.CustomInboxPrefix(nixCacheInboxPrefix(s.host)), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect the nix substituter to the agent's server: %w", err)
	}
	defer nc.Close()
	mux, err := openNixMux(nc)
	if err != nil {
		return fmt.Errorf("nix substituter: %w", err)
	}
	defer mux.close()
	s.mu.Lock()
	s.nc, s.mux = nc, mux
	s.mu.Unlock()
	s.setPrefetchDir(filepath.Join(a.opts.DataDir, "nix-prefetch"))
	defer func() { s.mu.Lock(); s.nc, s.mux = nil, nil; s.mu.Unlock() }()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	s.mu.Unlock()
	if ln == nil { // a restart after an error: the first listener is closed
		if ln, err = net.Listen("tcp", s.addr); err != nil {
			return fmt.Errorf("nix substituter: %w", err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	s.log.Info("nix substituter serving the hub's cache on loopback", "url", s.URL(), "pinned_key", s.pinned != "")
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-done:
		return fmt.Errorf("nix substituter: %w", err)
	}
}

// errNixCache is an answer from the hub's cache: a status and the reason.
type errNixCache struct {
	Status int
	Reason string
}

func (e *errNixCache) Error() string { return e.Reason }

// call sends one request to the hub's cache and returns the reply, or the
// error the hub answered.
func (s *NixSubstituter) call(ctx context.Context, op string, body []byte) (*nats.Msg, error) {
	s.mu.Lock()
	nc := s.nc
	s.mu.Unlock()
	if nc == nil {
		return nil, &errNixCache{Status: 503, Reason: "the agent's nix substituter is not connected yet"}
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	subj := nixCacheSubject(s.host, op)
	m, err := nc.RequestWithContext(ctx, subj, body)
	return nixCacheAnswer(subj, m, err)
}

// nixCacheAnswer is the hub's reply to a request on subj, or the error it
// answered or the failure to get one.
func nixCacheAnswer(subj string, m *nats.Msg, err error) (*nats.Msg, error) {
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, errNoResponder), errors.Is(err, errLinkDown):
		return nil, &errNixCache{Status: 503, Reason: "the hub is not reachable over the leaf link (no answer on " + subj + ")"}
	case err != nil:
		return nil, &errNixCache{Status: 504, Reason: fmt.Sprintf("asking the hub's cache (%s): %v", subj, err)}
	}
	if reason := m.Header.Get(HeaderNixCacheError); reason != "" {
		st, _ := strconv.Atoi(m.Header.Get(HeaderNixCacheStatus))
		if st == 0 {
			st = 502
		}
		return nil, &errNixCache{Status: st, Reason: reason}
	}
	return m, nil
}

// Reach makes one round trip to the hub over the leaf link (the key
// request, whatever the answer): nil once the hub answered. The activator
// uses it after a switch to prove the new configuration left the agent
// its link (magic rollback); the link's state alone would not prove the
// hub still answers.
func (s *NixSubstituter) Reach(ctx context.Context) error {
	s.mu.Lock()
	nc := s.nc
	s.mu.Unlock()
	if nc == nil {
		return errors.New("the agent's connection for hub requests is not up yet")
	}
	subj := nixCacheSubject(s.host, "key")
	if _, err := nc.RequestWithContext(ctx, subj, nil); err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return errors.New("the hub is not reachable over the leaf link (no answer on " + subj + ")")
		}
		return fmt.Errorf("asking the hub (%s): %w", subj, err)
	}
	return nil
}

// TrustedKey is the fleet public key nix must trust: the pinned one, else
// the one the hub holds (asked each time, so a rotated key is seen).
func (s *NixSubstituter) TrustedKey(ctx context.Context) (string, error) {
	if s.pinned != "" {
		return s.pinned, nil
	}
	m, err := s.call(ctx, "key", nil)
	if err != nil {
		return "", fmt.Errorf("learning the fleet's signing key from the hub: %w", err)
	}
	key := strings.TrimSpace(string(m.Data))
	if _, err := nixcache.ParsePublicKey(key); err != nil {
		return "", fmt.Errorf("the hub's fleet signing key: %w", err)
	}
	s.mu.Lock()
	if s.learnt != key {
		s.log.Info("learnt the fleet's nix signing key from the hub", "key", key, "previous", s.learnt)
		s.learnt = key
	}
	s.mu.Unlock()
	return key, nil
}

// Source returns the substituter's URL and the key to trust for it.
func (s *NixSubstituter) Source(ctx context.Context) (url, trustedKey string, err error) {
	key, err := s.TrustedKey(ctx)
	if err != nil {
		return "", "", err
	}
	return s.URL(), key, nil
}

// storePathHash is the hash part of a store path (its narinfo's key).
func storePathHash(storePath string) (string, error) {
	base := path.Base(storePath)
	if len(base) < 32 || !storeHashRE.MatchString(base[:32]) {
		return "", fmt.Errorf("%q is not a store path", storePath)
	}
	return base[:32], nil
}

// Has reports whether the hub's cache holds storePath.
func (s *NixSubstituter) Has(ctx context.Context, storePath string) (bool, error) {
	hash, err := storePathHash(storePath)
	if err != nil {
		return false, err
	}
	_, err = s.call(ctx, "narinfo", []byte(hash))
	var ce *errNixCache
	if errors.As(err, &ce) && ce.Status == 404 {
		return false, nil
	}
	return err == nil, err
}

// nixCacheInfo is what /nix-cache-info says: the priority puts the fleet's
// cache before cache.nixos.org (40).
const nixCacheInfo = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n"

// ServeHTTP serves the binary cache protocol, read-only.
func (s *NixSubstituter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/prefetch" {
		s.servePrefetch(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "read-only binary cache", http.StatusMethodNotAllowed)
		return
	}
	defer s.beginTransfer()()
	p := strings.TrimPrefix(r.URL.Path, "/")
	if s.servePrefetched(w, r, p) {
		return
	}
	switch {
	case p == "nix-cache-info":
		w.Header().Set("Content-Type", "text/x-nix-cache-info")
		fmt.Fprint(w, nixCacheInfo)
	case strings.HasSuffix(p, ".narinfo"):
		hash := strings.TrimSuffix(p, ".narinfo")
		if !storeHashRE.MatchString(hash) {
			http.Error(w, "not a narinfo name", http.StatusNotFound)
			return
		}
		m, err := s.call(r.Context(), "narinfo", []byte(hash))
		if err != nil {
			s.httpError(w, "narinfo "+hash, err)
			return
		}
		if ni, err := nixcache.ParseNarInfo(m.Data); err == nil && ni.FileSize > 0 {
			s.noteSize(ni.URL, int64(ni.FileSize))
		}
		w.Header().Set("Content-Type", "text/x-nix-narinfo")
		w.Header().Set("Content-Length", strconv.Itoa(len(m.Data)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(m.Data)
		}
	case narURLRE.MatchString(p) && path.Clean(p) == p:
		s.serveNar(w, r, p)
	default:
		http.NotFound(w, r)
	}
}

func (s *NixSubstituter) httpError(w http.ResponseWriter, what string, err error) {
	st := http.StatusBadGateway
	var ce *errNixCache
	if errors.As(err, &ce) {
		st = ce.Status
	}
	if st != http.StatusNotFound {
		s.log.Warn("nix substituter could not answer from the hub's cache", "what", what, "err", err)
	}
	http.Error(w, err.Error(), st)
}
