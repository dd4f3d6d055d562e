package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/shell"
)

// ShellOptions configure the agent's shell service (pinkie agent --shell).
type ShellOptions struct {
	// Enabled serves sessions; off, the agent still answers open requests
	// for its host, with a refusal that says why, and runs nothing.
	Enabled bool
	// User is --shell-user: whom sessions run as. Empty is the agent's own
	// user, except root: an agent running as root refuses sessions unless
	// User names root explicitly.
	User string
	// MaxSessions bounds the sessions open at once (default 4).
	MaxSessions int
	// IdleTimeout ends a session with no input and no output for this
	// long (default 15m).
	IdleTimeout time.Duration
	// Passwd is where login shells are read (default /etc/passwd).
	Passwd string
	// Record keeps each session's output as an asciicast v2 recording in
	// the agent's SHELLREC stream (shell_record.go), RecordBytes at most
	// (default 256 MiB), oldest dropped first.
	Record      bool
	RecordBytes int64
	// Guests lists the host's NixOS containers and MicroVMs (the guest
	// producer's discovery), for --guest sessions (shell_guest.go).
	Guests func() ([]events.Guest, error)
	// Run runs a command on the host (machinectl); the producers' runner,
	// so --replay-commands answers it in tests.
	Run func(ctx context.Context, name string, args ...string) ([]byte, int, error)
	// MicroVMConsole is where a MicroVM's console socket is, {name} its
	// name (default DefaultMicroVMConsole).
	MicroVMConsole string
	Log            *slog.Logger
}

// ShellService runs pinkie shell sessions on the agent's own host.
type ShellService struct {
	o      ShellOptions
	mu     sync.Mutex
	active map[string]bool
	// seen are the latest sessions opened: the operator repeats its open
	// request until it hears back, and a repeat must not run a command
	// twice.
	seen     map[string]bool
	seenRing []string
	wg       sync.WaitGroup
}

// seenSessions is how many opened session ids the agent remembers.
const seenSessions = 1024

