// Package agentcmd is the agent's command line: the flags of pinkie agent
// and how they wire the agent, shared by pinkie and the agent-only binary
// pinkie-agent (which links nothing of the hub's).
package agentcmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/producers"
	"github.com/pinkiefleet/pinkie/shell"
	"github.com/pinkiefleet/pinkie/streams"
)

// ShortHostname is the machine's host name up to the first dot.
func ShortHostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	h, _, _ = strings.Cut(h, ".")
	return h
}

// NewInstanceID is a random ID for one run of an agent.
func NewInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Options is what the agent command takes from the binary running it.
type Options struct {
	// Prog is the command as the user types it: "pinkie agent" or
	// "pinkie-agent" (usage and error messages).
	Prog    string
	Version string
	Stderr  io.Writer
	Getenv  func(string) string
}

// Run runs the agent as its flags in args say, until ctx ends.
func Run(ctx context.Context, o Options, args []string) error {
	fs := cli.NewFlagSet("agent", "", `
Run the agent on a host: an embedded nats-server with its own JetStream domain
(pinkie_<name>) connected to the hub as a leaf node. Producers store their
events in the local OUTBOX stream, which accepts them whether or not the hub is
reachable; the hub sources the OUTBOX over the leaf connection, so an agent cut
off for hours loses nothing and doubles nothing when it comes back.

The agent starts without the hub and keeps retrying (every --reconnect plus
jitter), logging the link state once per change.`)
	fs.Prog = o.Prog
	name := fs.String("name", ShortHostname(), "this host's `NAME` in the fleet (letters, digits, '-', '_')")
	var hubs cli.StringList
	fs.Var(&hubs, "hub", "hub leaf `URL`, e.g. nats-leaf://hub.lan:7422 (repeat or comma-separate for a clustered hub)")
	data := fs.String("data", cli.DefaultDataDir(o.Getenv, "/var/lib/pinkie-agent"), "data `DIR` for the OUTBOX and producer state (env STATE_DIRECTORY)")
	nkey := fs.String("nkey", "", "this host's nkey seed `FILE` (from 'pinkie keys init')")
	tlsCA := fs.String("tls-ca", "", "CA certificate `FILE` to trust for a hub on tls:// (default: the system's)")
	configFile := fs.String("config", "", "producer configuration `FILE` (JSON), e.g. {\"producers\": {\"login\": {\"file\": \"/var/log/auth.log\"}}}")
	root := fs.String("root", "/", "filesystem `ROOT` producers read the host from (a fixture tree in tests)")
	replay := fs.String("replay-commands", "", "answer producers' commands from recordings in `DIR` (commands.json, <name>.out/.code) instead of running them; for tests and demos")
	var only cli.StringList
	fs.Var(&only, "producers", "run only these producers (comma-separated `NAMES`; default: all that apply, or as --config says)")
	heartbeat := fs.Duration("heartbeat", 30*time.Second, "heartbeat interval")
	heartbeatLimit := fs.Uint64("heartbeat-limit", 0, "stop heartbeats after `N` (0: never; for tests and benchmarks)")
	outboxMax := fs.Int64("outbox-max-bytes", 1<<30, "OUTBOX size limit; when full, new events are refused and logged")
	reconnect := fs.Duration("reconnect", 2*time.Second, "base delay between attempts to reach the hub")
	syncAlways := fs.Bool("sync-always", false, "fsync every event (survives power loss, slower)")
	hubCompression := fs.String("hub-compression", streams.DefaultHubCompression, "S2 compression of the link to the hub: off, s2_auto (by round-trip time: none on a LAN, more on slower links), s2_fast, s2_better or s2_best; negotiated, off on either side is off. Any mode but off costs CPU even when it sends uncompressed (the S2 writer runs); s2_auto may pay off for a host far from the hub that fetches Nix closures over the link")
	memLimit := fs.Int64("memory-limit", 16<<20, "soft limit in bytes for the Go heap and runtime (GC works harder near it; 0: none; env GOMEMLIMIT wins)")
	deployFlags := addDeployAgentFlags(fs)
	shellOn := fs.Bool("shell", false, "serve pinkie shell sessions for this host (operators only; off: open requests are refused and nothing runs)")
	shellUser := fs.String("shell-user", "", "local `USER` sessions run as (default: the agent's own user; an agent running as root refuses sessions unless this is set, and runs them as root only when it says root)")
	shellMax := fs.Int("shell-max-sessions", 4, "most shell sessions open at once; more are refused")
	shellIdle := fs.Duration("shell-idle-timeout", 15*time.Minute, "end a shell session with no input and no output for this long")
	shellRecord := fs.Bool("shell-record", false, "keep each shell session's output as an asciicast v2 recording on this host (the agent's SHELLREC stream; pinkie shell HOST --replay ID)")
	shellConsole := fs.String("shell-microvm-console", streams.DefaultMicroVMConsole, "unix socket `PATH` of a MicroVM's console for pinkie shell --guest ({name}: the VM's name); microvm.nix makes none by default (e.g. qemu -serial unix:PATH,server,nowait)")
	shellRecordBytes := fs.Int64("shell-record-max-bytes", 256<<20, "size limit of the recordings kept; the oldest go first")
	mkLog := cli.LogFlags(fs, o.Stderr)
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	if err := events.ValidHost(*name); err != nil {
		return cli.Usagef("--name: %v", err)
	}
	if *heartbeat <= 0 {
		return cli.Usagef("--heartbeat must be positive")
	}
	if !slices.Contains(streams.LeafCompressionModes, *hubCompression) {
		return cli.Usagef("--hub-compression %q: want one of %s", *hubCompression, strings.Join(streams.LeafCompressionModes, ", "))
	}
	log, err := mkLog()
	if err != nil {
		return err
	}
	if *memLimit > 0 && o.Getenv("GOMEMLIMIT") == "" {
		// An agent lives on every host: keep its memory small. The limit
		// is soft (the runtime caps the GC's CPU), so a burst still works.
		debug.SetMemoryLimit(*memLimit)
	}
	rootFS, runner, err := HostAccess(*root, *replay)
	if err != nil {
		return err
	}
	built, err := BuildProducers(*configFile, only, producers.Info{Instance: NewInstanceID(), Version: o.Version}, *heartbeat, *heartbeatLimit)
	if err != nil {
		return err
	}
	deployServices, err := deployFlags.services(*name, *data, log)
	if err != nil {
		return err
	}
	if *shellMax <= 0 || *shellIdle <= 0 {
		return cli.Usagef("--shell-max-sessions and --shell-idle-timeout must be positive")
	}
	if *shellOn {
		switch _, err := shell.ResolveUser(*shellUser, os.Geteuid(), "/etc/passwd"); {
		case errors.Is(err, shell.ErrRootNotExplicit):
			log.Warn("shell sessions will be refused", "err", err)
		case err != nil:
			return cli.Usagef("%v", err)
		}
	}
	var recordStore int64
	if *shellOn && *shellRecord {
		recordStore = *shellRecordBytes
	}
	shellService := streams.NewShellService(streams.ShellOptions{Enabled: *shellOn, User: *shellUser, MaxSessions: *shellMax, IdleTimeout: *shellIdle,
		Record: *shellRecord, RecordBytes: *shellRecordBytes, MicroVMConsole: *shellConsole, Log: log,
		Guests: func() ([]events.Guest, error) { return producers.DiscoverGuests(rootFS) }, Run: runner.Run})
	ag, err := streams.StartAgent(ctx, streams.AgentOptions{
		Host: *name, HubURLs: hubs, NkeyFile: *nkey, TLSCA: *tlsCA, DataDir: *data,
		OutboxMaxBytes: *outboxMax, ReconnectInterval: *reconnect, SyncAlways: *syncAlways, Log: log, HubCompression: *hubCompression,
		Services: append(deployServices, shellService), ExtraStoreBytes: recordStore,
	})
	if err != nil {
		return cli.UsageExit(err)
	}
	defer ag.Close()
	env := producers.Env{
		Host:  *name,
		Root:  rootFS,
		Run:   runner,
		Now:   time.Now,
		Log:   log,
		State: &producers.FileState{Dir: filepath.Join(*data, "state")},
	}
	names := make([]string, 0, len(built))
	for _, b := range built {
		names = append(names, b.Name)
	}
	log.Info("producers running", "producers", strings.Join(names, ","))
	producers.Run(ctx, env, built, ag)
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

// BuildProducers reads the config file (if any) and builds the enabled
// producers, with the heartbeat's interval and limit from the flags.
func BuildProducers(configFile string, only []string, info producers.Info, heartbeat time.Duration, limit uint64) ([]producers.Built, error) {
	cfg, err := ReadConfig(configFile)
	if err != nil {
		return nil, err
	}
	for _, n := range only {
		if _, ok := producers.Lookup(n); !ok {
			return nil, cli.Usagef("--producers: unknown producer %q; known: %s", n, strings.Join(producers.Names(), ", "))
		}
	}
	cfg.EnableOnly(only)
	built, err := cfg.Build(info)
	if err != nil {
		return nil, cli.Usagef("--config %s: %v", configFile, err)
	}
	cfg.SetHeartbeat(built, heartbeat, limit)
	return built, nil
}

// ReadConfig reads the agent's producer configuration (--config);
// no file is the defaults.
func ReadConfig(path string) (producers.Config, error) {
	if path == "" {
		return producers.Config{}, nil
	}
	b, err := bounded.ReadPath(path, cli.MaxConfigFile)
	if err != nil {
		return producers.Config{}, cli.Usagef("--config: %v", err)
	}
	cfg, err := producers.LoadConfig(b)
	if err != nil {
		return producers.Config{}, cli.Usagef("--config %s: %v", path, err)
	}
	return cfg, nil
}

// HostAccess is how producers look at the host: the filesystem under
// --root (a directory: a mistyped root would read as an empty host), and
// commands run for real or, with --replay-commands DIR, replayed from
// recordings. Bad flags are usage errors.
func HostAccess(root, replay string) (fs.FS, producers.Runner, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, nil, cli.Usagef("--root: %v", err)
	}
	if !st.IsDir() {
		return nil, nil, cli.Usagef("--root %s: not a directory", root)
	}
	if replay == "" {
		return os.DirFS(root), producers.ExecRunner{}, nil
	}
	r, err := producers.NewReplayRunner(replay)
	if err != nil {
		return nil, nil, cli.Usagef("--replay-commands: %v", err)
	}
	return os.DirFS(root), r, nil
}
