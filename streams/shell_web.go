package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The dashboard's web terminal opens sessions from inside the hub, as its
// own in-process user of CLIENTS: it may use the shell subjects as an
// operator does and nothing else (no JetStream, no events). Like any
// operator's, its messages cross into $G through the service imports, so
// the hub's server stamps them with its identity (Nats-Request-Info) and the
// agent records it: the dashboard's key, and the connection name the
// dashboard gives each session's connection, naming the signed-in user.
// The key is made afresh at each start and lives only in the hub's memory;
// the user connects only in-process, so nobody outside the hub can use it.

func webShellPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: shellOperatorPublish()},
		Subscribe: &server.SubjectPermission{Allow: shellOperatorSubscribe()},
	}
}

// ShellConnNamePrefix starts the connection name of every dashboard
// terminal session, so the shell.session audit events tell them from the
// CLI's.
const ShellConnNamePrefix = "pinkie dashboard: "

// maxConnName bounds the connection name (the audit event's client_name
// takes 256 bytes).
const maxConnName = 200

// ShellClient connects a dashboard terminal session to the hub, in-process,
// as the dashboard's shell user, with the connection named for the signed-in
// user who (ShellConnNamePrefix + who, cut to 200 bytes). The caller closes
// it when the session ends. Only Shell may be used on it.
func (h *Hub) ShellClient(who string) (*Client, error) {
	if h.srv == nil {
		return nil, errors.New("the hub is not running")
	}
	name := ShellConnNamePrefix + who
	if len(name) > maxConnName {
		name = name[:maxConnName]
	}
	denied := make(chan error, 16)
	opts := []nats.Option{nats.InProcessServer(h.srv), nats.Name(name), nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case denied <- err:
				default:
				}
			}
		})}
	if h.opts.AuthDir != "" {
		pub, _ := h.webKP.PublicKey()
		opts = append(opts, nats.Nkey(pub, h.webKP.Sign))
	}
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect the dashboard terminal to the hub: %w", err)
	}
	return &Client{Conn: nc, denied: denied, key: "the dashboard's terminal user"}, nil
}

// ShellAs runs one dashboard terminal session: req through the hub on its
// own in-process connection (ShellClient(who)), closed when it ends.
func (h *Hub) ShellAs(ctx context.Context, who string, req ShellRequest) (int, error) {
	c, err := h.ShellClient(who)
	if err != nil {
		return -1, err
	}
	defer c.Conn.Close()
	return c.Shell(ctx, req)
}
