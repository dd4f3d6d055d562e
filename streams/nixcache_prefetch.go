package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pinkiefleet/pinkie/nixcache"
)

// Closure prefetch: before nix copies a closure from the substituter, the
// agent asks the hub once for the closure's narinfos (the closure op,
// nixcache_closure.go), asks the local store which paths it lacks, and
// pulls those NARs from the hub prefetchParallel at a time into a
// temporary binary cache directory, which nix then copies from as from
// any file:// cache (nix's own HTTP path costs it about 1.4 times as much
// on loopback). Until then, or if some NAR did not come, the substituter
// answers nix's narinfo requests for the closure at once and its NAR
// requests from the files (waiting for one still on its way); anything
// else is asked of the hub as before. The narinfos are the
// hub's signed ones, byte for byte, and nix checks the NARs against them:
// a prefetch trusts nothing nix would not.

// prefetchParallel is how many NARs a prefetch pulls at once; each keeps
// narFetchWindow chunk requests on their way, within the substituter's
// shared narFetchBudget, so memory stays bounded whatever the closure.
const prefetchParallel = 16

// prefetched is one path of a prefetched closure.
type prefetched struct {
	hash    string
	narinfo []byte
	url     string
	// ready is closed once the NAR's download ended; file is then the
	// whole NAR on disk, or "" if it failed. nil: not downloaded (the
	// local store has the path, or another prefetch holds the NAR).
	ready chan struct{}
	file  string
	size  int64
}

// prefetchState is what prefetches hold, by store hash and by NAR URL.
type prefetchState struct {
	mu   sync.Mutex
	info map[string]*prefetched
	nar  map[string]*prefetched
	// dir holds the prefetches' temporary directories (the agent's data
	// directory; the system's temporary directory when unset).
	dir string
}

// Prefetch readies storePath's closure for nix: the narinfos of every path
// in the hub's cache, and the NARs of those invalid says the local store
// lacks, pulled prefetchParallel at a time into a binary cache directory
// of its own. local is that directory's file:// URL once every NAR is
// there (nix copies from it as fast as from any file:// cache), "" when
// some did not come (nix then copies from the substituter, which serves
// what came and asks the hub for the rest). release drops what the
// prefetch holds, its files too; call it once nix is done. An error leaves
// nothing held (nix then asks the hub path by path); release is never nil.
func (s *NixSubstituter) Prefetch(ctx context.Context, storePath string, invalid func(context.Context, []string) ([]string, error)) (local string, release func(), err error) {
	release = func() {}
	defer func() {
		if err != nil {
			s.log.Warn("no prefetch: nix asks the hub's cache path by path", "path", storePath, "err", err)
		}
	}()
	hash, err := storePathHash(storePath)
	if err != nil {
		return "", release, fmt.Errorf("prefetch: %w", err)
	}
	if invalid == nil {
		return "", release, errors.New("prefetch: no way to ask the local store what it lacks")
	}
	infos, err := s.Closure(ctx, hash)
	if err != nil {
		return "", release, fmt.Errorf("prefetch %s: %w", storePath, err)
	}
	paths := make([]string, 0, len(infos))
	parsed := make([]*nixcache.NarInfo, 0, len(infos))
	for _, b := range infos {
		ni, err := nixcache.ParseNarInfo(b)
		if err != nil || !narURLRE.MatchString(ni.URL) || path.Clean(ni.URL) != ni.URL {
			return "", release, fmt.Errorf("prefetch %s: a narinfo in the hub's closure: %v", storePath, err)
		}
		paths = append(paths, ni.StorePath)
		parsed = append(parsed, ni)
	}
	lacking, err := invalid(ctx, paths)
	if err != nil {
		return "", release, fmt.Errorf("prefetch %s: ask the local store what it lacks: %w", storePath, err)
	}
	want := make(map[string]bool, len(lacking))
	var need int64
	for _, p := range lacking {
		want[p] = true
	}
	for _, ni := range parsed {
		if want[ni.StorePath] {
			need += int64(ni.FileSize)
		}
	}

	s.pf.mu.Lock()
	dir := s.pf.dir
	s.pf.mu.Unlock()
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", release, fmt.Errorf("prefetch %s: %w", storePath, err)
	}
	if free, ok := freeBytes(dir); ok && free < need+need/10+64<<20 {
		return "", release, fmt.Errorf("prefetch %s: %d bytes of NARs to fetch, %d free in %s", storePath, need, free, dir)
	}
	tmp, err := os.MkdirTemp(dir, "prefetch-")
	if err != nil {
		return "", release, fmt.Errorf("prefetch %s: %w", storePath, err)
	}
	if err := startCacheDir(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return "", release, fmt.Errorf("prefetch %s: %w", storePath, err)
	}
	// The narinfo files are written while the NARs come (a file created
	// costs the agent as much as a small NAR's round trip to the hub).
	infosWritten := make(chan error, 1)
	go func() { infosWritten <- writeNarinfos(tmp, parsed, infos) }()

	// Register what this prefetch holds: what another prefetch holds
	// already stays its own.
	var mine, queue []*prefetched
	complete := true
	s.pf.mu.Lock()
	if s.pf.info == nil {
		s.pf.info, s.pf.nar = map[string]*prefetched{}, map[string]*prefetched{}
	}
	for i, ni := range parsed {
		h := ni.HashPart()
		if want[ni.StorePath] && s.pf.nar[ni.URL] != nil {
			complete = false // another prefetch pulls it into its own directory
		}
		if s.pf.info[h] != nil {
			continue
		}
		e := &prefetched{hash: h, narinfo: infos[i], url: ni.URL, size: int64(ni.FileSize)}
		if want[ni.StorePath] && s.pf.nar[ni.URL] == nil {
			e.ready = make(chan struct{})
			s.pf.nar[ni.URL] = e
			queue = append(queue, e)
		}
		s.pf.info[h] = e
		mine = append(mine, e)
	}
	s.pf.mu.Unlock()

	end := s.beginTransfer()
	pctx, cancel := context.WithCancel(ctx)
	jobs := make(chan *prefetched)
	var wg sync.WaitGroup
	for range min(prefetchParallel, len(queue)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range jobs {
				s.download(pctx, tmp, e)
			}
		}()
	}
	go func() {
		defer close(jobs)
		for _, e := range queue {
			select {
			case jobs <- e:
			case <-pctx.Done():
				// Not started: nix asks the hub for these.
				close(e.ready)
			}
		}
	}()
	s.log.Info("prefetching a closure from the hub's cache", "path", storePath, "paths", len(parsed), "fetching", len(queue), "bytes", need)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		for _, e := range queue {
			complete = complete && e.file != ""
		}
	case <-ctx.Done():
	}
	// Without every narinfo file the directory is no cache for nix; the
	// substituter still answers from memory and the NAR files.
	if err := <-infosWritten; err != nil {
		s.log.Warn("prefetch: writing the narinfo files failed; nix copies through the substituter", "path", storePath, "err", err)
		complete = false
	}
	if complete && ctx.Err() == nil {
		local = "file://" + tmp
	}
	s.log.Info("prefetched a closure from the hub's cache", "path", storePath, "fetched", len(queue), "bytes", need,
		"seconds", time.Since(start).Seconds(), "complete", local != "")
	var once sync.Once
	return local, func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			s.pf.mu.Lock()
			for _, e := range mine {
				if s.pf.nar[e.url] == e {
					delete(s.pf.nar, e.url)
				}
				if s.pf.info[e.hash] == e {
					delete(s.pf.info, e.hash)
				}
			}
			s.pf.mu.Unlock()
			if err := os.RemoveAll(tmp); err != nil {
				s.log.Warn("removing a prefetch's NARs failed", "dir", tmp, "err", err)
			}
			end()
		})
	}, nil
}

