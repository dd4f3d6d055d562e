package streams

// Ingest budgets: what one host may send to the hub, and how much of the
// hub's store the streams that hosts fill may take.
//
// The ingest check charges every message it takes from INGEST to the host
// that sent it, in a token bucket per host (events and bytes, each with a
// sustained rate and a burst). A host whose bucket runs dry is throttled at
// its source: the hub removes it from INGEST's sources, so its events wait
// in its own OUTBOX (which refuses new events when full: a flood fills the
// flooding host's disk, not the hub's), and adds it back once the bucket
// has refilled and a cool-down has passed. Durable sourcing resumes where
// it stopped, so nothing is dropped or doubled and each host's order holds.
// Events already in INGEST are checked as usual; they deepen the host's
// debt, which only lengthens its pause.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinkiefleet/pinkie/events"
)

// HostBudget bounds what one host may send to the hub. The zero value
// takes the defaults below.
type HostBudget struct {
	// EventsPerSec and BytesPerSec are the sustained rates; BurstEvents
	// and BurstBytes what a host may send at once (catching up after an
	// outage) before the rates apply.
	EventsPerSec, BytesPerSec float64
	BurstEvents, BurstBytes   float64
	// Cooldown is the least pause of a host that ran dry; each pause of
	// one episode waits twice as long as the one before, up to twice the
	// time the rates take to refill what a resumed host may send (a tenth
	// of the bursts; 100 s with the defaults), and never over
	// MaxHostCooldown. So a host that keeps sending gets about half its
	// rates and its source changes at most once per that time, while an
	// honest host catching up a backlog beyond its burst still proceeds at
	// half its rates or more.
	Cooldown time.Duration
	// Off turns the budgets off (benchmarks).
	Off bool
}

// Defaults: an honest agent sends an event every few seconds; after a
// day-long outage it catches up within minutes (the burst covers about a
// day of a busy host), while a flooding host gets at most 100 events/s
// into the hub, and far less once its pauses grow.
const (
	DefaultHostEventsPerSec = 100
	DefaultHostBytesPerSec  = 256 << 10
	DefaultHostBurstEvents  = 50000
	DefaultHostBurstBytes   = 64 << 20
	DefaultHostCooldown     = 10 * time.Second
	// MaxHostCooldown bounds every cool-down.
	MaxHostCooldown = 10 * time.Minute
	// maxHostPause bounds a whole pause, debt included. It stays well
	// under the hour INGEST and HOSTS remember event ids (Duplicates), so
	// an event in flight when a source was removed, sent again when it is
	// added back, is still recognised as a duplicate.
	maxHostPause = 30 * time.Minute
	// A paused host resumes once both buckets hold resumeShare of their
	// burst; it is within budget again at withinShare.
	resumeShare = 0.1
	withinShare = 0.5
)

func (b HostBudget) withDefaults() HostBudget {
	if b.EventsPerSec <= 0 {
		b.EventsPerSec = DefaultHostEventsPerSec
	}
	if b.BytesPerSec <= 0 {
		b.BytesPerSec = DefaultHostBytesPerSec
	}
	if b.BurstEvents <= 0 {
		b.BurstEvents = DefaultHostBurstEvents
	}
	if b.BurstBytes <= 0 {
		b.BurstBytes = DefaultHostBurstBytes
	}
	if b.Cooldown <= 0 {
		b.Cooldown = DefaultHostCooldown
	}
	b.Cooldown = min(b.Cooldown, MaxHostCooldown)
	return b
}

// String describes the budget in words, for logs and events.
func (b HostBudget) String() string {
	if b.Off {
		return "off"
	}
	return fmt.Sprintf("%g events/s and %s/s, bursts of %g events and %s", b.EventsPerSec, humanBytes(b.BytesPerSec), b.BurstEvents, humanBytes(b.BurstBytes))
}

func humanBytes(f float64) string {
	switch {
	case f >= 1<<30:
		return fmt.Sprintf("%.4g GiB", f/(1<<30))
	case f >= 1<<20:
		return fmt.Sprintf("%.4g MiB", f/(1<<20))
	case f >= 1<<10:
		return fmt.Sprintf("%.4g KiB", f/(1<<10))
	}
	return fmt.Sprintf("%g B", f)
}

