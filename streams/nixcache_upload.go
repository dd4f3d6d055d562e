package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/nixcache"
)

// The client side of uploads into the hub's Nix cache (the service is in
// nixcache_put.go): several paths at once, several chunks of a NAR in
// flight, and a hub that goes away (a cut link, a restart) waited for and
// resumed from what it already has.

// NixUploadStats is what UploadNixCacheDir sent.
type NixUploadStats struct {
	Paths     int   `json:"paths"`
	Missing   int   `json:"missing"`
	BytesSent int64 `json:"bytes_sent"`
	// BytesResent is the part of BytesSent that was sent before: chunks
	// lost when the hub or the link went away, sent again from where the
	// hub stood.
	BytesResent int64 `json:"bytes_resent"`
	// Retries counts calls tried again because the hub did not answer.
	Retries int `json:"retries"`
	// MissingHashes are the store hashes the hub's cache lacked: the
	// paths this upload sent.
	MissingHashes []string `json:"missing_hashes,omitempty"`
}

// Requester sends a request and returns its reply (a *Client, which fails
// fast on a refused subject).
type Requester interface {
	Request(ctx context.Context, m *nats.Msg) (*nats.Msg, error)
}

// UploadOption tunes UploadNixCacheDir.
type UploadOption func(*uploadConfig)

type uploadConfig struct {
	parallel, window int
	retryFor         time.Duration
	progress         func(url string, offset, size int64)
}

// UploadParallel sets how many paths are uploaded at once (default 8).
func UploadParallel(n int) UploadOption { return func(c *uploadConfig) { c.parallel = max(n, 1) } }

// UploadWindow sets how many chunks of one NAR may be on their way
// unanswered (default 4). It takes effect where the Requester is a
// *Client or an agent's link; any other sends one chunk at a time.
func UploadWindow(n int) UploadOption { return func(c *uploadConfig) { c.window = max(n, 1) } }

// UploadRetryFor bounds how long an upload waits for a hub that does not
// answer (restarting, or the link cut) before it fails (default 2m).
func UploadRetryFor(d time.Duration) UploadOption { return func(c *uploadConfig) { c.retryFor = d } }

// UploadProgress calls f each time the hub took a chunk of a NAR: offset
// is how much of the file it holds.
func UploadProgress(f func(url string, offset, size int64)) UploadOption {
	return func(c *uploadConfig) { c.progress = f }
}

const (
	nixUploadParallel = 8
	nixUploadWindow   = 4
	nixUploadRetryFor = 2 * time.Minute
	// nixCallTimeout bounds one answer; the last chunk of a NAR, which
	// has the hub check and store the whole file, gets nixStoreTimeout.
	nixCallTimeout  = 30 * time.Second
	nixStoreTimeout = 5 * time.Minute
	// nixNarAttempts bounds the times one NAR is taken up again.
	nixNarAttempts = 50
)

// errRefused is the hub refusing an upload: final, never retried.
type errRefused struct{ reason string }

func (e *errRefused) Error() string { return "nix cache refused: " + e.reason }

// errBadReply is an answer that is not the service's: final.
var errBadReply = errors.New("bad reply")

// UploadNixCacheDir uploads a local binary cache directory (nix copy --to
// file://DIR, signed) into the hub's cache over c: only the paths the
// cache lacks, several at once, each NAR in chunks from where the hub has
// it, then its narinfo. prefix is the service subject the caller may use
// (NixCachePutOperator for operators). While the hub does not answer it
// tries again with backoff, up to UploadRetryFor, and goes on from what
// the hub holds.
func UploadNixCacheDir(ctx context.Context, c Requester, prefix, dir string, opts ...UploadOption) (NixUploadStats, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return NixUploadStats{}, fmt.Errorf("read binary cache %s: %w", dir, err)
	}
	paths := map[string]func() (uploadItem, error){}
	for _, e := range entries {
		if h, ok := strings.CutSuffix(e.Name(), ".narinfo"); ok && storeHashRE.MatchString(h) {
			paths[h] = func() (uploadItem, error) {
				info, err := bounded.ReadPath(filepath.Join(dir, h+".narinfo"), maxNarinfo)
				if err != nil {
					return uploadItem{}, err
				}
				url, err := narinfoURL(info)
				if err != nil {
					return uploadItem{}, fmt.Errorf("%s.narinfo: %w", h, err)
				}
				file := filepath.Join(dir, filepath.FromSlash(url))
				fi, err := os.Stat(file)
				if err != nil {
					return uploadItem{}, fmt.Errorf("NAR %s: %w", url, err)
				}
				return uploadItem{info: info, url: url, size: fi.Size(), open: func(context.Context) (io.ReadCloser, error) { return os.Open(file) }}, nil
			}
		}
	}
	return upload(ctx, c, prefix, paths, opts)
}

