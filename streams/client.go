package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
)

// Client is a CLI's connection to the hub.
type Client struct {
	Conn *nats.Conn
	JS   jetstream.JetStream
	// denied receives the server's asynchronous permission errors, so a
	// refused publish fails at once instead of at its timeout.
	denied chan error
	// key names the credentials in refusals: the nkey file, or "" for none.
	key string
}

// ErrConnect marks a failure to reach or authenticate with the hub.
var ErrConnect = errors.New("cannot connect to the hub")

// ErrNotPermitted marks the hub refusing an action to the connection's
// key: the key's role lacks the right (a configuration problem, not a
// failure of the hub).
var ErrNotPermitted = errors.New("not permitted for this key")

// PermissionError is the hub refusing Action to the key in Key.
type PermissionError struct {
	Action string // what was refused, e.g. "publish pinkie.deploy.goliath.requested"
	Key    string // the nkey file, or "" when connected without one
	Err    error  // the server's words
}

func (e *PermissionError) Error() string {
	key := "no key (no --nkey)"
	if e.Key != "" {
		key = "the key " + e.Key
	}
	return fmt.Sprintf("%s: not permitted for %s: %v", e.Action, key, e.Err)
}

func (e *PermissionError) Unwrap() error        { return e.Err }
func (e *PermissionError) Is(target error) bool { return target == ErrNotPermitted }

// Refused is the hub's refusal of action to this client's key, as an
// error matching ErrNotPermitted.
func (c *Client) Refused(action string, err error) error {
	return &PermissionError{Action: action, Key: c.key, Err: err}
}

// Connect connects to the hub at url, authenticating with the nkey seed in
// nkeyFile when it is set.
func Connect(ctx context.Context, url, nkeyFile, name string, opts ...ClientOption) (*Client, error) {
	var co clientOptions
	for _, o := range opts {
		o(&co)
	}
	denied := make(chan error, 16)
	nopts := []nats.Option{nats.Name(name), nats.Timeout(5 * time.Second), nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case denied <- err:
				default:
				}
			}
		})}
	if nkeyFile != "" {
		kp, err := ReadSeed(nkeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: --nkey: %v", ErrConnect, err)
		}
		pub, _ := kp.PublicKey()
		nopts = append(nopts, nats.Nkey(pub, kp.Sign))
	}
	if co.tlsCA != "" || strings.HasPrefix(url, "tls://") {
		tc, err := clientTLS(co.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConnect, err)
		}
		nopts = append(nopts, nats.Secure(tc))
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "authorization") && nkeyFile == "" {
			hint = " (the hub requires an nkey: pass --nkey FILE or set PINKIE_NKEY)"
		}
		return nil, fmt.Errorf("%w at %s: %v%s", ErrConnect, url, err, hint)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w: %v", ErrConnect, err)
	}
	return &Client{Conn: nc, JS: js, denied: denied, key: nkeyFile}, nil
}

// ClientOption changes how Connect connects.
type ClientOption func(*clientOptions)

type clientOptions struct{ tlsCA string }

// WithTLSCA trusts the CA certificates in file for a hub on tls://.
func WithTLSCA(file string) ClientOption { return func(o *clientOptions) { o.tlsCA = file } }

// Close closes the connection after flushing.
func (c *Client) Close() {
	_ = c.Conn.Drain()
	c.Conn.Close()
}

// Publish publishes an event on subject at the hub and returns the stream's
// acknowledgement.
func (c *Client) Publish(ctx context.Context, subject string, e events.Event) (*jetstream.PubAck, error) {
	m, err := EventMsg(subject, e)
	if err != nil {
		return nil, err
	}
	var ack *jetstream.PubAck
	err = c.untilRefused(ctx, "publish "+subject, subject, func(ctx context.Context) error {
		var err error
		ack, err = c.JS.PublishMsg(ctx, m)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotPermitted) {
			return nil, err
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("publish %s: no stream answered (not permitted for this key, or no hub stream takes this subject): %w", subject, err)
		}
		return nil, fmt.Errorf("publish %s: %w", subject, err)
	}
	return ack, nil
}

// Request sends a request and waits for its reply; a subject this key may
// not publish fails at once with a PermissionError instead of waiting.
func (c *Client) Request(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	var resp *nats.Msg
	err := c.untilRefused(ctx, "request "+m.Subject, m.Subject, func(ctx context.Context) error {
		var err error
		resp, err = c.Conn.RequestMsgWithContext(ctx, m)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// untilRefused runs call and returns its error, or a PermissionError when
// the server refuses subject to this key: at once when it says so
// asynchronously (the call itself would only time out), or when the call
// fails with a permission violation.
func (c *Client) untilRefused(ctx context.Context, action, subject string, call func(context.Context) error) error {
	done := make(chan error, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { done <- call(cctx) }()
	var err error
	select {
	case err = <-done:
	case perr := <-c.denied:
		if strings.Contains(perr.Error(), subject) {
			return c.Refused(action, perr)
		}
		err = <-done
	}
	if err != nil && (errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(err.Error(), "Permissions Violation")) {
		return c.Refused(action, err)
	}
	return err
}
