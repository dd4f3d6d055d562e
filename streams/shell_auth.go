package streams

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pinkiefleet/pinkie/events"
)

// Who may use pinkie shell (see events.ShellPrefix for the subjects):
//
//   - operators publish a host's open, in and ctl subjects and subscribe
//     to its out, err and status subjects, for any host;
//   - readers neither: a reader key opens nothing and sees nothing;
//   - a host's leaf key receives its own host's open, in and ctl and sends
//     its own host's out, err and status, and nothing of another host: a
//     stolen host key can neither open a session elsewhere nor read or
//     inject another host's bytes.
//
// Operators live in CLIENTS and agents in $G: the operator → agent
// subjects are service imports from $G with sharing on, so the hub's
// server stamps each message with the operator's identity (public nkey,
// connection name, address) in Nats-Request-Info, which the agent records
// in its audit event and a client cannot forge; the agent → operator
// subjects are stream imports.

func shellOperatorPublish() []string {
	return []string{
		events.ShellOpenSubject("*"),
		events.ShellSubject("*", "*", events.ShellIn),
		events.ShellSubject("*", "*", events.ShellCtl),
	}
}

func shellOperatorSubscribe() []string {
	return []string{
		events.ShellSubject("*", "*", events.ShellOut),
		events.ShellSubject("*", "*", events.ShellErr),
		events.ShellSubject("*", "*", events.ShellStatus),
	}
}

// shellLeafPublish and shellLeafSubscribe are a host's own sessions, from
// its leaf's point of view.
func shellLeafPublish(host string) []string {
	return []string{
		events.ShellSubject(host, "*", events.ShellOut),
		events.ShellSubject(host, "*", events.ShellErr),
		events.ShellSubject(host, "*", events.ShellStatus),
	}
}

func shellLeafSubscribe(host string) []string {
	return []string{
		events.ShellOpenSubject(host),
		events.ShellSubject(host, "*", events.ShellIn),
		events.ShellSubject(host, "*", events.ShellCtl),
	}
}

// shellAccounts wires the shell subjects between $G and CLIENTS.
func shellAccounts(global, clients *server.Account) error {
	to := []*server.Account{clients}
	for _, s := range shellOperatorPublish() {
		if err := global.AddServiceExport(s, to); err != nil {
			return fmt.Errorf("export %s: %w", s, err)
		}
		if err := clients.AddServiceImport(global, s, s); err != nil {
			return fmt.Errorf("import %s: %w", s, err)
		}
		if err := clients.SetServiceImportSharing(global, s, true); err != nil {
			return fmt.Errorf("share %s: %w", s, err)
		}
	}
	for _, s := range shellOperatorSubscribe() {
		if err := global.AddStreamExport(s, to); err != nil {
			return fmt.Errorf("export %s: %w", s, err)
		}
		if err := clients.AddStreamImport(global, s, ""); err != nil {
			return fmt.Errorf("import %s: %w", s, err)
		}
	}
	return nil
}
