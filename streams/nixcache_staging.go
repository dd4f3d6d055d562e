package streams

import (
	"os"
	"sync"
	"time"
)

// What the hub's upload service (nixcache_put.go) keeps between chunks.

// stagedFiles keeps the staging files of NARs on their way open between
// their chunks (creating or opening a file per chunk cost more than the
// write here), at most stagedFilesMax, each closed once idle for
// stagedFileIdle.
type stagedFiles struct {
	mu    sync.Mutex
	files map[string]*stagedFile
}

type stagedFile struct {
	f    *os.File
	used time.Time
}

const (
	stagedFilesMax = 64
	stagedFileIdle = 2 * time.Minute
)

// open returns the staging file at path, created if need be.
func (s *stagedFiles) open(path string) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.files == nil {
		s.files = map[string]*stagedFile{}
	}
	if e := s.files[path]; e != nil {
		e.used = now
		return e.f, nil
	}
	for p, e := range s.files {
		if now.Sub(e.used) > stagedFileIdle {
			e.f.Close()
			delete(s.files, p)
		}
	}
	for len(s.files) >= stagedFilesMax {
		oldest := ""
		for p, e := range s.files {
			if oldest == "" || e.used.Before(s.files[oldest].used) {
				oldest = p
			}
		}
		s.files[oldest].f.Close()
		delete(s.files, oldest)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	s.files[path] = &stagedFile{f: f, used: now}
	return f, nil
}

func (s *stagedFiles) isOpen(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[path] != nil
}

// close closes the staging file at path, and removes it when done with.
func (s *stagedFiles) close(path string, remove bool) {
	s.mu.Lock()
	if e := s.files[path]; e != nil {
		e.f.Close()
		delete(s.files, path)
	}
	s.mu.Unlock()
	if remove {
		os.Remove(path)
	}
}

// recentNars are the NAR files a hub stored lately (at most
// recentNarsMax), so the narinfo that follows each needs no lookup.
type recentNars struct {
	mu    sync.Mutex
	order []string
	set   map[string]bool
}

const recentNarsMax = 1024

func (r *recentNars) add(url string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = map[string]bool{}
	}
	if r.set[url] {
		return
	}
	if len(r.order) >= recentNarsMax {
		delete(r.set, r.order[0])
		r.order = r.order[1:]
	}
	r.order = append(r.order, url)
	r.set[url] = true
}

func (r *recentNars) has(url string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set[url]
}
