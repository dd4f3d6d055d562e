package main

import (
	"context"
	"log/slog"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/streams"
)

// clientFlags are --server and --nkey, defaulting to PINKIE_SERVER and
// PINKIE_NKEY.
type clientFlags struct {
	server, nkey, tlsCA *string
}

// connect connects to the hub as the flags say.
func (cf clientFlags) connect(ctx context.Context, name string) (*streams.Client, error) {
	return streams.Connect(ctx, *cf.server, *cf.nkey, name, streams.WithTLSCA(*cf.tlsCA))
}

func addClientFlags(fs *cli.FlagSet, a *app) clientFlags {
	def := a.getenv("PINKIE_SERVER")
	if def == "" {
		def = "nats://127.0.0.1:4222"
	}
	return clientFlags{
		server: fs.String("server", def, "hub URL (env PINKIE_SERVER)"),
		nkey:   fs.String("nkey", a.getenv("PINKIE_NKEY"), "nkey seed file to authenticate with (env PINKIE_NKEY)"),
		tlsCA:  fs.String("tls-ca", a.getenv("PINKIE_TLS_CA"), "CA certificate `FILE` to trust for a hub on tls:// (env PINKIE_TLS_CA; default: the system's)"),
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
