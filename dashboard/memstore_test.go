package dashboard

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// memStore is an in-memory Store for tests and benchmarks.
type memStore struct {
	mu        sync.Mutex
	buckets   map[string]map[string][]byte
	streams   map[string][]Stored
	published []Stored
	watchers  []func(string)
}

func newMemStore() *memStore {
	return &memStore{buckets: map[string]map[string][]byte{}, streams: map[string][]Stored{}}
}

func (m *memStore) put(bucket, key string, v []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.buckets[bucket] == nil {
		m.buckets[bucket] = map[string][]byte{}
	}
	m.buckets[bucket][key] = v
}

func (m *memStore) add(stream string, s Stored) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.streams[stream] = append(m.streams[stream], s)
}

func (m *memStore) Bucket(_ context.Context, bucket, prefix string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.buckets[bucket] {
		below := prefix == "" || (strings.HasSuffix(prefix, ".") && strings.HasPrefix(k, prefix))
		if below || k == prefix {
			out[k] = v
		}
	}
	return out, nil
}

// subjectMatch matches NATS wildcards * and > token by token.
func subjectMatch(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, t := range f {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) || (t != "*" && t != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

func (m *memStore) History(_ context.Context, stream string, filters []string, since time.Time, max int) ([]Stored, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Stored
	for _, s := range m.streams[stream] {
		if s.Time.Before(since) {
			continue
		}
		for _, f := range filters {
			if subjectMatch(f, s.Subject) {
				out = append(out, s)
				break
			}
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out, nil
}

func (m *memStore) Last(_ context.Context, stream, subject string) (*Stored, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ss := m.streams[stream]
	for i := len(ss) - 1; i >= 0; i-- {
		if ss[i].Subject == subject {
			s := ss[i]
			return &s, nil
		}
	}
	return nil, nil
}

func (m *memStore) Publish(_ context.Context, subject string, e events.Event) error {
	m.mu.Lock()
	m.published = append(m.published, Stored{Subject: subject, Time: e.Time(), Event: e})
	ws := append([]func(string){}, m.watchers...)
	m.mu.Unlock()
	for _, w := range ws {
		w(subject)
	}
	return nil
}

func (m *memStore) Watch(ctx context.Context, fn func(string)) error {
	m.mu.Lock()
	m.watchers = append(m.watchers, fn)
	m.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (m *memStore) watchersSnapshot() []func(string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]func(string){}, m.watchers...)
}