// download pulls e's NAR into dir; e.ready is closed at the end, e.file
// set if the whole NAR came. Its bytes count as served (Served): they came
// from the hub for nix.
func (s *NixSubstituter) download(ctx context.Context, dir string, e *prefetched) {
	defer close(e.ready)
	file := filepath.Join(dir, filepath.FromSlash(e.url)) // nar/…, checked against narURLRE
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		s.log.Warn("prefetch: create a NAR file", "url", e.url, "err", err)
		return
	}
	if e.size > 0 {
		s.noteSize(e.url, e.size)
	}
	chunks := make(chan narChunk, narFetchWindow)
	go func() {
		defer close(chunks)
		s.fetchNar(ctx, e.url, narFetchWindow, chunks)
	}()
	var written, size int64
	var ferr error
	for c := range chunks {
		if ferr == nil && c.err != nil {
			ferr = c.err
		}
		if ferr == nil {
			if _, err := f.Write(c.data); err != nil {
				ferr = fmt.Errorf("write %s: %w", file, err)
			} else {
				written += int64(len(c.data))
				size = c.size
				s.servedBytes.Add(int64(len(c.data)))
			}
		}
		c.release()
	}
	if err := f.Close(); err != nil && ferr == nil {
		ferr = fmt.Errorf("write %s: %w", file, err)
	}
	if ferr == nil && (written == 0 || written != size) {
		ferr = fmt.Errorf("got %d of %d bytes", written, size)
	}
	if ferr != nil {
		if ctx.Err() == nil {
			s.log.Warn("prefetch of a NAR failed; nix will ask the hub for it", "url", e.url, "err", ferr)
		}
		_ = os.Remove(file)
		return
	}
	s.servedNars.Add(1)
	e.file, e.size = file, size
}

