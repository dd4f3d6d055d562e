// Package producers observes a host and reports what it sees as
// observations that the agent turns into events. Each producer is one file
// with its own test and testdata; all.go lists them. A producer reads the
// host only through its Env: a rooted filesystem, a command runner and a
// clock, so tests run it against fixture trees.
package producers

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"time"
)

// ErrNotApplicable is returned by a producer that has nothing to report on
// this host (no ZFS, no md arrays). It is logged at debug, not as an error.
var ErrNotApplicable = errors.New("not applicable on this host")

// ErrNoAccess is returned (wrapped, with how to grant it) by a producer
// that finds what it reads but may not read it: a setup step the operator
// must take, not a failure of the host. It is logged once, at warning.
var ErrNoAccess = errors.New("no access")

// Observation is one thing a producer saw: the data of an event of Kind
// about Object ("" for the host itself). ID, when set, is a deterministic
// event id so the same observation sent twice is deduplicated.
type Observation struct {
	Kind   string
	Object string
	Data   any
	ID     string
}

// Runner runs a command and returns its stdout and exit code separately.
// err is set only when the command could not be run at all (not found,
// permission denied); a non-zero exit is reported through code.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) (stdout []byte, code int, err error)
}

// Env is everything a producer may use to look at the host.
type Env struct {
	// Host is the agent's host name.
	Host string
	// Root is the host's filesystem ("/" on a real host, a fixture tree in
	// tests); paths are given without the leading slash ("proc/meminfo").
	Root fs.FS
	// Run runs commands on the host.
	Run Runner
	// Now is the clock.
	Now func() time.Time
	// Log is the producer's logger.
	Log *slog.Logger
	// State is the producer's persistent state, kept by the agent.
	State State
}

// logger is env.Log, or a logger that discards when there is none.
func (env Env) logger() *slog.Logger {
	if env.Log != nil {
		return env.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Collector is a producer that runs on a schedule.
type Collector interface {
	// Name is the producer's name, used in the event source
	// pinkie://<host>/<name> and in configuration.
	Name() string
	// Interval is how often Collect runs by default.
	Interval() time.Duration
	// Collect looks at the host once.
	Collect(ctx context.Context, env Env) ([]Observation, error)
}

// Streamer is a producer that follows a source (a log, the journal) and
// emits each observation as it happens. emit returns once the observation
// is stored in the agent's OUTBOX; a streamer persists its read position
// only after that, so a restart neither repeats nor skips.
type Streamer interface {
	Name() string
	Stream(ctx context.Context, env Env, emit func(context.Context, Observation) error) error
}

// State keeps a producer's small persistent state (a log position, the last
// seen error counters) across agent restarts. Put replaces the value
// atomically.
type State interface {
	Get(key string) ([]byte, bool, error)
	Put(key string, value []byte) error
}

// Spec describes one producer: its name, whether it is on by default, and
// how to build it from its options (the producer's object in the agent's
// config file, without the common "enabled" and "interval" keys). New
// returns a Collector or a Streamer and refuses unknown option keys.
type Spec struct {
	Name           string
	Doc            string
	DefaultEnabled bool
	New            func(options json.RawMessage, info Info) (any, error)
	// Saved, when set, judges a saved copy of the producer's input
	// offline (pinkie collect --smartctl-json FILE).
	Saved *SavedInput
}

// SavedInput is a producer's input saved to a file (smartctl --json
// output, a /proc/mdstat) and how to judge it without the host.
type SavedInput struct {
	// Flag names the input in `pinkie collect` ("smartctl-json").
	Flag string
	// What the file must be, for "not <What>" errors ("smartctl --json output").
	What string
	// Limit bounds the file, as the agent bounds what it reads.
	Limit int64
	// Judge parses the saved bytes into judged observations; now is the
	// time of the judgement. An error means the bytes are not What.
	Judge func(saved []byte, now time.Time) ([]Observation, error)
}

// Info is what the agent tells producers about itself.
type Info struct {
	// Instance identifies this agent process.
	Instance string
	// Version is the agent's version.
	Version string
}
