package streams

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strconv"

	"github.com/nats-io/nats.go"
)

// One NAR of an upload (nixcache_upload.go) on its way: chunks from where
// the hub stands, a window of them unanswered, taken up again from the
// hub's offset after a cut.

// narChunkMsg is a chunk of url at off (empty: a question where the hub
// stands).
func narChunkMsg(url string, off, size int64, data []byte) *nats.Msg {
	m := &nats.Msg{Header: nats.Header{}, Data: data}
	m.Header.Set("Pinkie-Url", url)
	m.Header.Set("Pinkie-Offset", strconv.FormatInt(off, 10))
	m.Header.Set("Pinkie-Size", strconv.FormatInt(size, 10))
	return m
}

// uploadNar sends the NAR file from where the hub has it; after a cut it
// asks again where the hub stands and goes on from there. infoStored: the
// hub took the narinfo with the NAR.
func (u *uploader) uploadNar(ctx context.Context, it uploadItem) (infoStored bool, err error) {
	url := it.url
	n := &narUpload{u: u, it: it}
	for attempt := 0; attempt < nixNarAttempts; attempt++ {
		// A NAR of one chunk (most paths) goes at once: the hub's answer
		// says where it stands anyway, and a question first would cost a
		// round trip per path. A larger one asks first, so a resumed
		// upload sends nothing the hub has.
		// Its narinfo goes with it (the hub takes it once the NAR is in).
		if attempt == 0 && it.size <= nixPutChunk {
			n.inline = true
			done, err := n.sendFrom(ctx, 0)
			n.inline = false
			if done || err != nil && !retryable(ctx, err) {
				return n.infoStored, err
			}
			continue
		}
		var r nixPutReply
		err := u.retry(ctx, "NAR "+url, func() (err error) {
			r, err = u.call(ctx, "nar", narChunkMsg(url, 0, it.size, nil), nixCallTimeout)
			return err
		})
		if err != nil {
			return false, err
		}
		if r.Stored {
			return false, nil
		}
		if r.Offset < 0 || r.Offset > it.size {
			return false, fmt.Errorf("NAR %s: the hub asked for offset %d of %d", url, r.Offset, it.size)
		}
		done, err := n.sendFrom(ctx, r.Offset)
		if done {
			return false, nil
		}
		if err != nil {
			if !retryable(ctx, err) {
				return false, err
			}
			u.count(func(st *NixUploadStats) { st.Retries++ })
		}
	}
	return false, fmt.Errorf("NAR %s: gave up after %d attempts to send it", url, nixNarAttempts)
}

// narUpload is one NAR on its way.
type narUpload struct {
	u  *uploader
	it uploadItem
	// high is how far the file was ever sent, to count what is sent again.
	high int64
	// inline sends the narinfo with a NAR of one chunk; infoStored: the
	// hub took it.
	inline, infoStored bool
}

// openAt opens the NAR at off: its source from the start, skipped to off.
func (n *narUpload) openAt(ctx context.Context, off int64) (io.ReadCloser, error) {
	r, err := n.it.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("NAR %s: %w", n.it.url, err)
	}
	if s, ok := r.(io.Seeker); ok {
		_, err = s.Seek(off, io.SeekStart)
	} else {
		_, err = io.CopyN(io.Discard, r, off)
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("NAR %s: skip to %d: %w", n.it.url, off, err)
	}
	return r, nil
}

// chunkLink sends requests and takes their replies by sequence number.
type chunkLink interface {
	send(m *nats.Msg) (uint64, error)
	reply(ctx context.Context, seq uint64) (*nats.Msg, error)
	close()
}

// requesterLink is a chunkLink of one request at a time over a Requester.
type requesterLink struct {
	ctx  context.Context
	c    Requester
	seq  uint64
	resp *nats.Msg
	err  error
}

func (l *requesterLink) send(m *nats.Msg) (uint64, error) {
	l.seq++
	rctx, cancel := context.WithTimeout(l.ctx, nixStoreTimeout)
	l.resp, l.err = l.c.Request(rctx, m)
	cancel()
	return l.seq, nil
}

func (l *requesterLink) reply(context.Context, uint64) (*nats.Msg, error) { return l.resp, l.err }
func (l *requesterLink) close()                                           {}

// sendFrom sends the file from off on, window chunks in flight, until the
// hub stored it (done) or stands elsewhere than expected (not done, no
// error: ask it again), or a call fails.
func (n *narUpload) sendFrom(ctx context.Context, off int64) (done bool, err error) {
	u := n.u
	size := n.it.size
	rd, err := n.openAt(ctx, off)
	if err != nil {
		return false, err
	}
	defer rd.Close()
	window := u.cfg.window
	var link chunkLink
	if u.mux == nil {
		link, window = &requesterLink{ctx: ctx, c: u.c}, 1
	} else {
		link = u.mux.pipe()
	}
	defer link.close()
	type sent struct {
		seq uint64
		off int64
		buf []byte
	}
	var queue []sent
	var free [][]byte
	next, started := off, false
	for {
		// Fill the window; a NAR the hub holds whole but has not stored
		// yet gets one empty chunk at its end.
		for len(queue) < window && (next < size || !started) {
			started = true
			var buf []byte
			if len(free) > 0 {
				buf, free = free[len(free)-1], free[:len(free)-1]
			} else {
				buf = make([]byte, nixPutChunk)
			}
			k, err := io.ReadFull(rd, buf[:min(int64(nixPutChunk), size-next)])
			if err != nil {
				return false, fmt.Errorf("NAR %s at %d of %d: %w", n.it.url, next, size, err)
			}
			m := narChunkMsg(n.it.url, next, size, buf[:k])
			m.Subject = u.prefix + ".nar"
			if n.inline && next == 0 && int64(k) == size {
				m.Header.Set(HeaderNarinfo, base64.StdEncoding.EncodeToString(n.it.info))
			}
			seq, err := link.send(m)
			if err != nil {
				return false, err
			}
			resent := max(0, min(int64(k), n.high-next))
			u.count(func(st *NixUploadStats) { st.BytesSent += int64(k); st.BytesResent += resent })
			n.high = max(n.high, next+int64(k))
			queue = append(queue, sent{seq: seq, off: next, buf: buf[:k]})
			next += int64(k)
		}
		if len(queue) == 0 {
			return false, nil // sent all, stored nothing: ask the hub again
		}
		head := queue[0]
		end := head.off + int64(len(head.buf))
		timeout := nixCallTimeout
		if end == size {
			timeout = nixStoreTimeout
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := link.reply(rctx, head.seq)
		cancel()
		if err != nil {
			return false, fmt.Errorf("NAR %s at %d: %w", n.it.url, head.off, err)
		}
		r, err := decodePutReply("nar", resp)
		if err != nil {
			return false, err
		}
		if r.Stored {
			n.infoStored = r.Narinfo
			return true, nil
		}
		if r.Offset != end {
			return false, nil // the hub stands elsewhere (a chunk lost, or another uploader)
		}
		if u.cfg.progress != nil {
			u.cfg.progress(n.it.url, r.Offset, size)
		}
		free = append(free, head.buf[:cap(head.buf)])
		queue = queue[1:]
	}
}
