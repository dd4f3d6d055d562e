package streams

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// OutboxReport describes an agent's OUTBOX and its HUB consumer: how many
// events it ever stored, how many it still holds, and how far the hub's
// source has taken and acknowledged them. js is the agent's own JetStream.
// For failure messages and diagnosis.
func OutboxReport(ctx context.Context, js jetstream.JetStream, host string) string {
	st, err := js.Stream(ctx, OutboxStream)
	if err != nil {
		return fmt.Sprintf("%s OUTBOX: %v\n", host, err)
	}
	si := st.CachedInfo()
	first := max(si.Config.FirstSeq, 1)
	count := func(last uint64) uint64 { // events from first to last
		if last < first {
			return 0
		}
		return last - first + 1
	}
	s := fmt.Sprintf("%s OUTBOX: stored %d events (seq %d..%d), still holds %d (from seq %d)\n",
		host, count(si.State.LastSeq), first, si.State.LastSeq, si.State.Msgs, si.State.FirstSeq)
	c, err := st.PushConsumer(ctx, OutboxConsumer)
	if err != nil {
		return s + fmt.Sprintf("  HUB consumer: %v\n", err)
	}
	ci := c.CachedInfo()
	return s + fmt.Sprintf("  HUB consumer: the hub acknowledged %d events (ack floor %d), delivered to %d, pending=%d ackpending=%d\n",
		count(ci.AckFloor.Stream), ci.AckFloor.Stream, ci.Delivered.Stream, ci.NumPending, ci.NumAckPending)
}

// IngestGapReport reads INGEST and lists, per host, the OUTBOX sequences
// missing between the first and last one it holds (from each message's
// Nats-Stream-Source header). Events the source skipped show up here; ones
// never stored in the OUTBOX do not. For failure messages and diagnosis.
func IngestGapReport(ctx context.Context, js jetstream.JetStream) string {
	st, err := js.Stream(ctx, IngestStream)
	if err != nil {
		return fmt.Sprintf("INGEST: %v\n", err)
	}
	info := st.CachedInfo()
	var b strings.Builder
	fmt.Fprintf(&b, "INGEST: msgs=%d first=%d last=%d\n", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
	for _, src := range info.Sources {
		fmt.Fprintf(&b, "  source %s lag=%d active=%s\n", src.External.APIPrefix, src.Lag, src.Active)
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return b.String() + err.Error() + "\n"
	}
	type seen struct{ first, last, gaps, missing uint64 }
	bySource := map[string]*seen{}
	var tracker outboxGaps // the ingest check's own gap test
	var ranges []string
	for i := uint64(0); i < info.State.Msgs; i++ {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			fmt.Fprintf(&b, "  read INGEST: %v\n", err)
			break
		}
		header := m.Headers().Get(events.HeaderStreamSource)
		seq, _, ok := parseStreamSource(header)
		if !ok {
			continue
		}
		host := strings.SplitN(strings.TrimPrefix(m.Subject(), ingestPrefix("")), ".", 2)[0]
		s := bySource[host]
		if s == nil {
			s = &seen{first: seq}
			bySource[host] = s
		}
		if first, n := tracker.observe(host, header); n > 0 {
			s.gaps++
			s.missing += n
			if len(ranges) < 20 {
				ranges = append(ranges, fmt.Sprintf("%s %d..%d", host, first, first+n-1))
			}
		}
		s.last = max(s.last, seq)
	}
	hosts := make([]string, 0, len(bySource))
	for h := range bySource {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		s := bySource[h]
		fmt.Fprintf(&b, "  %s: OUTBOX seq %d..%d, %d gaps, %d missing\n", h, s.first, s.last, s.gaps, s.missing)
	}
	if len(ranges) > 0 {
		fmt.Fprintf(&b, "  missing: %s\n", strings.Join(ranges, ", "))
	}
	return b.String()
}
