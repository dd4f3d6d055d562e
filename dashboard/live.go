package dashboard

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// broadcaster fans change topics out to connected browsers. A browser
// that falls behind is not dropped silently: its pending topics coalesce
// into one set (a page re-renders from the current state, so a topic
// told once is as good as told ten times).
type broadcaster struct {
	mu   sync.Mutex
	subs map[*subscriber]bool
}

type subscriber struct {
	mu      sync.Mutex
	pending map[string]bool
	wake    chan struct{}
}

func newBroadcaster() *broadcaster { return &broadcaster{subs: map[*subscriber]bool{}} }

func (b *broadcaster) subscribe() *subscriber {
	s := &subscriber{pending: map[string]bool{}, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.subs[s] = true
	b.mu.Unlock()
	return s
}

func (b *broadcaster) unsubscribe(s *subscriber) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

func (b *broadcaster) publish(topic string) {
	if topic == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		s.mu.Lock()
		s.pending[topic] = true
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *subscriber) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.pending))
	for t := range s.pending {
		out = append(out, t)
	}
	clear(s.pending)
	return out
}

// topicOf maps a hub subject to the topic pages listen for:
// host:<name> for a host's projections, alerts, deploys, fleet.
func topicOf(subject string) string {
	switch {
	case strings.HasPrefix(subject, events.KVSubjectPrefix(events.BucketInventory)), strings.HasPrefix(subject, events.KVSubjectPrefix(events.BucketDrives)):
		rest := subject[strings.Index(subject[4:], ".")+5:]
		host, _, _ := strings.Cut(rest, ".")
		if strings.HasPrefix(host, "_") { // a projection checkpoint
			return ""
		}
		return "host:" + host
	case strings.HasPrefix(subject, events.KVSubjectPrefix(events.BucketGuests)):
		if strings.HasPrefix(subject, events.KVSubjectPrefix(events.BucketGuests)+"_") { // the checkpoint
			return ""
		}
		return "guests"
	case strings.HasPrefix(subject, events.KVSubjectPrefix(events.BucketAlerts)):
		return "alerts"
	case strings.HasPrefix(subject, events.KVSubjectPrefix(events.BucketLastDeploy)), strings.HasPrefix(subject, events.DeploySubjectPrefix):
		return "deploys"
	case strings.HasPrefix(subject, events.FleetSubjectPrefix):
		return "fleet"
	}
	return ""
}

// events is the server-sent events stream: "change" events whose data is
// a topic; the page decides whether it shows that topic and re-renders.
func (s *Server) events(w http.ResponseWriter, r *http.Request, _ *Session) error {
	fl, ok := w.(http.Flusher)
	if !ok {
		return httpError{http.StatusInternalServerError, "streaming is not supported here"}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	sub := s.live.subscribe()
	defer s.live.unsubscribe(sub)
	fmt.Fprintf(w, "retry: 2000\nevent: hello\ndata: %d\n\n", s.o.Now().UnixMilli())
	fl.Flush()
	ping := time.NewTicker(25 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-s.closed:
			return nil
		case <-ping.C:
			fmt.Fprintf(w, ": ping\n\n")
		case <-sub.wake:
			for _, t := range sub.take() {
				fmt.Fprintf(w, "event: change\ndata: %s\n\n", t)
			}
		}
		fl.Flush()
	}
}