// NixUploadPath is a store path to upload straight from the local store,
// without a binary cache directory first: its narinfo (URL nar/<NAR
// hash>.nar, Compression none, signed where the caller holds the fleet's
// key), and Open, which streams its NAR from the start (nix store
// dump-path PATH), called again to resume a cut upload.
type NixUploadPath struct {
	Info *nixcache.NarInfo
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// NixStorePaths are the local store's paths of infos to upload, each NAR
// serialised from the store as it is read (nixcache.DumpPath, what nix
// store dump-path writes) and read again from the start to resume.
func NixStorePaths(infos []*nixcache.NarInfo) []NixUploadPath {
	paths := make([]NixUploadPath, 0, len(infos))
	for _, ni := range infos {
		path := ni.StorePath
		paths = append(paths, NixUploadPath{Info: ni, Open: func(context.Context) (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(nixcache.DumpPath(pw, path)) }()
			return pr, nil
		}})
	}
	return paths
}

// UploadNixPaths uploads store paths into the hub's cache as
// UploadNixCacheDir does, streaming each NAR the cache lacks from Open:
// nothing is serialised, compressed or written for paths the hub has, so
// a deploy after a one-path change reads one NAR, not the closure.
func UploadNixPaths(ctx context.Context, c Requester, prefix string, paths []NixUploadPath, opts ...UploadOption) (NixUploadStats, error) {
	items := map[string]func() (uploadItem, error){}
	for _, p := range paths {
		ni := p.Info
		if err := checkNarURL(ni.URL); err != nil {
			return NixUploadStats{}, fmt.Errorf("%s: %w", ni.StorePath, err)
		}
		if ni.FileSize == 0 {
			return NixUploadStats{}, fmt.Errorf("%s: the narinfo has no FileSize", ni.StorePath)
		}
		items[ni.HashPart()] = func() (uploadItem, error) {
			return uploadItem{info: ni.Format(), url: ni.URL, size: int64(ni.FileSize), open: p.Open}, nil
		}
	}
	return upload(ctx, c, prefix, items, opts)
}

// uploadItem is one path to send: its narinfo, and its NAR file.
type uploadItem struct {
	info []byte
	url  string
	size int64
	open func(context.Context) (io.ReadCloser, error)
}

