// Package cli is what pinkie's commands share however they are built
// (pinkie, pinkie-agent): flags that may sit anywhere among the arguments,
// usage errors and exit codes, and a terminal-safe writer.
package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/streams"
)

// Exit codes scripts and CI can rely on.
const (
	ExitOK      = 0
	ExitFinding = 1 // a finding, a threshold crossed, or a runtime failure
	ExitUsage   = 2 // bad usage, bad configuration, cannot connect
)

// MaxConfigFile bounds the JSON configs the commands read whole (agent and
// hub: a few KB): far above real ones, far below what would hurt (a wrong
// path such as /dev/zero is an error).
const MaxConfigFile = 1 * bounded.MiB

// ErrHelp is returned after --help printed the usage: exit 0.
var ErrHelp = errors.New("help shown")

// UsageError is bad input from the user: exit 2 with the message.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// Usagef is a UsageError.
func Usagef(format string, a ...any) error { return UsageError{fmt.Sprintf(format, a...)} }

// ExitError carries an explicit exit code (e.g. 1 for a finding).
type ExitError struct {
	Code int
	Err  error
}

func (e ExitError) Error() string { return e.Err.Error() }
func (e ExitError) Unwrap() error { return e.Err }

// UsageExit is a failure that exits 2 without usage help: the hub is not
// what pinkie expects, or a connection or configuration problem.
func UsageExit(err error) error { return ExitError{Code: ExitUsage, Err: err} }

// Finding exits 1 with a message saying what was found.
func Finding(format string, a ...any) error {
	return ExitError{Code: ExitFinding, Err: fmt.Errorf(format, a...)}
}

// Report prints a command's error to w and returns the exit code; prog
// names the command as the user typed it ("pinkie agent", "pinkie-agent").
func Report(w io.Writer, prog string, err error) int {
	if err == nil || errors.Is(err, ErrHelp) {
		return ExitOK
	}
	var ue UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(w, "%s: %s\n", prog, ue.Msg)
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", prog)
		return ExitUsage
	}
	if errors.Is(err, streams.ErrNotPermitted) {
		// Whatever the verb: the key's role lacks the right, a
		// configuration problem.
		fmt.Fprintf(w, "%s: %s\n", prog, err)
		fmt.Fprintf(w, "%s: the key's role does not allow this: requests (deploy, silence, fleet sync, notify test, cache gc) need an operator key; a reader key only reads pinkie.> subjects, streams and buckets. Pass another key with --nkey or PINKIE_NKEY\n", prog)
		return ExitUsage
	}
	if errors.Is(err, streams.ErrConnect) {
		fmt.Fprintf(w, "%s: %s\n", prog, err)
		return ExitUsage
	}
	var ee ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil && ee.Err.Error() != "" {
			fmt.Fprintf(w, "%s: %s\n", prog, ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintf(w, "%s: %s\n", prog, err)
	return ExitFinding
}

// DefaultDataDir is systemd's StateDirectory= (env STATE_DIRECTORY) when
// set, else fallback.
func DefaultDataDir(getenv func(string) string, fallback string) string {
	if d := getenv("STATE_DIRECTORY"); d != "" {
		return d
	}
	return fallback
}
