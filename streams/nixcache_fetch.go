package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// How the agent's substituter (nixcache_agent.go) pulls a NAR from the
// hub for nix: a few chunk requests on their way per NAR, in order on the
// substituter's connection, within a budget shared by every transfer, and
// the agent's memory limit raised while nix fetches.

// NAR file sizes from the narinfos nix read last (nix asks for a path's
// narinfo, then its NAR), at most sizeHintsMax.
const sizeHintsMax = 4096

func (s *NixSubstituter) noteSize(url string, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sizes == nil || len(s.sizes) >= sizeHintsMax {
		s.sizes = map[string]int64{}
	}
	s.sizes[url] = size
}

func (s *NixSubstituter) sizeHint(url string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	size, ok := s.sizes[url]
	return size, ok
}

func (s *NixSubstituter) forgetSize(url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sizes, url)
}

// transferHeadroom is what the agent's soft memory limit (--memory-limit,
// 16 MiB by default) is raised by while nix asks the substituter for paths
// or an upload runs: the transfer buffers (narFetchBudget chunks, or an
// upload's window) and the link's. Near the limit the GC runs without
// pause and transfers crawl (measured: a 5 MB NAR in 450 ms instead of
// 20 ms, 1,001 narinfos in 4 s instead of 0.5 s). The limit comes back
// down transferCooldown after the last request.
const (
	transferHeadroom = 48 << 20
	transferCooldown = 5 * time.Second
)

// beginTransfer raises the memory limit for a transfer until end.
func (s *NixSubstituter) beginTransfer() (end func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lower != nil {
		s.lower.Stop()
		s.lower = nil
	}
	if s.transfers == 0 && s.raised == 0 {
		if limit := debug.SetMemoryLimit(-1); limit < math.MaxInt64-transferHeadroom {
			debug.SetMemoryLimit(limit + transferHeadroom)
			s.raised = transferHeadroom
		}
	}
	s.transfers++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.transfers--; s.transfers == 0 && s.raised != 0 {
			s.lower = time.AfterFunc(transferCooldown, s.lowerLimit)
		}
	}
}

// lowerLimit takes the memory limit back down once no transfer runs.
func (s *NixSubstituter) lowerLimit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.transfers == 0 && s.raised != 0 {
		debug.SetMemoryLimit(debug.SetMemoryLimit(-1) - s.raised)
		s.raised = 0
	}
}

// narChunk is one piece of a NAR on its way from the hub; done gives back
// its place in the substituter's budget once it is written.
type narChunk struct {
	data []byte
	size int64
	err  error
	done func()
}

const (
	// narFetchWindow is how many chunk requests one NAR transfer keeps
	// on their way to the hub.
	narFetchWindow = 4
	// narFetchBudget bounds the chunks asked for or held, not yet written
	// to nix, across every transfer: the substituter's buffers are at
	// most narFetchBudget × narChunkSize (16 MiB).
	narFetchBudget = 32
	// narFetchAttempts bounds the times a transfer is taken up again
	// after the hub did not answer.
	narFetchAttempts = 5
)

// serveNar streams a NAR: a goroutine keeps a few chunk requests on their
// way to the hub while the chunks that came are written to nix in order.
func (s *NixSubstituter) serveNar(w http.ResponseWriter, r *http.Request, url string) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	chunks := make(chan narChunk, narFetchWindow)
	window := narFetchWindow
	if r.Method == http.MethodHead {
		window = 0 // the first chunk says the size
	}
	go func() {
		defer close(chunks)
		s.fetchNar(ctx, url, window, chunks)
	}()
	// Chunks not written (nix went away) give their budget back.
	defer func() {
		cancel()
		for c := range chunks {
			c.release()
		}
	}()
	first, ok := <-chunks
	if !ok {
		return
	}
	if first.err != nil {
		s.httpError(w, url, first.err)
		return
	}
	w.Header().Set("Content-Type", "application/x-nix-nar")
	w.Header().Set("Content-Length", strconv.FormatInt(first.size, 10))
	if r.Method == http.MethodHead {
		first.release()
		return
	}
	sent := int64(0)
	for c := first; ; {
		if c.err != nil {
			// The length is promised: a short body tells nix the
			// transfer failed.
			s.log.Warn("NAR transfer from the hub cut short", "url", url, "sent", sent, "size", first.size, "err", c.err)
			return
		}
		_, err := w.Write(c.data)
		c.release()
		if err != nil {
			return
		}
		sent += int64(len(c.data))
		s.servedBytes.Add(int64(len(c.data)))
		if sent >= first.size {
			s.servedNars.Add(1)
		}
		if c, ok = <-chunks; !ok {
			return
		}
	}
}

