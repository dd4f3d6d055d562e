package main

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/streams"
)

// needSubcommand checks the arguments of a verb with subcommands: --help
// before any prints the verb's usage; none is a usage error naming them
// (want). ok: args[0] is the subcommand.
func needSubcommand(args []string, name, argsUsage, doc, want string) (ok bool, err error) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return true, nil
	}
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "--help" || a == "-help" }) {
		return false, cli.NewFlagSet(name, argsUsage, doc).ParseArgs([]string{"--help"})
	}
	return false, cli.Usagef("want a subcommand: %s", want)
}

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

// readView reads a projection's records below prefix and decodes them
// with decode; failing either is exit 2: the hub is not what pinkie
// expects.
func readView[T any](ctx context.Context, c *streams.Client, bucket, prefix string, decode func(map[string][]byte) (T, error)) (T, error) {
	recs, err := streams.ReadProjection(ctx, c.JS, bucket, prefix)
	if err != nil {
		var zero T
		return zero, cli.UsageExit(err)
	}
	v, err := decode(recs)
	if err != nil {
		return v, cli.UsageExit(err)
	}
	return v, nil
}