// NewShellService makes the shell service with o's defaults filled in.
func NewShellService(o ShellOptions) *ShellService {
	if o.MaxSessions <= 0 {
		o.MaxSessions = 4
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 15 * time.Minute
	}
	if o.Passwd == "" {
		o.Passwd = "/etc/passwd"
	}
	if o.RecordBytes <= 0 {
		o.RecordBytes = 256 << 20
	}
	if o.MicroVMConsole == "" {
		o.MicroVMConsole = DefaultMicroVMConsole
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &ShellService{o: o, active: map[string]bool{}, seen: map[string]bool{}}
}

// Name implements AgentService.
func (s *ShellService) Name() string { return "shell" }

// Run implements AgentService: it answers open requests for this host
// until ctx ends, then ends the sessions still open.
func (s *ShellService) Run(ctx context.Context, a *Agent) error {
	// The recordings' stream first: a session opened before it exists
	// would lose the start of its recording.
	if s.o.Enabled && s.o.Record {
		if _, err := a.js.CreateOrUpdateStream(ctx, shellRecConfig(s.o.RecordBytes)); err != nil {
			return fmt.Errorf("create the %s stream: %w", ShellRecStream, err)
		}
	}
	sub, err := a.nc.Subscribe(events.ShellOpenSubject(a.Host()), func(m *nats.Msg) { s.open(ctx, a, m) })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", events.ShellOpenSubject(a.Host()), err)
	}
	if s.o.Enabled {
		s.o.Log.Info("shell sessions enabled", "host", a.Host(), "user", s.o.User, "max_sessions", s.o.MaxSessions, "idle_timeout", s.o.IdleTimeout, "record", s.o.Record)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	s.wg.Wait()
	return nil
}

// operator is who opened a session, as the hub vouched for it.
type operator struct{ key, name, ip string }

// maxOpen bounds an open request: a command line and a few fields.
const maxOpen = 16 << 10

func (s *ShellService) open(ctx context.Context, a *Agent, m *nats.Msg) {
	host := a.Host()
	var req shell.Open
	if len(m.Data) > maxOpen || json.Unmarshal(m.Data, &req) != nil || !shell.SessionRE.MatchString(req.Session) {
		s.o.Log.Warn("shell: malformed open request ignored", "host", host, "bytes", len(m.Data))
		return
	}
	s.mu.Lock()
	repeat := s.seen[req.Session]
	s.mu.Unlock()
	if repeat {
		return
	}
	refuse := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		s.o.Log.Warn("shell session refused", "host", host, "session", req.Session, "err", msg)
		publishControl(a.nc, events.ShellSubject(host, req.Session, events.ShellStatus), shell.Control{Type: shell.Refused, Error: msg})
	}
	if !s.o.Enabled {
		refuse("the agent on %s was not started with --shell (NixOS: services.pinkie.agent.shell.enable); nothing runs", host)
		return
	}
	who, err := operatorOf(m, a.opts.NkeyFile != "")
	if err != nil {
		refuse("%v", err)
		return
	}
	u, err := shell.ResolveUser(s.o.User, os.Geteuid(), s.o.Passwd)
	if err != nil {
		refuse("%s: %v", host, err)
		return
	}
	if req.Window <= 0 || req.Window > shell.MaxWindow {
		refuse("window %d: want 1 to %d bytes", req.Window, shell.MaxWindow)
		return
	}
	var guest guestTarget
	if req.Guest != "" {
		if req.Replay != "" {
			refuse("--replay plays a recording of %s: no --guest", host)
			return
		}
		if guest, err = s.resolveGuest(ctx, host, req.Guest, u, req.Command); err != nil {
			refuse("%v", err)
			return
		}
	}
	s.mu.Lock()
	switch {
	case s.seen[req.Session]:
		s.mu.Unlock()
		return
	case len(s.active) >= s.o.MaxSessions:
		n := len(s.active)
		s.mu.Unlock()
		refuse("%s already has %d of %d shell sessions open (--shell-max-sessions); try again when one ends", host, n, s.o.MaxSessions)
		return
	}
	s.active[req.Session] = true
	s.seen[req.Session] = true
	s.seenRing = append(s.seenRing, req.Session)
	if len(s.seenRing) > seenSessions {
		delete(s.seen, s.seenRing[0])
		s.seenRing = s.seenRing[1:]
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.active, req.Session)
			s.mu.Unlock()
		}()
		ss := &shellSession{s: s, a: a, req: req, who: who, user: u, guest: guest}
		if guest.kind == "container" {
			ss.user = guest.user
		}
		ss.run(ctx)
	}()
}

// operatorOf reads who sent m from the header the hub's server stamps on
// a message crossing from the clients' account (Nats-Request-Info: it
// replaces whatever the client put there). A hub with --auth always
// stamps it; an agent with a host key accepts nothing without it.
func operatorOf(m *nats.Msg, auth bool) (operator, error) {
	h := m.Header.Get(server.ClientInfoHdr)
	if h == "" {
		if auth {
			return operator{}, fmt.Errorf("the request carries no operator identity from the hub; nothing runs")
		}
		return operator{key: "unauthenticated"}, nil
	}
	var ci server.ClientInfo
	if err := json.Unmarshal([]byte(h), &ci); err != nil {
		return operator{}, fmt.Errorf("the hub's identity header is unreadable: %v", err)
	}
	if auth && ci.Account != clientsAccount {
		return operator{}, fmt.Errorf("the request came from account %q, not an operator's; nothing runs", ci.Account)
	}
	key := ci.User
	if key == "" {
		key = "unknown"
	}
	return operator{key: key, name: ci.Name, ip: ci.Host}, nil
}

func publishControl(nc *nats.Conn, subject string, c shell.Control) {
	b, _ := json.Marshal(c)
	_ = nc.Publish(subject, b)
}
