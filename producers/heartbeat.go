package producers

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// Heartbeat says the agent is alive, with uptime, load and memory. Its
// counter starts at 1 in every agent process and rises by one per beat, so
// a gap at the hub means a lost event.
type Heartbeat struct {
	every    time.Duration
	instance string
	version  string
	limit    uint64
	counter  atomic.Uint64
}

// NewHeartbeat returns a heartbeat producer for one agent process.
// instance identifies the process; limit, when non-zero, stops the beats
// after that many (for tests and benchmarks).
func NewHeartbeat(every time.Duration, instance, version string, limit uint64) *Heartbeat {
	return &Heartbeat{every: every, instance: instance, version: version, limit: limit}
}

func heartbeatSpec() Spec {
	return Spec{Name: "heartbeat", Doc: "agent liveness: counter, uptime, load, memory", DefaultEnabled: true,
		New: func(raw json.RawMessage, info Info) (any, error) {
			if err := DecodeOptions(raw, &struct{}{}); err != nil {
				return nil, err
			}
			return NewHeartbeat(30*time.Second, info.Instance, info.Version, 0), nil
		}}
}

func (h *Heartbeat) Name() string            { return "heartbeat" }
func (h *Heartbeat) Interval() time.Duration { return h.every }

// Done reports whether the beat limit has been reached.
func (h *Heartbeat) Done() bool { return h.limit > 0 && h.counter.Load() >= h.limit }

func (h *Heartbeat) Collect(ctx context.Context, env Env) ([]Observation, error) {
	if h.Done() {
		return nil, nil
	}
	d := events.Heartbeat{Instance: h.instance, AgentVersion: h.version}
	// Missing /proc files (a non-Linux host, a sandbox) leave zeros: the
	// beat itself is what matters.
	if up, err := readFloats(env.Root, "proc/uptime", 1); err == nil {
		d.UptimeSeconds = up[0]
	}
	if l, err := readFloats(env.Root, "proc/loadavg", 3); err == nil {
		d.Load1, d.Load5, d.Load15 = l[0], l[1], l[2]
	}
	if m, err := readMeminfo(env.Root); err == nil {
		d.MemTotalBytes, d.MemAvailableBytes = m["MemTotal"], m["MemAvailable"]
	}
	d.Counter = h.counter.Add(1)
	return []Observation{{Kind: "heartbeat", Data: d}}, nil
}

// SetInterval changes how often the heartbeat runs (the agent's --heartbeat).
func (h *Heartbeat) SetInterval(d time.Duration) { h.every = d }

// SetHeartbeat gives the built heartbeat (if among built) the interval
// every, unless c gives it one, and the beat limit (0: none): the agent's
// --heartbeat and --heartbeat-limit.
func (c Config) SetHeartbeat(built []Built, every time.Duration, limit uint64) {
	for i, b := range built {
		if hb, ok := b.Collector.(*Heartbeat); ok {
			if c.Producers["heartbeat"].Interval == 0 {
				hb.SetInterval(every)
				built[i].Interval = every
			}
			hb.SetLimit(limit)
		}
	}
}

// SetLimit stops the beats after n (0: never); for tests and benchmarks.
func (h *Heartbeat) SetLimit(n uint64) { h.limit = n }
