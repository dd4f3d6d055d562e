package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// seen is what HOSTS holds of one host: a bit per sequence number, how
// far it is complete from 1, and the copies beyond the first.
type seen struct {
	bits   []uint64
	contig uint64
	dups   uint64
	max    uint64
}

func (s *seen) has(n uint64) bool {
	i := n / 64
	return i < uint64(len(s.bits)) && s.bits[i]&(1<<(n%64)) != 0
}

func (s *seen) add(n uint64) {
	if s.has(n) {
		s.dups++
		return
	}
	i := n / 64
	for uint64(len(s.bits)) <= i {
		s.bits = append(s.bits, 0)
	}
	s.bits[i] |= 1 << (n % 64)
	s.max = max(s.max, n)
	for s.has(s.contig + 1) {
		s.contig++
	}
}

// tracker follows HOSTS with an ordered consumer and records every
// benchmark event it holds.
type tracker struct {
	mu      sync.Mutex
	hosts   map[string]*seen
	total   uint64
	foreign uint64 // events on pinkie.host.> that the generator did not make
	lastSeq uint64 // HOSTS stream sequence of the last message read
}

func newTracker() *tracker { return &tracker{hosts: map[string]*seen{}} }

func (t *tracker) record(subject string, data []byte, streamSeq uint64) {
	var ev struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(data, &ev)
	host, seq, ok := parseEventID(ev.ID)
	tok := strings.SplitN(subject, ".", 4) // pinkie.host.<host>.<kind…>
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastSeq = streamSeq
	if !ok || len(tok) < 4 || tok[2] != host {
		t.foreign++
		return
	}
	t.total++
	s := t.hosts[host]
	if s == nil {
		s = &seen{}
		t.hosts[host] = s
	}
	s.add(seq)
}

// covers reports whether HOSTS holds every host's events 1..want[host],
// and how many are still missing.
func (t *tracker) covers(want map[string]uint64) (bool, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var missing uint64
	for h, n := range want {
		var c uint64
		if s := t.hosts[h]; s != nil {
			c = s.contig
		}
		if c < n {
			missing += n - c
		}
	}
	return missing == 0, missing
}

// follow reads HOSTS from the start, live, until ctx ends.
func (t *tracker) follow(ctx context.Context, js jetstream.JetStream) error {
	c, err := js.OrderedConsumer(ctx, streams.HostsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.HostSubjects}})
	if err != nil {
		return fmt.Errorf("follow HOSTS: %w", err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		t.record(m.Subject(), m.Data(), md.Sequence.Stream)
	})
	if err != nil {
		return fmt.Errorf("follow HOSTS: %w", err)
	}
	go func() {
		<-ctx.Done()
		cc.Stop()
	}()
	return nil
}

// scan reads HOSTS once, from the start to its last message now: the
// final, authoritative count.
func scan(ctx context.Context, js jetstream.JetStream) (*tracker, error) {
	st, err := js.Stream(ctx, streams.HostsStream)
	if err != nil {
		return nil, fmt.Errorf("read HOSTS: %w", err)
	}
	last := st.CachedInfo().State.LastSeq
	t := newTracker()
	if last == 0 {
		return t, nil
	}
	c, err := js.OrderedConsumer(ctx, streams.HostsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.HostSubjects}})
	if err != nil {
		return nil, fmt.Errorf("scan HOSTS: %w", err)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(2000))
	if err != nil {
		return nil, fmt.Errorf("scan HOSTS: %w", err)
	}
	defer it.Stop()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		m, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("scan HOSTS at %d of %d: %w", t.lastSeq, last, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		t.record(m.Subject(), m.Data(), md.Sequence.Stream)
		if md.Sequence.Stream >= last {
			return t, nil
		}
	}
	return nil, fmt.Errorf("scan HOSTS: not done within 10 minutes (at %d of %d)", t.lastSeq, last)
}
