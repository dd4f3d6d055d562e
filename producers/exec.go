package producers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
)

// ExecRunner runs commands on the real host with os/exec. It implements
// Runner and StreamRunner.
type ExecRunner struct {
	// Timeout bounds each Run when ctx has no earlier deadline (0: none).
	Timeout time.Duration
	// Env, when non-nil, replaces the environment of the commands.
	Env []string
}

// StreamRunner starts a long-running command (journalctl --follow) and
// hands back its stdout as it is written. wait reaps the process and
// reports how it ended; call it after the stream was read or ctx ended.
type StreamRunner interface {
	Start(ctx context.Context, name string, args ...string) (stdout io.ReadCloser, wait func() error, err error)
}

// Run runs name with args and returns its stdout and exit code. err is set
// only when the command could not be run (not found, not executable) or
// was stopped by ctx or the timeout; a non-zero exit is reported in code
// only. stderr is discarded: producers read machine output from stdout.
func (r ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, int, error) {
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, name, args...)
	if r.Env != nil {
		cmd.Env = r.Env
	}
	stdout := cappedBuffer{limit: MaxCommandOutput}
	cmd.Stdout = &stdout
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if stdout.over {
		return nil, -1, fmt.Errorf("run %s: stdout %w", name, &bounded.TooLargeError{Limit: stdout.limit})
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return stdout.buf.Bytes(), -1, fmt.Errorf("run %s: %w", name, ctxErr)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return stdout.buf.Bytes(), exit.ExitCode(), nil
	}
	if err != nil {
		return nil, -1, fmt.Errorf("run %s: %w", name, err)
	}
	return stdout.buf.Bytes(), 0, nil
}

// cappedBuffer keeps a command's stdout up to limit bytes; past it, writes
// fail (the command then dies of SIGPIPE) and over is set. The buffer is
// a field, not embedded: an embedded bytes.Buffer's ReadFrom would let
// io.Copy bypass Write and its limit.
type cappedBuffer struct {
	buf   bytes.Buffer
	limit int64
	over  bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if int64(c.buf.Len()+len(p)) > c.limit {
		c.over = true
		return 0, bounded.ErrTooLarge
	}
	return c.buf.Write(p)
}

// Start starts name with args and returns a reader of its stdout. The
// process is killed when ctx ends.
func (r ExecRunner) Start(ctx context.Context, name string, args ...string) (io.ReadCloser, func() error, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if r.Env != nil {
		cmd.Env = r.Env
	}
	cmd.WaitDelay = time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	wait := func() error {
		err := cmd.Wait()
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	return out, wait, nil
}