// upload sends the paths (by store hash) the hub's cache lacks.
func upload(ctx context.Context, c Requester, prefix string, paths map[string]func() (uploadItem, error), opts []UploadOption) (NixUploadStats, error) {
	u := &uploader{c: c, prefix: prefix, cfg: uploadConfig{parallel: nixUploadParallel, window: nixUploadWindow, retryFor: nixUploadRetryFor}}
	for _, o := range opts {
		o(&u.cfg)
	}
	switch r := c.(type) {
	case *Client:
		u.nc = r.Conn
	case connRequester:
		u.nc = r.nc
	}
	if u.nc != nil {
		mux, err := openNixMux(u.nc)
		if err != nil {
			return u.st, fmt.Errorf("nix cache upload: %w", err)
		}
		defer mux.close()
		u.mux = mux
	}
	hashes := make([]string, 0, len(paths))
	for h := range paths {
		hashes = append(hashes, h)
	}
	slices.Sort(hashes)
	u.st.Paths = len(hashes)
	body, _ := json.Marshal(hashes)
	var r nixPutReply
	err := u.retry(ctx, "nix cache has", func() (err error) {
		r, err = u.call(ctx, "has", &nats.Msg{Data: body}, nixCallTimeout)
		return err
	})
	if err != nil {
		return u.st, err
	}
	u.st.Missing, u.st.MissingHashes = len(r.Missing), r.Missing

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range min(u.cfg.parallel, len(r.Missing)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range jobs {
				item, ok := paths[h]
				if !ok {
					cancel(fmt.Errorf("nix cache has: the hub says %s is missing, which was not asked about", h))
					continue
				}
				if err := u.uploadPath(ctx, item); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for _, h := range r.Missing {
		select {
		case jobs <- h:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return u.stats(), err
	}
	return u.stats(), nil
}

// uploader is one UploadNixCacheDir run.
type uploader struct {
	c      Requester
	nc     *nats.Conn // nil: chunks go one at a time through c
	mux    *nixMux    // replies to chunks, when nc is set
	prefix string
	cfg    uploadConfig
	mu     sync.Mutex
	st     NixUploadStats
}

func (u *uploader) stats() NixUploadStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.st
}

func (u *uploader) count(f func(*NixUploadStats)) {
	u.mu.Lock()
	f(&u.st)
	u.mu.Unlock()
}

// uploadPath sends a path's NAR, then its narinfo.
func (u *uploader) uploadPath(ctx context.Context, item func() (uploadItem, error)) error {
	it, err := item()
	if err != nil {
		return err
	}
	infoStored, err := u.uploadNar(ctx, it)
	if err != nil {
		return err
	}
	if !infoStored {
		err = u.retry(ctx, "narinfo of "+it.url, func() error {
			_, err := u.call(ctx, "narinfo", &nats.Msg{Data: it.info}, nixCallTimeout)
			return err
		})
		if err != nil {
			return err
		}
	}
	u.count(func(st *NixUploadStats) { st.BytesSent += int64(len(it.info)) })
	return nil
}

// call sends one request on c and decodes the service's reply.
func (u *uploader) call(ctx context.Context, op string, m *nats.Msg, timeout time.Duration) (nixPutReply, error) {
	m.Subject = u.prefix + "." + op
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if u.nc != nil {
		var stop func() bool
		rctx, stop = whileLinked(rctx, u.nc)
		defer stop()
	}
	resp, err := u.c.Request(rctx, m)
	if err != nil && u.nc != nil && !u.nc.IsConnected() {
		err = errLinkDown
	}
	if err != nil {
		return nixPutReply{}, fmt.Errorf("nix cache %s: %w", op, err)
	}
	return decodePutReply(op, resp)
}

func decodePutReply(op string, resp *nats.Msg) (nixPutReply, error) {
	var r nixPutReply
	if resp.Header.Get("Status") == "503" {
		return r, fmt.Errorf("nix cache %s: %w", op, errNoResponder)
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return r, fmt.Errorf("nix cache %s: %w: %v", op, errBadReply, err)
	}
	if r.Error != "" {
		return r, &errRefused{reason: r.Error}
	}
	return r, nil
}

// retryable says whether err may pass when tried again: the hub away or
// slow, not the hub saying no, nor the caller giving up.
func retryable(ctx context.Context, err error) bool {
	var refused *errRefused
	return ctx.Err() == nil && !errors.As(err, &refused) && !errors.Is(err, ErrNotPermitted) &&
		!errors.Is(err, errBadReply) && !errors.Is(err, nats.ErrConnectionClosed)
}

// retry runs call until it succeeds or fails for good; while the hub does
// not answer it waits with backoff, for at most cfg.retryFor.
func (u *uploader) retry(ctx context.Context, what string, call func() error) error {
	var since time.Time
	for pause := 100 * time.Millisecond; ; pause = min(pause*2, 3*time.Second) {
		err := call()
		if err == nil || !retryable(ctx, err) {
			return err
		}
		if since.IsZero() {
			since = time.Now()
		} else if time.Since(since) > u.cfg.retryFor {
			return fmt.Errorf("%s: the hub did not answer for %s: %w", what, u.cfg.retryFor, err)
		}
		u.count(func(st *NixUploadStats) { st.Retries++ })
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(pause):
		}
	}
}