// hostBucket is one host's budget state.
type hostBucket struct {
	events, bytes float64 // tokens; negative is debt
	last          time.Time
	// paused: the host's source is (to be) removed from INGEST.
	paused      bool
	pausedAt    time.Time
	resumeAfter time.Time
	// throttled: an episode is on, from the first pause until the host
	// is within budget again; pauses counts its pauses.
	throttled bool
	since     time.Time
	pauses    int
	reason    string
	allPauses uint64 // since the hub started, for /metrics
}

type budgetChangeKind int

const (
	budgetPaused budgetChangeKind = iota
	budgetResumed
	budgetWithin
)

// budgetChange is one decision of the budgets, for the controller to act
// on (sources, events, logs).
type budgetChange struct {
	kind budgetChangeKind
	host string
	at   time.Time
	b    hostBucket // the bucket right after the change
}

// budgets holds every host's bucket. charge is the ingest check's hot
// path; step and the rest run in the budget controller.
type budgets struct {
	lim     HostBudget
	maxCool time.Duration // the longest cool-down (see HostBudget.Cooldown)
	now     func() time.Time
	wake    chan struct{} // a host ran dry: the controller acts now

	mu      sync.Mutex
	hosts   map[string]*hostBucket
	changes []budgetChange
}

// newBudgets returns the budgets, or nil when they are off (charge on a
// nil *budgets does nothing).
func newBudgets(lim HostBudget, now func() time.Time) *budgets {
	if lim.Off {
		return nil
	}
	lim = lim.withDefaults()
	refill := time.Duration(max(resumeShare*lim.BurstEvents/lim.EventsPerSec, resumeShare*lim.BurstBytes/lim.BytesPerSec) * float64(time.Second))
	maxCool := min(max(2*refill, lim.Cooldown), MaxHostCooldown)
	return &budgets{lim: lim, maxCool: maxCool, now: now, wake: make(chan struct{}, 1), hosts: map[string]*hostBucket{}}
}

// refill adds what the rates earned since the last refill, up to the
// bursts.
func (b *budgets) refill(hb *hostBucket, now time.Time) {
	if dt := now.Sub(hb.last).Seconds(); dt > 0 {
		hb.events = min(hb.events+dt*b.lim.EventsPerSec, b.lim.BurstEvents)
		hb.bytes = min(hb.bytes+dt*b.lim.BytesPerSec, b.lim.BurstBytes)
		hb.last = now
	}
}

func (b *budgets) bucket(host string, now time.Time) *hostBucket {
	hb := b.hosts[host]
	if hb == nil {
		hb = &hostBucket{events: b.lim.BurstEvents, bytes: b.lim.BurstBytes, last: now}
		b.hosts[host] = hb
	}
	return hb
}

