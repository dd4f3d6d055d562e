package streams

import (
	"sync"

	"github.com/nats-io/nats.go"
)

// lanes runs a subscription's messages in parallel across keys and in
// order within one: the hub takes the chunks of several NAR uploads, and
// serves the chunks of several NARs to agents, at once (each may wait on
// the object store), while the chunks of one NAR stay in the order they
// came, which its offsets need (and its reader, nixcache_serve.go). A lane's goroutine
// lives while the lane has messages; at most busy lanes run handle at
// once, and at most queued messages wait (the subscription holds the rest).
type lanes struct {
	handle func(*nats.Msg)
	busy   chan struct{}
	queued chan struct{}

	mu   sync.Mutex
	wait map[string][]*nats.Msg
}

func newLanes(parallel, queued int, handle func(*nats.Msg)) *lanes {
	return &lanes{handle: handle, busy: make(chan struct{}, parallel), queued: make(chan struct{}, queued), wait: map[string][]*nats.Msg{}}
}

// add queues m on the lane of key, starting the lane if it was idle.
func (l *lanes) add(key string, m *nats.Msg) {
	l.queued <- struct{}{}
	l.mu.Lock()
	q, running := l.wait[key]
	l.wait[key] = append(q, m)
	l.mu.Unlock()
	if !running {
		go l.run(key)
	}
}

func (l *lanes) run(key string) {
	for {
		l.mu.Lock()
		q := l.wait[key]
		if len(q) == 0 {
			delete(l.wait, key)
			l.mu.Unlock()
			return
		}
		m := q[0]
		l.wait[key] = q[1:]
		l.mu.Unlock()
		l.busy <- struct{}{}
		l.handle(m)
		<-l.busy
		<-l.queued
	}
}