func (c narChunk) release() {
	if c.done != nil {
		c.done()
	}
}

// fetchNar pulls url from the hub in order onto chunks, window requests
// on their way (0: the first chunk only). A transfer the hub stopped
// answering is taken up again from the offset reached, a few times.
func (s *NixSubstituter) fetchNar(ctx context.Context, url string, window int, chunks chan<- narChunk) {
	var off int64
	var err error
	for attempt, pause := 0, 200*time.Millisecond; attempt < narFetchAttempts; attempt, pause = attempt+1, pause*2 {
		var done bool
		done, err = s.fetchFrom(ctx, url, window, &off, chunks)
		if done {
			return
		}
		var ce *errNixCache
		if ctx.Err() != nil || errors.As(err, &ce) && (ce.Status == 400 || ce.Status == 404) {
			break
		}
		if err == nil {
			continue // the hub's chunks were not the size expected: ask again from off
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
	select {
	case chunks <- narChunk{err: err}:
	case <-ctx.Done():
	}
}

// fetchFrom sends chunk requests from *off on, in order on one pipe, and
// passes the replies on in order, moving *off. done: the whole NAR (or,
// window 0, its first chunk) went out.
func (s *NixSubstituter) fetchFrom(ctx context.Context, url string, window int, off *int64, chunks chan<- narChunk) (done bool, err error) {
	s.mu.Lock()
	mux := s.mux
	s.mu.Unlock()
	if mux == nil {
		return false, &errNixCache{Status: 503, Reason: "the agent's nix substituter is not connected yet"}
	}
	p := mux.pipe()
	defer p.close()
	subj := nixCacheSubject(s.host, "nar")
	type asked struct {
		seq uint64
		off int64
	}
	var queue []asked
	// Budget held by requests still on their way; given back at the end.
	held := 0
	defer func() {
		for range held {
			<-s.budget
		}
	}()
	size, next := int64(-1), *off
	// The size the narinfo nix just read gave opens the whole window at
	// once; without it, the first reply says the size.
	hinted := false
	if h, ok := s.sizeHint(url); ok && window > 0 && h > *off {
		size, hinted = h, true
	}
	for {
		// Until the size is known, one request.
	fill:
		for (len(queue) == 0 || len(queue) < window && next < size) && (size < 0 || next < size) {
			// Wait for room only with nothing on its way: a transfer
			// waiting while it holds requests could wait on others
			// that do the same.
			if len(queue) > 0 {
				select {
				case s.budget <- struct{}{}:
				default:
					break fill
				}
			} else {
				select {
				case s.budget <- struct{}{}:
				case <-ctx.Done():
					return false, ctx.Err()
				}
			}
			held++
			body, _ := json.Marshal(narChunkRequest{URL: url, Offset: next})
			seq, err := p.send(&nats.Msg{Subject: subj, Data: body})
			if err != nil {
				return false, &errNixCache{Status: 503, Reason: err.Error()}
			}
			queue = append(queue, asked{seq: seq, off: next})
			next += narChunkSize
			if size < 0 {
				break
			}
		}
		if len(queue) == 0 {
			return true, nil
		}
		head := queue[0]
		rctx, cancel := context.WithTimeout(ctx, s.Timeout)
		m, err := p.reply(rctx, head.seq)
		cancel()
		m, err = nixCacheAnswer(subj, m, err)
		if err != nil {
			return false, err
		}
		got, perr := strconv.ParseInt(m.Header.Get(HeaderNarSize), 10, 64)
		if hinted && perr == nil && got != size {
			s.forgetSize(url)
			return false, nil // the narinfo's FileSize was not the file's: ask again from *off
		}
		if perr != nil || got < head.off+int64(len(m.Data)) || size >= 0 && got != size {
			return false, &errNixCache{Status: 502, Reason: fmt.Sprintf("the hub's answer for %s at %d has a bad size %q", url, head.off, m.Header.Get(HeaderNarSize))}
		}
		size, hinted = got, false
		queue = queue[1:]
		held--
		c := narChunk{data: m.Data, size: size, done: func() { <-s.budget }}
		select {
		case chunks <- c:
		case <-ctx.Done():
			c.release()
			return false, ctx.Err()
		}
		*off = head.off + int64(len(m.Data))
		if window == 0 || *off >= size {
			return true, nil
		}
		if want := min(narChunkSize, size-head.off); int64(len(m.Data)) != want {
			return false, nil // not the chunks this side counts on: ask again from *off
		}
	}
}
