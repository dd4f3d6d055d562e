package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// FlagSet is a flag.FlagSet that accepts flags anywhere among the
// arguments (pinkie pub deploy.requested host=x --json) and explains
// itself on --help.
type FlagSet struct {
	*flag.FlagSet
	// Prog is the command as the user types it, for --help: "pinkie
	// NAME" unless set otherwise (pinkie-agent).
	Prog           string
	argsUsage, doc string
	out            io.Writer
	positional     []string
}

// NewFlagSet is the flags of the command pinkie NAME.
func NewFlagSet(name, argsUsage, doc string) *FlagSet {
	fs := &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), Prog: "pinkie " + name, argsUsage: argsUsage, doc: doc, out: os.Stdout}
	fs.SetOutput(io.Discard)
	return fs
}

func (fs *FlagSet) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s [flags] %s\n\n%s\n", fs.Prog, fs.argsUsage, strings.TrimSpace(fs.doc))
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// ParseArgs parses flags interspersed with positional arguments; "--"
// ends the flags.
func (fs *FlagSet) ParseArgs(args []string) error {
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
			return ErrHelp
		}
		return Usagef("%v", err)
	}
	return nil
}

// Positional is the arguments that are not flags, after ParseArgs.
func (fs *FlagSet) Positional() []string { return fs.positional }

// ParseNoArgs parses the flags of a command that takes no arguments.
func (fs *FlagSet) ParseNoArgs(args []string) error {
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	if len(fs.Positional()) > 0 {
		return Usagef("unexpected arguments %q", fs.Positional())
	}
	return nil
}

// LogFlags adds --log-level and --log-format and returns a function that
// builds the logger once flags are parsed.
func LogFlags(fs *FlagSet, w io.Writer) func() (*slog.Logger, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	return func() (*slog.Logger, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return nil, Usagef("--log-level %q: want debug, info, warn or error", *level)
		}
		opts := &slog.HandlerOptions{Level: l}
		switch *format {
		case "text":
			return slog.New(slog.NewTextHandler(w, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(w, opts)), nil
		default:
			return nil, Usagef("--log-format %q: want text or json", *format)
		}
	}
}

// StringList is a repeatable, comma-separated flag.
type StringList []string

func (s *StringList) String() string { return strings.Join(*s, ",") }
func (s *StringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