// charge counts one message of size bytes against host. A host that runs
// dry is paused at once; the controller is woken to remove its source.
func (b *budgets) charge(host string, size int) {
	if b == nil || host == "" {
		return
	}
	now := b.now()
	b.mu.Lock()
	hb := b.bucket(host, now)
	b.refill(hb, now)
	// Debt is bounded by one burst: what a host sent before its source
	// was removed deepens its pause, up to a point.
	hb.events = max(hb.events-1, -b.lim.BurstEvents)
	hb.bytes = max(hb.bytes-float64(size), -b.lim.BurstBytes)
	pause := !hb.paused && (hb.events < 0 || hb.bytes < 0)
	if pause {
		b.pause(host, hb, now)
	}
	b.mu.Unlock()
	if pause {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// pause starts a pause of host (mu held): the cool-down doubles with each
// pause of an episode.
func (b *budgets) pause(host string, hb *hostBucket, now time.Time) {
	if !hb.throttled {
		hb.throttled, hb.since, hb.pauses = true, now, 0
	}
	hb.pauses++
	hb.allPauses++
	cool := b.lim.Cooldown
	for i := 1; i < hb.pauses && cool < b.maxCool; i++ {
		cool *= 2
	}
	cool = min(cool, b.maxCool)
	hb.paused, hb.pausedAt, hb.resumeAfter = true, now, now.Add(cool)
	if hb.events < 0 {
		hb.reason = fmt.Sprintf("sent more than %g events/s (burst %g)", b.lim.EventsPerSec, b.lim.BurstEvents)
	} else {
		hb.reason = fmt.Sprintf("sent more than %s/s (burst %s)", humanBytes(b.lim.BytesPerSec), humanBytes(b.lim.BurstBytes))
	}
	b.changes = append(b.changes, budgetChange{kind: budgetPaused, host: host, at: now, b: *hb})
}

// step decides, at the clock's time, which paused hosts resume (cool-down
// over and buckets refilled to resumeShare, or paused for maxHostPause)
// and which throttled hosts are within budget again (buckets at
// withinShare), and returns every change since the last step, pauses
// included, in order.
func (b *budgets) step() []budgetChange {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	names := make([]string, 0, len(b.hosts))
	for n, hb := range b.hosts {
		if hb.throttled {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		hb := b.hosts[n]
		b.refill(hb, now)
		switch {
		case hb.paused:
			refilled := hb.events >= resumeShare*b.lim.BurstEvents && hb.bytes >= resumeShare*b.lim.BurstBytes
			if (!now.Before(hb.resumeAfter) && refilled) || now.Sub(hb.pausedAt) >= maxHostPause {
				hb.paused = false
				b.changes = append(b.changes, budgetChange{kind: budgetResumed, host: n, at: now, b: *hb})
			}
		case hb.events >= withinShare*b.lim.BurstEvents && hb.bytes >= withinShare*b.lim.BurstBytes:
			hb.throttled, hb.reason = false, ""
			b.changes = append(b.changes, budgetChange{kind: budgetWithin, host: n, at: now, b: *hb})
		}
	}
	out := b.changes
	b.changes = nil
	return out
}

// sourced reports whether host's source belongs in INGEST now.
func (b *budgets) sourced(host string) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	hb := b.hosts[host]
	return hb == nil || !hb.paused
}

// snapshot copies every bucket, for /metrics.
func (b *budgets) snapshot() map[string]hostBucket {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]hostBucket, len(b.hosts))
	for n, hb := range b.hosts {
		out[n] = *hb
	}
	return out
}

// event is the ingest.budget event for a change (pause or within).
func (b *budgets) event(c budgetChange) (events.Event, string, error) {
	k, _ := events.Lookup("ingest.budget")
	d := events.IngestBudget{
		Host: c.host, Throttled: c.b.throttled, Reason: c.b.reason, Since: c.b.since.UTC(), Pauses: c.b.pauses,
		EventsPerSecond: b.lim.EventsPerSec, BytesPerSecond: b.lim.BytesPerSec,
		BurstEvents: int64(b.lim.BurstEvents), BurstBytes: int64(b.lim.BurstBytes),
	}
	if c.b.paused {
		t := c.b.resumeAfter.UTC()
		d.ResumeAfter = &t
	}
	id := events.DeterministicID("ingest.budget", c.host, c.b.since.UTC().Format(time.RFC3339Nano), fmt.Sprint(c.b.throttled), fmt.Sprint(c.b.pauses))
	e, err := events.New(k, "hub", "ingest", c.at, d, events.WithID(id))
	return e, k.HubSubject(&d), err
}

// budgetTick is how often the controller looks at paused hosts.
func (b *budgets) tick() time.Duration {
	return max(50*time.Millisecond, min(time.Second, b.lim.Cooldown/4))
}

