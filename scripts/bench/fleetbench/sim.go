package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

// A simulator process runs many agents: each a real embedded leaf server
// with its own OUTBOX (streams.StartAgent, as `pinkie agent` runs it),
// whose producers are replaced by a generator publishing through the
// agent's Publish. The coordinator drives it over stdin (one command a
// line) and reads its JSON lines on stdout.
//
//	go   start generating (1 event/s per agent)
//	mark report each host's last stored sequence number
//	stop stop generating; report the final sequence numbers
//	exit close the agents and exit
type simMsg struct {
	Type      string            `json:"type"` // ready, stat, mark, final, error
	Connected int               `json:"connected,omitempty"`
	Published uint64            `json:"published,omitempty"`
	Retries   uint64            `json:"retries,omitempty"`
	Seqs      map[string]uint64 `json:"seqs,omitempty"`
	Err       string            `json:"err,omitempty"`
}

type simAgent struct {
	host string
	ag   *streams.Agent
	last atomic.Uint64 // last sequence number stored in the OUTBOX
}

func runSim(args []string) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	hosts := fs.String("hosts", "", "comma-separated host names")
	hub := fs.String("hub", "", "hub leaf URLs, comma-separated")
	keys := fs.String("keys", "", "directory of the hosts' nkey seeds (<host>.nk)")
	data := fs.String("data", "", "data directory; each agent gets <data>/<host>")
	exDir := fs.String("examples", "schemas/examples", "example events")
	reconnect := fs.Duration("reconnect", 2*time.Second, "agents' base reconnect interval")
	startPar := fs.Int("start-parallel", 4, "agents started at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ex, err := loadExamples(*exDir)
	if err != nil {
		return err
	}
	var out sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	say := func(m simMsg) {
		out.Lock()
		defer out.Unlock()
		_ = enc.Encode(m)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	names := strings.Split(*hosts, ",")
	agents := make([]*simAgent, len(names))
	ctx := context.Background()
	sem := make(chan struct{}, max(*startPar, 1))
	var wg sync.WaitGroup
	var startErr atomic.Pointer[error]
	for i, h := range names {
		agents[i] = &simAgent{host: h}
		wg.Add(1)
		sem <- struct{}{}
		go func(a *simAgent) {
			defer wg.Done()
			defer func() { <-sem }()
			ag, err := streams.StartAgent(ctx, streams.AgentOptions{Host: a.host, HubURLs: strings.Split(*hub, ","),
				NkeyFile: filepath.Join(*keys, a.host+".nk"), DataDir: filepath.Join(*data, a.host),
				ReconnectInterval: *reconnect, Log: log})
			if err != nil {
				err = fmt.Errorf("start agent %s: %w", a.host, err)
				startErr.Store(&err)
				return
			}
			a.ag = ag
		}(agents[i])
	}
	wg.Wait()
	defer func() {
		for _, a := range agents {
			if a.ag != nil {
				a.ag.Close()
			}
		}
	}()
	if p := startErr.Load(); p != nil {
		return *p
	}
	var published, retries atomic.Uint64
	seqs := func() map[string]uint64 {
		m := make(map[string]uint64, len(agents))
		for _, a := range agents {
			m[a.host] = a.last.Load()
		}
		return m
	}
	statDone := make(chan struct{})
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-statDone:
				return
			case <-t.C:
			}
			n := 0
			for _, a := range agents {
				if a.ag.Connected() {
					n++
				}
			}
			say(simMsg{Type: "stat", Connected: n, Published: published.Load(), Retries: retries.Load()})
		}
	}()
	defer close(statDone)
	say(simMsg{Type: "ready"})

	genCtx, stopGen := context.WithCancel(ctx)
	defer stopGen()
	var gen sync.WaitGroup
	var genErr atomic.Pointer[error]
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch cmd := strings.TrimSpace(in.Text()); cmd {
		case "go":
			for i, a := range agents {
				gen.Add(1)
				go func() {
					defer gen.Done()
					if err := a.generate(genCtx, ex, uint64(i), &published, &retries); err != nil {
						genErr.Store(&err)
						say(simMsg{Type: "error", Err: err.Error()})
					}
				}()
			}
		case "mark":
			say(simMsg{Type: "mark", Seqs: seqs(), Published: published.Load(), Retries: retries.Load()})
		case "stop":
			stopGen()
			gen.Wait()
			say(simMsg{Type: "final", Seqs: seqs(), Published: published.Load(), Retries: retries.Load()})
		case "exit":
			stopGen()
			gen.Wait()
			if p := genErr.Load(); p != nil {
				return *p
			}
			return nil
		default:
			say(simMsg{Type: "error", Err: fmt.Sprintf("unknown command %q", cmd)})
		}
	}
	return errors.New("stdin closed before exit")
}

// generate publishes this agent's share of the mix, one slot a second,
// from a random phase, until ctx ends. An event whose store fails is sent
// again under the same id (the OUTBOX drops a second copy), so the host's
// sequence numbers have no holes.
func (a *simAgent) generate(ctx context.Context, ex examples, seed uint64, published, retries *atomic.Uint64) error {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	order := hourOfEvents()
	r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(time.Duration(r.Int64N(int64(time.Second)))):
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	rest := 0
	for i := 0; ; i++ {
		if rest > 0 {
			rest--
		} else {
			sl := order[i%len(order)]
			n := 1
			if sl.burst > 0 {
				n, rest = sl.burst, sl.burst-1
			}
			for range n {
				seq := a.last.Load() + 1
				e, err := ex.build(a.host, seq, sl, time.Now(), r)
				if err == nil {
					// Checked here so that the retries below are for
					// failures to store only: invalid data is the
					// generator's bug.
					err = ex.schemas.ValidateData(e.Type(), e.Data())
				}
				if err != nil {
					return fmt.Errorf("%s: build %s event: %w", a.host, sl.kind, err)
				}
				for {
					pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err = a.ag.Publish(pctx, e, sl.object)
					cancel()
					if err == nil {
						break
					}
					retries.Add(1)
					select {
					case <-ctx.Done():
						return nil // not stored: the sequence number stays unused
					case <-time.After(time.Second):
					}
				}
				a.last.Store(seq)
				published.Add(1)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
