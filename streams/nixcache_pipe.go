package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// Several requests to the hub's cache in flight on one connection: a
// nixMux takes every reply on one inbox subscription and hands each to the
// request that waits for it; a nixPipe is one transfer's requests, published
// in order. The hub answers one NAR's chunks in the order they came (one
// lane per NAR: nixcache_lanes.go), so requests sent in order on one
// connection are handled in that order (an
// upload's chunks land at the offset the hub expects; a download's chunks
// are read on from where the previous one stopped). Used by uploads
// (nixcache_upload.go) and by the agent's substituter (nixcache_agent.go).

// errLinkDown is a connection that dropped while replies were due.
var errLinkDown = errors.New("the connection to the hub dropped")

// errNoResponder is a request nobody answered: the hub is away.
var errNoResponder = errors.New("no responder")

// nixMux routes replies on one inbox to their requests, so a transfer
// costs no subscription of its own (each would travel to the hub as
// interest over a leaf link, and back as its removal).
type nixMux struct {
	nc     *nats.Conn
	inbox  string
	sub    *nats.Subscription
	status chan nats.Status

	mu      sync.Mutex
	seq     uint64
	waiting map[uint64]chan *nats.Msg
	// down is closed while the connection is down.
	down chan struct{}
}

func openNixMux(nc *nats.Conn) (*nixMux, error) {
	m := &nixMux{nc: nc, inbox: nc.NewInbox(), waiting: map[uint64]chan *nats.Msg{}, down: make(chan struct{})}
	m.status = nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	go m.watch()
	if !nc.IsConnected() {
		m.setDown(true)
	}
	sub, err := nc.Subscribe(m.inbox+".*", m.deliver)
	if err != nil {
		nc.RemoveStatusListener(m.status)
		return nil, fmt.Errorf("subscribe to replies on %s: %w", m.inbox, err)
	}
	_ = sub.SetPendingLimits(-1, 256<<20)
	m.sub = sub
	return m, nil
}

func (m *nixMux) close() {
	_ = m.sub.Unsubscribe()
	m.nc.RemoveStatusListener(m.status) // ends watch
}

// watch follows the connection's state until close.
func (m *nixMux) watch() {
	for st := range m.status {
		m.setDown(st != nats.CONNECTED)
	}
}

func (m *nixMux) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.down: // down now
		if !down {
			m.down = make(chan struct{})
		}
	default:
		if down {
			close(m.down)
		}
	}
}

// linkDown is closed while (and once) the connection is down.
func (m *nixMux) linkDown() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

func (m *nixMux) deliver(msg *nats.Msg) {
	n, err := strconv.ParseUint(msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:], 10, 64)
	if err != nil {
		return
	}
	m.mu.Lock()
	ch := m.waiting[n]
	delete(m.waiting, n)
	m.mu.Unlock()
	if ch != nil {
		ch <- msg // buffered: one reply each
	}
}

// pipe starts a transfer's requests.
func (m *nixMux) pipe() *nixPipe { return &nixPipe{mux: m, due: map[uint64]chan *nats.Msg{}} }

// nixPipe is one transfer's requests, published in order on the mux's
// connection.
type nixPipe struct {
	mux *nixMux
	due map[uint64]chan *nats.Msg
}

// send publishes m with a reply subject of its own and returns the number
// its reply comes under.
func (p *nixPipe) send(m *nats.Msg) (uint64, error) {
	ch := make(chan *nats.Msg, 1)
	p.mux.mu.Lock()
	p.mux.seq++
	n := p.mux.seq
	p.mux.waiting[n] = ch
	p.mux.mu.Unlock()
	p.due[n] = ch
	m.Reply = p.mux.inbox + "." + strconv.FormatUint(n, 10)
	if err := p.mux.nc.PublishMsg(m); err != nil {
		return 0, fmt.Errorf("send %s: %w", m.Subject, err)
	}
	return n, nil
}

// reply waits for the reply to request n until ctx ends or the connection
// drops.
func (p *nixPipe) reply(ctx context.Context, n uint64) (*nats.Msg, error) {
	ch := p.due[n]
	if ch == nil {
		return nil, fmt.Errorf("no request %d on this pipe", n)
	}
	select {
	case m := <-ch:
		delete(p.due, n)
		if m.Header.Get("Status") == "503" {
			return nil, errNoResponder
		}
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.mux.linkDown():
		return nil, errLinkDown
	}
}

// close forgets the replies still due.
func (p *nixPipe) close() {
	p.mux.mu.Lock()
	for n := range p.due {
		delete(p.mux.waiting, n)
	}
	p.mux.mu.Unlock()
}

// whileLinked is ctx, ended early when nc's connection drops (replies due
// will not come: a request would wait out its timeout); stop says whether
// it dropped.
func whileLinked(ctx context.Context, nc *nats.Conn) (context.Context, func() (dropped bool)) {
	ch := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	wctx, cancel := context.WithCancel(ctx)
	var down atomic.Bool
	if !nc.IsConnected() {
		down.Store(true)
		cancel()
	}
	quit := make(chan struct{})
	go func() {
		select {
		case _, ok := <-ch:
			if ok {
				down.Store(true)
			}
			cancel()
		case <-quit:
		}
	}()
	return wctx, func() bool {
		close(quit)
		nc.RemoveStatusListener(ch)
		cancel()
		return down.Load()
	}
}
