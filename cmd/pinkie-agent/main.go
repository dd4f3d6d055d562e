// Command pinkie-agent is pinkie agent alone: the same flags, help and
// behaviour (the code is cmd/internal/agentcmd), in a binary that links
// none of the hub, dashboard, alerter or notifier, so the pages a host
// maps for it are the agent's own (issue 17). pinkie-agent --help lists
// the flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pinkiefleet/pinkie/cmd/internal/agentcmd"
	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stderr := cli.SafeWriter{W: os.Stderr}
	const prog = "pinkie-agent"
	err := agentcmd.Run(ctx, agentcmd.Options{Prog: prog, Version: version, Stderr: stderr, Getenv: os.Getenv}, os.Args[1:])
	code := cli.Report(stderr, prog, err)
	stop()
	os.Exit(code)
}
