package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/pinkiefleet/pinkie/streams"
)

// errHelp is returned after --help printed the usage: exit 0.
var errHelp = errors.New("help shown")

// flagSet is a flag.FlagSet that accepts flags anywhere among the
// arguments (pinkie pub deploy.requested host=x --json) and explains
// itself on --help.
type flagSet struct {
	*flag.FlagSet
	name, argsUsage, doc string
	out                  io.Writer
	positional           []string
}

func newFlagSet(name, argsUsage, doc string) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), name: name, argsUsage: argsUsage, doc: doc, out: os.Stdout}
	fs.SetOutput(io.Discard)
	return fs
}

func (fs *flagSet) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: pinkie %s [flags] %s\n\n%s\n", fs.name, fs.argsUsage, strings.TrimSpace(fs.doc))
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// parse parses flags interspersed with positional arguments; "--" ends
// the flags.
func (fs *flagSet) parse(args []string) error {
	var flags []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			fs.positional = append(fs.positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			fs.positional = append(fs.positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // reported by Parse
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	if err := fs.FlagSet.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.usage(fs.out)
			return errHelp
		}
		return usagef("%v", err)
	}
	return nil
}

func (fs *flagSet) args() []string { return fs.positional }

// parseNoArgs parses the flags of a command that takes no arguments.
func (fs *flagSet) parseNoArgs(args []string) error {
	if err := fs.parse(args); err != nil {
		return err
	}
	if len(fs.args()) > 0 {
		return usagef("unexpected arguments %q", fs.args())
	}
	return nil
}

// needSubcommand checks the arguments of a verb with subcommands: --help
// before any prints the verb's usage; none is a usage error naming them
// (want). ok: args[0] is the subcommand.
func needSubcommand(args []string, name, argsUsage, doc, want string) (ok bool, err error) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return true, nil
	}
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "--help" || a == "-help" }) {
		return false, newFlagSet(name, argsUsage, doc).parse([]string{"--help"})
	}
	return false, usagef("want a subcommand: %s", want)
}

// logFlags adds --log-level and --log-format and returns a function that
// builds the logger once flags are parsed.
func logFlags(fs *flagSet, w io.Writer) func() (*slog.Logger, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	return func() (*slog.Logger, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return nil, usagef("--log-level %q: want debug, info, warn or error", *level)
		}
		opts := &slog.HandlerOptions{Level: l}
		switch *format {
		case "text":
			return slog.New(slog.NewTextHandler(w, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(w, opts)), nil
		default:
			return nil, usagef("--log-format %q: want text or json", *format)
		}
	}
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

func addClientFlags(fs *flagSet, a *app) clientFlags {
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

// stringList is a repeatable, comma-separated flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// readView reads a projection's records below prefix and decodes them
// with decode; failing either is exit 2: the hub is not what pinkie
// expects.
func readView[T any](ctx context.Context, c *streams.Client, bucket, prefix string, decode func(map[string][]byte) (T, error)) (T, error) {
	recs, err := streams.ReadProjection(ctx, c.JS, bucket, prefix)
	if err != nil {
		var zero T
		return zero, usageExit(err)
	}
	v, err := decode(recs)
	if err != nil {
		return v, usageExit(err)
	}
	return v, nil
}
