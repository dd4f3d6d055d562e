package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// nixPipe keeps several requests to the hub's cache in flight on one
// connection: it publishes them in order, each with a reply subject of its
// own under one inbox, and hands back replies by sequence number. The hub
// answers NAR chunks from a single subscription, so requests sent in order
// on one connection are handled in that order (an upload's chunks land at
// the offset the hub expects; a download's chunks are read from one open
// object reader). Used by uploads (nixcache_upload.go) and by the agent's
// substituter (nixcache_agent.go).
type nixPipe struct {
	nc    *nats.Conn
	inbox string
	sub   *nats.Subscription
	seq   uint64
	// early are replies that came before the one waited for.
	early map[uint64]*nats.Msg
}

// errLinkDown is a pipe whose connection dropped while replies were due.
var errLinkDown = errors.New("the connection to the hub dropped")

// errNoResponder is a request nobody answered: the hub is away.
var errNoResponder = errors.New("no responder")

func openNixPipe(nc *nats.Conn) (*nixPipe, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox + ".*")
	if err != nil {
		return nil, fmt.Errorf("subscribe to replies on %s: %w", inbox, err)
	}
	_ = sub.SetPendingLimits(-1, 256<<20)
	return &nixPipe{nc: nc, inbox: inbox, sub: sub, early: map[uint64]*nats.Msg{}}, nil
}

// send publishes m with a reply subject of its own and returns its
// sequence number.
func (p *nixPipe) send(m *nats.Msg) (uint64, error) {
	p.seq++
	m.Reply = p.inbox + "." + strconv.FormatUint(p.seq, 10)
	if err := p.nc.PublishMsg(m); err != nil {
		return 0, fmt.Errorf("send %s: %w", m.Subject, err)
	}
	return p.seq, nil
}

// reply waits for the reply to request seq until ctx ends.
func (p *nixPipe) reply(ctx context.Context, seq uint64) (*nats.Msg, error) {
	if m, ok := p.early[seq]; ok {
		delete(p.early, seq)
		return m, nil
	}
	for {
		m, err := p.next(ctx)
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseUint(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:], 10, 64)
		if err != nil || n > p.seq {
			continue // not one of ours
		}
		if m.Header.Get("Status") == "503" {
			return nil, errNoResponder
		}
		if n == seq {
			return m, nil
		}
		p.early[n] = m
	}
}

// next is the next message on the inbox, until ctx ends; the connection
// dropping ends the wait with errLinkDown.
func (p *nixPipe) next(ctx context.Context) (*nats.Msg, error) {
	wctx, stop := whileLinked(ctx, p.nc)
	m, err := p.sub.NextMsgWithContext(wctx)
	if stop() && err != nil {
		return nil, errLinkDown
	}
	return m, err
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

func (p *nixPipe) close() { _ = p.sub.Unsubscribe() }