// runBudget is the budget controller: it applies the budgets' decisions
// (removes and adds back sources), publishes ingest.budget events, logs
// each change once, and keeps INGEST trimmed.
func (h *Hub) runBudget(ctx context.Context) {
	defer h.wg.Done()
	var (
		tick   = time.Second
		wake   chan struct{}
		stale  bool // the sources in INGEST differ from what the budgets want
		unsent []budgetChange
	)
	if h.budget != nil {
		tick, wake = h.budget.tick(), h.budget.wake
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
		if h.budget != nil {
			for _, c := range h.budget.step() {
				h.logBudgetChange(c)
				if c.kind != budgetWithin {
					stale = true
				}
				if c.kind != budgetResumed {
					unsent = append(unsent, c)
				}
			}
		}
		if stale {
			if err := h.resyncSources(ctx); err != nil {
				if ctx.Err() == nil {
					h.log.Error("apply ingest budgets to INGEST's sources; retrying", "err", err)
				}
			} else {
				stale = false
			}
		}
		for len(unsent) > 0 && ctx.Err() == nil {
			e, subj, err := h.budget.event(unsent[0])
			var m *nats.Msg
			if err == nil {
				m, err = EventMsg(subj, e)
			}
			if err == nil {
				// In line with the ingest check's forwards to HOSTS.
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err = h.storeHubEvent(pctx, m)
				cancel()
			}
			if err != nil {
				h.log.Warn("publish ingest budget event; retrying", "host", unsent[0].host, "err", err)
				break
			}
			unsent = unsent[1:]
		}
		h.trimIngest(ctx)
	}
}

func (h *Hub) logBudgetChange(c budgetChange) {
	switch c.kind {
	case budgetPaused:
		h.log.Warn("host over its ingest budget: its source is paused, its events wait in its OUTBOX",
			"host", c.host, "reason", c.b.reason, "pause", c.b.pauses, "resume_after", c.b.resumeAfter.Sub(c.at).Round(time.Millisecond))
	case budgetResumed:
		h.log.Info("host's source resumed after a pause of its ingest budget", "host", c.host, "paused", c.at.Sub(c.b.pausedAt).Round(time.Millisecond))
	case budgetWithin:
		h.log.Info("host within its ingest budget again", "host", c.host, "throttled_for", c.at.Sub(c.b.since).Round(time.Second), "pauses", c.b.pauses)
	}
}

// resyncSources makes INGEST source every known host the budgets do not
// pause.
func (h *Hub) resyncSources(ctx context.Context) error {
	h.srcMu.Lock()
	defer h.srcMu.Unlock()
	h.mu.Lock()
	hosts := maps.Clone(h.hosts)
	h.mu.Unlock()
	return h.setIngestHostsLocked(ctx, hosts)
}

// trimIngest removes checked messages from INGEST once it is half full.
// INGEST discards new messages when full (a source whose message is
// refused retries it from there: nothing is lost), so it must never fill
// with messages the check is done with. The check acknowledges in order,
// so everything up to the ingest consumer's ack floor is done.
func (h *Hub) trimIngest(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := h.js.Stream(ctx, IngestStream)
	if err != nil {
		return
	}
	info := st.CachedInfo()
	if info.Config.MaxBytes <= 0 || info.State.Bytes < uint64(info.Config.MaxBytes/2) {
		return
	}
	c, err := h.js.Consumer(ctx, IngestStream, IngestConsumer)
	if err != nil {
		return
	}
	floor := c.CachedInfo().AckFloor.Stream
	if floor < info.State.FirstSeq {
		return
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil && !errors.Is(err, context.Canceled) {
		h.log.Warn("trim checked messages from INGEST", "up_to_seq", floor, "err", err)
		return
	}
	h.log.Debug("trimmed checked messages from INGEST", "up_to_seq", floor, "bytes_before", info.State.Bytes)
}

// Shares of --max-store for the streams that hosts fill. Their MaxBytes
// (which nats-server reserves against the store when the stream is
// created or updated) add up to 80 %; the rest stays for DEPLOY, ALERTS,
// ALERTLOG, FLEET and the KV buckets, which hosts cannot fill (DEPLOY and
// ALERTS keep at most perSubjectHistory messages per subject, and each
// host writes only its own subjects there).
const (
	hostsShare      = 0.60
	ingestShare     = 0.15
	deadLetterShare = 0.05
	// MinMaxStore is the least --max-store the shares make sense for.
	MinMaxStore = 32 << 20
	// deadLettersPerHost bounds each host's dead letters
	// (pinkie.deadletter.<host>), so one host's cannot crowd out
	// another's; at most about 5 KiB each.
	deadLettersPerHost = 10000
	// perSubjectHistory bounds DEPLOY's and ALERTS's messages per subject
	// (pinkie.deploy.<host>.<phase>, pinkie.alert.<host>.<rule>).
	perSubjectHistory = 10000
)

// storeLimits are the MaxBytes of the streams hosts fill.
type storeLimits struct{ ingest, hosts, deadLetter int64 }

func limitsFor(maxStore int64) storeLimits {
	share := func(f float64) int64 { return int64(float64(maxStore) * f) }
	return storeLimits{ingest: share(ingestShare), hosts: share(hostsShare), deadLetter: share(deadLetterShare)}
}

var (
	descThrottled = prometheus.NewDesc("pinkie_ingest_throttled", "1 while a host is over its ingest budget (from its first pause until it is within budget again), else 0.", []string{"host"}, nil)
	descPaused    = prometheus.NewDesc("pinkie_ingest_source_paused", "1 while a host's source is paused by its ingest budget.", []string{"host"}, nil)
	descPauses    = prometheus.NewDesc("pinkie_ingest_pauses_total", "Pauses of a host's source by its ingest budget since the hub started.", []string{"host"}, nil)
)

// budgetCollector exposes the budgets at scrape time.
type budgetCollector struct{ h *Hub }

func (c budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descThrottled
	ch <- descPaused
	ch <- descPauses
}

func (c budgetCollector) Collect(ch chan<- prometheus.Metric) {
	if c.h.budget == nil {
		return
	}
	snap := c.h.budget.snapshot()
	for _, host := range c.h.Hosts() {
		if _, ok := snap[host]; !ok {
			snap[host] = hostBucket{}
		}
	}
	b01 := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for host, hb := range snap {
		ch <- prometheus.MustNewConstMetric(descThrottled, prometheus.GaugeValue, b01(hb.throttled), host)
		ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, b01(hb.paused), host)
		ch <- prometheus.MustNewConstMetric(descPauses, prometheus.CounterValue, float64(hb.allPauses), host)
	}
}

