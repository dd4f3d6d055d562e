package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/shell"
	"github.com/pinkiefleet/pinkie/streams"
)

// exitShellOwn is pinkie shell's exit code for its own failures, as ssh's
// 255: it cannot be confused with a remote command's usual codes.
const exitShellOwn = 255

func runShell(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("shell", "HOST [--guest NAME] [-- COMMAND [ARGS...]]", `
A terminal on a host over the fleet's own link: the session travels from here
to the hub and over the host agent's leaf connection, so no SSH port, jump box
or inbound connection to the host is needed. Only operator keys may open
sessions, and only on agents started with --shell; every session is an audit
event (pinkie.host.<host>.shell.session: who, from where, as which user, the
command, start, end, exit code), e.g. nats sub 'pinkie.host.*.shell.session'.

Without COMMAND: an interactive login shell on a pty (when stdin is a terminal;
else the login shell reads its commands from stdin, without a pty, as with
ssh). The local terminal is put in raw mode (Ctrl-C, Ctrl-D and Ctrl-Z go to
the remote shell, as with ssh), TERM and the window size are passed, resizes
follow, and the terminal is restored however the session ends.

With COMMAND (after --): it runs with the remote user's shell -c. One argument
is passed as a command line ('ls /tmp | wc -l'); several are quoted each, so
they arrive as given. stdin, stdout and stderr are streamed separately and
binary-safe, without a pty unless -t; flow control keeps a fast producer from
flooding the hub and loses no byte.

  pinkie shell goliath
  pinkie shell goliath -- systemctl status nginx
  pinkie shell goliath -- 'journalctl -u nginx | tail' > nginx.log
  tar c dir | pinkie shell goliath -- tar x -C /tmp
  pinkie shell goliath --replay 4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a

With --shell-record, the agent keeps each session's output (not its input:
passwords typed without echo) as an asciicast v2 recording on the host, in
its own SHELLREC stream; --replay ID plays one back, --cast writes the file.

Exit codes (as ssh): the remote command's exit code (127: command not found,
128+N: killed by signal N); 255 for pinkie's own failures: cannot reach the
hub, the key may not open sessions, no agent answered for the host within
--open-timeout (offline, or not started with --shell), the agent refused (no
--shell, no permitted user, session limit), the link was lost mid-session, or
the agent ended it (idle timeout); 2 for bad usage.

--guest NAME opens the session in a guest of HOST instead (the guests its
agent reports: pinkie hosts, the host page). A NixOS container: the agent
enters its namespaces (nsenter into the machinectl leader) and runs the
session there as --shell-user looked up in the container's /etc/passwd
(root only when --shell-user root). A MicroVM that runs its own pinkie agent
is a host of its own (pinkie shell VMHOST; when the inventory has a host
named like the VM, the refusal says so); otherwise --guest opens its
console socket (the agent's --shell-microvm-console), interactively only.
An unknown NAME is refused with the list of HOST's guests.

  pinkie shell goliath --guest web -- systemctl status nginx`)
	cf := addClientFlags(fs, a)
	tty := fs.Bool("t", false, "run COMMAND on a pty (output then is one stream; for programs that want a terminal)")
	noStdin := fs.Bool("n", false, "send no input: COMMAND reads end of input at once (as ssh -n)")
	openTimeout := fs.Duration("open-timeout", 5*time.Second, "give up when no agent answers for HOST within this long")
	replay := fs.String("replay", "", "play back the recording of session `ID` (from its shell.session event) kept by HOST's agent (--shell-record), at its own pace with pauses capped at 2s")
	guest := fs.String("guest", "", "open the session in the NixOS container or MicroVM `NAME` of HOST")
	cast := fs.Bool("cast", false, "with --replay: write the recording as an asciicast v2 file instead of playing it (asciinema play FILE)")
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	pos := fs.Positional()
	if len(pos) == 0 {
		return cli.Usagef("missing HOST")
	}
	host := pos[0]
	if err := events.ValidHost(host); err != nil {
		return cli.Usagef("HOST: %v", err)
	}
	// Without a command, a pty when stdin is a terminal; else (input
	// piped in) the login shell reads it without one, as with ssh.
	interactive := len(pos) == 1 && term.IsTerminal(int(os.Stdin.Fd())) && !*noStdin
	req := streams.ShellRequest{Host: host, Command: shell.CommandLine(pos[1:]), TTY: *tty || interactive, OpenTimeout: *openTimeout,
		Stdout: os.Stdout, Stderr: os.Stderr, Guest: *guest}
	if !*noStdin {
		req.Stdin = os.Stdin
	}
	if *cast && *replay == "" {
		return cli.Usagef("--cast needs --replay ID")
	}
	if *replay != "" {
		if len(pos) > 1 || *tty || *guest != "" {
			return cli.Usagef("--replay plays a recording: no COMMAND, no -t, no --guest")
		}
		req.Replay, req.TTY, req.Command, req.Stdin = *replay, false, "", nil
		if !*cast {
			req.Stdout = shell.NewCastPlayer(os.Stdout, 2*time.Second)
		}
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	if req.TTY {
		req.Term = a.getenv("TERM")
		fd := int(os.Stdin.Fd())
		if term.IsTerminal(fd) {
			if cols, rows, err := term.GetSize(fd); err == nil {
				req.Rows, req.Cols = uint16(rows), uint16(cols)
			}
			restore := func() {}
			defer func() { restore() }()
			req.Started = func() {
				if st, err := term.MakeRaw(fd); err == nil {
					restore = func() { _ = term.Restore(fd, st) }
				}
			}
			req.Resize = watchWindow(ctx, fd)
		}
	}
	c, err := cf.connect(ctx, "pinkie shell")
	if err != nil {
		return shellFailure(err)
	}
	defer c.Conn.Close()
	code, err := c.Shell(ctx, req)
	if err != nil {
		return shellFailure(vmHostHint(ctx, c, *guest, err))
	}
	if code != 0 {
		return cli.ExitError{Code: code, Err: errors.New("")}
	}
	return nil
}

// vmHostHint adds to an agent's refusal of a MicroVM guest that the VM
// runs its own agent, when a host of that name is in the fleet's
// inventory: the session belongs there.
func vmHostHint(ctx context.Context, c *streams.Client, guest string, err error) error {
	var refused *streams.ShellRefusedError
	if guest == "" || !errors.As(err, &refused) || !strings.Contains(refused.Reason, "MicroVM "+guest+" ") || events.ValidHost(guest) != nil {
		return err
	}
	hosts, rerr := readView(ctx, c, events.BucketInventory, "", fleetview.Hosts)
	if rerr != nil {
		return err
	}
	for _, h := range hosts {
		if h.Host == guest {
			return fmt.Errorf("%w\n%s is a host of the fleet with its own agent: pinkie shell %s", err, guest, guest)
		}
	}
	return err
}

// shellFailure is pinkie's own failure: exit 255 with its message.
func shellFailure(err error) error {
	if errors.Is(err, context.Canceled) {
		err = errors.New("interrupted; the session was closed")
	}
	return cli.ExitError{Code: exitShellOwn, Err: errors.New(err.Error())}
}

// watchWindow sends the terminal's size whenever it changes (SIGWINCH).
func watchWindow(ctx context.Context, fd int) <-chan [2]uint16 {
	out := make(chan [2]uint16, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGWINCH)
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				if cols, rows, err := term.GetSize(fd); err == nil {
					select {
					case out <- [2]uint16{uint16(rows), uint16(cols)}:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	return out
}
