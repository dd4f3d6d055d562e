package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pinkiefleet/pinkie/cmd/internal/agentcmd"
	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/producers"
	"github.com/pinkiefleet/pinkie/streams"
)

func runDemo(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("demo", "", `
Run a hub and an agent for this machine in one process, on a temporary data
directory with fresh nkeys, and print what to try next. Everything is the same
code as 'pinkie hub' and 'pinkie agent'; Ctrl-C stops both and removes the
temporary directory.`)
	heartbeat := fs.Duration("heartbeat", 5*time.Second, "the agent's heartbeat interval")
	keep := fs.Bool("keep", false, "keep the temporary directory on exit")
	shellOn := fs.Bool("shell", false, "let the demo's agent serve shell sessions as your own user (pinkie shell HOST, and the terminal on the dashboard's host page once you signed in with the one-time link)")
	mkLog := cli.LogFlags(fs, a.stderr)
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	log, err := mkLog()
	if err != nil {
		return err
	}
	host := agentcmd.ShortHostname()
	if events.ValidHost(host) != nil {
		host = "demo"
	}
	dir, err := os.MkdirTemp("", "pinkie-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	authDir := filepath.Join(dir, "auth")
	if _, err := streams.KeysInit(authDir, []string{host}); err != nil {
		return err
	}
	// The same hub as `pinkie hub`: projections, alerter, notifier (no
	// channels configured), deploy planner and the dashboard.
	hopts, err := withHubParts(streams.HubOptions{
		DataDir: filepath.Join(dir, "hub"), NATSAddr: "127.0.0.1:4222", LeafAddr: "127.0.0.1:7422", HTTPAddr: "127.0.0.1:8080", AuthDir: authDir, Log: log,
	}, hubConfig{}, a.stdout)
	if err != nil {
		return err
	}
	hub, err := streams.StartHub(ctx, hopts)
	if err != nil {
		// The usual ports are taken (another hub?): take free ones.
		log.Info("default ports busy; using free ones", "err", err)
		hopts.NATSAddr, hopts.LeafAddr, hopts.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		if hub, err = streams.StartHub(ctx, hopts); err != nil {
			return err
		}
	}
	defer hub.Close()
	built, err := agentcmd.BuildProducers("", nil, producers.Info{Instance: agentcmd.NewInstanceID(), Version: version}, *heartbeat, 0)
	if err != nil {
		return err
	}
	ag, err := streams.StartAgent(ctx, streams.AgentOptions{
		Host: host, HubURLs: []string{hub.LeafURL()}, NkeyFile: streams.HostSeedFile(authDir, host),
		DataDir: filepath.Join(dir, "agent"), ReconnectInterval: time.Second, Log: log,
		Services: []streams.AgentService{streams.NewShellService(streams.ShellOptions{Enabled: *shellOn, Log: log})},
	})
	if err != nil {
		return err
	}
	defer ag.Close()
	op := streams.OperatorSeedFile(authDir)
	fmt.Fprintf(a.stdout, `
pinkie demo is running: a hub and an agent for %[1]q.
  data      %[2]s
  hub       %[3]s   (agents: %[4]s)
  dashboard http://%[5]s/ (sign in with the one-time link printed above)
  metrics   http://%[5]s/metrics    health: http://%[5]s/healthz
  fleet     http://%[5]s/metrics/fleet (every host's state for Prometheus)

Try, in another terminal:
  export PINKIE_SERVER=%[3]s PINKIE_NKEY=%[6]s
  go run ./cmd/pinkie tail                         # follow events readably
  go run ./cmd/pinkie hosts                        # the inventory
  go run ./cmd/pinkie alerts                       # what fires now
  go run ./cmd/pinkie pub deploy.requested host=%[1]s
  go run ./cmd/pinkie shell %[1]s -- uname -a       # with pinkie demo --shell
  nats -s %[3]s --nkey %[6]s sub 'pinkie.>'
  nats -s %[3]s --nkey %[6]s stream ls
  curl -s http://%[5]s/metrics | grep pinkie_

Ctrl-C stops the demo and removes %[2]s.
`, host, dir, hub.ClientURL(), hub.LeafURL(), hub.HTTPAddr(), op)
	env := producers.Env{
		Host: host, Root: os.DirFS("/"), Run: producers.ExecRunner{}, Now: time.Now, Log: log,
		State: &producers.FileState{Dir: filepath.Join(dir, "agent", "state")},
	}
	producers.Run(ctx, env, built, ag)
	<-ctx.Done()
	fmt.Fprintln(a.stdout, "\nstopping the demo")
	return nil
}
