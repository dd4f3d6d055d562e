package streams

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// serverLogger hands the embedded nats-server's log lines to slog. The
// server's own noise (connects, retries) goes to debug; warnings and errors
// stay visible, except the leaf reconnect errors the agent reports itself
// as one state change.
type serverLogger struct {
	log   *slog.Logger
	quiet []string
}

func (l serverLogger) emit(level slog.Level, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	for _, q := range l.quiet {
		if strings.Contains(msg, q) {
			level = slog.LevelDebug
			break
		}
	}
	l.log.Log(context.Background(), level, msg)
}

func (l serverLogger) Noticef(format string, v ...any) { l.emit(slog.LevelDebug, format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v...) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.emit(slog.LevelError, format, v...) }
func (l serverLogger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v...) }
func (l serverLogger) Debugf(format string, v ...any)  { l.emit(slog.LevelDebug-4, format, v...) }
func (l serverLogger) Tracef(format string, v ...any)  { l.emit(slog.LevelDebug-8, format, v...) }

// startServer starts an embedded nats-server and waits until it accepts
// connections.
func startServer(opts *server.Options, log *slog.Logger, quiet ...string) (*server.Server, error) {
	opts.NoSigs = true // we handle signals; the server would os.Exit otherwise
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configure nats-server: %w", err)
	}
	s.SetLoggerV2(serverLogger{log: log.With("component", "nats-server"), quiet: quiet}, true, false, false)
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats-server did not become ready (see the log above for why)")
	}
	return s, nil
}

// stopServer shuts the server down and waits until its stores are closed.
func stopServer(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// splitHostPort parses ADDR as host:port; an empty host means 127.0.0.1.
func splitHostPort(flag, addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("%s %q: bad port %q", flag, addr, p)
	}
	if h == "" {
		h = "127.0.0.1"
	}
	return h, port, nil
}

// isLoopback reports whether host names only the loopback interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// randomPort maps port 0 ("any free port") to the server's RANDOM_PORT;
// nats-server reads 0 as "the default port".
func randomPort(p int) int {
	if p == 0 {
		return server.RANDOM_PORT
	}
	return p
}
