// Command pinkie runs a NixOS fleet as an event-sourced system over NATS
// JetStream: the hub, the agent on every host, and the operator's verbs.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pinkiefleet/pinkie/cmd/internal/agentcmd"
	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

// command is one verb of the CLI.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, app *app, args []string) error
}

func commands() []command {
	return []command{
		{"hub", "run the hub: the embedded NATS server with the fleet's streams", runHub},
		{"agent", "run the agent on a host: a leaf node buffering this host's events", runAgent},
		{"demo", "run a hub and an agent for this machine in one process, on a temporary data dir", runDemo},
		{"pub", "publish an event, e.g. pinkie pub deploy.requested host=goliath", runPub},
		{"tail", "follow events as they happen", runTail},
		{"deploy", "deploy hosts of a flake: pinkie deploy @web --wait", runDeploy},
		{"last-deploy", "age of each host's last successful deploy, for CI: exit 0/1/3", runLastDeploy},
		{"collect", "run producers once and print what they see, or judge saved smartctl/zpool/mdstat output", runCollect},
		{"keys", "create nkeys and the fleet's Nix signing key: keys init DIR --hosts a,b; keys add-host DIR NAME; keys add-nix-key DIR; keys show-nix-key DIR", runKeys},
		{"fleet", "the fleet as the flake declares it: fleet sync publishes it; fleet export --format dashy|json", runFleet},
		{"hosts", "list the fleet's hosts, or one host with its drives: hosts [HOST]", runHosts},
		{"guests", "list the fleet's containers and MicroVMs by host; exit 1 when one is down: guests [HOST]", runGuests},
		{"alerts", "list the alerts firing now (silenced ones marked)", runAlerts},
		{"silence", "silence alerts: silence add host=goliath rule=fs.usage --for 2h; silence ls; silence rm ID", runSilence},
		{"notify", "send a test notification: notify test CHANNEL", runNotify},
		{"cache", "the hub's Nix cache: cache ls; cache stats; cache gc [--dry-run]", runCache},
		{"shell", "a terminal or a command on a host over the fleet's link: shell HOST [-- COMMAND]", runShell},
		{"version", "print pinkie's version", runVersion},
	}
}

// app carries what every command shares.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &app{stdout: cli.SafeWriter{W: os.Stdout}, stderr: cli.SafeWriter{W: os.Stderr}, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, a *app, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			return run(ctx, a, []string{args[1], "--help"})
		}
		printUsage(a.stdout)
		if len(args) == 0 {
			return cli.ExitUsage
		}
		return cli.ExitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, a, args[1:])
		return report(a, c.name, err)
	}
	fmt.Fprintf(a.stderr, "pinkie: unknown command %q\n\n", args[0])
	printUsage(a.stderr)
	return cli.ExitUsage
}

func report(a *app, cmd string, err error) int {
	return cli.Report(a.stderr, "pinkie "+cmd, err)
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "pinkie %s — a NixOS fleet as an event-sourced system over NATS JetStream\n\nUsage: pinkie COMMAND [flags] [args]\n\nCommands:\n", version)
	cs := commands()
	for _, c := range cs {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\n%s\nExit codes: 0 ok, 1 finding or failure, 2 usage, configuration or connection error\n(including a key whose role does not allow the action).\nRun 'pinkie COMMAND --help' for a command's flags.\n", strings.TrimSpace(`
Client commands (pub, tail, deploy, last-deploy, hosts, guests, alerts, silence, notify,
fleet, cache, shell) connect to the hub with --server URL and --nkey FILE,
or the environment variables PINKIE_SERVER and PINKIE_NKEY.`))
}

// runAgent is pinkie agent: the same command as the binary pinkie-agent.
func runAgent(ctx context.Context, a *app, args []string) error {
	return agentcmd.Run(ctx, agentcmd.Options{Prog: "pinkie agent", Version: version, Stderr: a.stderr, Getenv: a.getenv}, args)
}

func runVersion(_ context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("version", "", "Print pinkie's version.")
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, version)
	return nil
}