// fitReservations makes a lower --max-store than the last run's take
// effect. nats-server reserves each stream's MaxBytes against the store;
// while the reservations (from the last run's larger shares) exceed the
// store, it refuses every stream update, and it cannot lower its store
// limit at runtime. So, only in that case: stop, lower the shares under a
// temporarily raised limit, no listeners and no auth (in-process only),
// and start again as configured. HOSTS and DEADLETTER discard their
// oldest messages down to the new shares at once; INGEST is trimmed by
// the ingest check.
func fitReservations(srv *server.Server, sopts *server.Options, want storeLimits, log *slog.Logger) (*server.Server, error) {
	_, reserved, err := srv.JetStreamReservedResources()
	if err != nil || reserved <= sopts.JetStreamMaxStore {
		return srv, nil
	}
	log.Warn("--max-store is below what the streams reserved in the last run; lowering their limits first",
		"max_store", sopts.JetStreamMaxStore, "reserved", reserved)
	stopServer(srv)
	tmp := sopts.Clone()
	tmp.JetStreamMaxStore = reserved + sopts.JetStreamMaxStore
	tmp.Host, tmp.Port, tmp.DontListen = "127.0.0.1", server.RANDOM_PORT, true
	tmp.LeafNode = server.LeafNodeOpts{}
	tmp.Nkeys, tmp.TLS, tmp.TLSConfig = nil, false, nil
	s, err := startServer(tmp, log)
	if err != nil {
		return nil, fmt.Errorf("lower stream limits: %w", err)
	}
	err = lowerStreamLimits(s, want)
	stopServer(s)
	if err != nil {
		return nil, fmt.Errorf("lower stream limits to --max-store %d: %w", sopts.JetStreamMaxStore, err)
	}
	return startServer(sopts, log, hubServerQuiet...)
}

// hubServerQuiet are the hub's nats-server messages logged at debug: the
// backward scan that re-adding a paused host's source starts (the hub logs
// the resume itself).
var hubServerQuiet = []string{"Sourcing state is outdated"}

func lowerStreamLimits(s *server.Server, want storeLimits) error {
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, max := range map[string]int64{IngestStream: want.ingest, HostsStream: want.hosts, DeadLetterStream: want.deadLetter} {
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		cfg := st.CachedInfo().Config
		if cfg.MaxBytes > 0 && cfg.MaxBytes <= max {
			continue
		}
		cfg.MaxBytes = max
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	return nil
}