// servePrefetched answers p from what prefetches hold: true if it did.
func (s *NixSubstituter) servePrefetched(w http.ResponseWriter, r *http.Request, p string) bool {
	s.pf.mu.Lock()
	var e *prefetched
	hash, isInfo := strings.CutSuffix(p, ".narinfo")
	if isInfo {
		e = s.pf.info[hash]
	} else {
		e = s.pf.nar[p]
	}
	s.pf.mu.Unlock()
	if e == nil {
		return false
	}
	if isInfo {
		w.Header().Set("Content-Type", "text/x-nix-narinfo")
		w.Header().Set("Content-Length", strconv.Itoa(len(e.narinfo)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(e.narinfo)
		}
		return true
	}
	select {
	case <-e.ready:
	case <-r.Context().Done():
		return true
	}
	if e.file == "" {
		return false
	}
	f, err := os.Open(e.file)
	if err != nil {
		return false
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/x-nix-nar")
	w.Header().Set("Content-Length", strconv.FormatInt(e.size, 10))
	if r.Method == http.MethodGet {
		if _, err := io.Copy(w, f); err != nil {
			s.log.Debug("serving a prefetched NAR cut short", "url", p, "err", err)
		}
	}
	return true
}

// Closure asks the hub for the narinfos of the closure of the path with
// store hash hash, every page: references first.
func (s *NixSubstituter) Closure(ctx context.Context, hash string) ([][]byte, error) {
	var infos [][]byte
	for from, pages := 0, 0; ; pages++ {
		if pages > closureMaxPaths {
			return nil, errors.New("the hub's closure pages never end")
		}
		body, _ := json.Marshal(closureRequest{Hash: hash, From: from})
		m, err := s.call(ctx, "closure", body)
		if err != nil {
			return nil, fmt.Errorf("ask the hub for the closure of %s: %w", hash, err)
		}
		var rep closureReply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			return nil, fmt.Errorf("the hub's closure of %s: %w", hash, err)
		}
		for _, ni := range rep.NarInfos {
			infos = append(infos, []byte(ni))
		}
		if len(rep.Missing) > 0 && from == 0 {
			s.log.Warn("the hub's cache lacks part of a closure", "hash", hash, "missing", rep.Missing)
		}
		if rep.Next == 0 {
			if len(infos) != rep.Total {
				return nil, fmt.Errorf("the hub's closure of %s: %d narinfos, the hub said %d", hash, len(infos), rep.Total)
			}
			return infos, nil
		}
		if rep.Next <= from || len(rep.NarInfos) == 0 {
			return nil, fmt.Errorf("the hub's closure of %s: page from %d says the next starts at %d", hash, from, rep.Next)
		}
		from = rep.Next
	}
}

// freeBytes is what an unprivileged writer may still put in dir's file
// system; ok false when it cannot be told.
func freeBytes(dir string) (int64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * st.Bsize, true
}

// setPrefetchDir puts prefetches under dir, emptied first: what a prefetch
// left when the agent stopped mid-fetch is of no use.
func (s *NixSubstituter) setPrefetchDir(dir string) {
	if err := os.RemoveAll(dir); err != nil {
		s.log.Warn("removing old prefetched NARs failed", "dir", dir, "err", err)
	}
	s.pf.mu.Lock()
	s.pf.dir = dir
	s.pf.mu.Unlock()
}

// maxPrefetchBody bounds a POST /prefetch body: store paths, one a line.
const maxPrefetchBody = 16 << 20

// servePrefetch is POST /prefetch?path=ROOT with the store paths the
// caller's store lacks in the body, one a line: the prefetch the activator
// makes before nix copies, for a caller that runs nix itself (the transfer
// bench, a CI job warming a host). The answer is one line once the
// prefetch is done: the URL for nix copy --from (the prefetch's file://
// cache, or the substituter's own); the prefetch lasts until the caller
// closes the connection. The substituter serves loopback only, and a prefetch writes
// no more than its NARs to the agent's data directory, checked against
// the space there.
func (s *NixSubstituter) servePrefetch(w http.ResponseWriter, r *http.Request) {
	root := r.URL.Query().Get("path")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPrefetchBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("prefetch: reading the paths to fetch: %v", err), http.StatusBadRequest)
		return
	}
	lacking := strings.Fields(string(body))
	local, release, err := s.Prefetch(r.Context(), root, func(context.Context, []string) ([]string, error) { return lacking, nil })
	defer release()
	if err != nil {
		s.httpError(w, "prefetch "+root, err)
		return
	}
	if local == "" {
		local = s.URL()
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintln(w, local)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	<-r.Context().Done()
}

// startCacheDir makes dir a binary cache directory for nix
// (nix-cache-info, and nar/ for the NARs to come); writeNarinfos fills in
// the narinfos (HASH.narinfo).
func startCacheDir(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte(nixCacheInfo), 0o644); err != nil {
		return err
	}
	return os.Mkdir(filepath.Join(dir, "nar"), 0o755)
}

func writeNarinfos(dir string, parsed []*nixcache.NarInfo, infos [][]byte) error {
	for i, ni := range parsed {
		if err := os.WriteFile(filepath.Join(dir, ni.HashPart()+".narinfo"), infos[i], 0o644); err != nil {
			return err
		}
	}
	return nil
}
