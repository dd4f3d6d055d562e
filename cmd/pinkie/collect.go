package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/cmd/internal/agentcmd"
	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/producers"
)

func runCollect(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("collect", "[PRODUCER...]", `
Run producers once and print the events they would publish; nothing is
published. Without PRODUCER names, every producer that is on by default runs.
Streaming producers (login, fail2ban) read their log to its end and stop.

  pinkie collect                                  what the agent sees on this host
  pinkie collect profile network --json           as JSON lines (the CloudEvents)
  pinkie collect --root testdata/root-nixos       against a saved root filesystem
  pinkie collect login --from /var/log/auth.log.1 a saved log instead of the journal
  pinkie collect smart --smartctl-json sda.json   judge saved smartctl --json output
  pinkie collect zfs --zpool-status status.txt    judge saved 'zpool status' output
  pinkie collect mdraid --mdstat mdstat.txt       judge a saved /proc/mdstat

Exit status: 0 when everything is ok, 1 when a verdict is warning or failing or
a producer failed, 2 on usage errors (an unknown producer, a file that is not
what its flag says).`)
	root := fs.String("root", "/", "filesystem `ROOT` to read the host from")
	replay := fs.String("replay-commands", "", "answer producers' commands from recordings in `DIR` instead of running them")
	configFile := fs.String("config", "", "agent configuration `FILE` (producer options)")
	name := fs.String("name", agentcmd.ShortHostname(), "host `NAME` to stamp into the events")
	asJSON := fs.Bool("json", false, "print the events as JSON lines")
	from := fs.String("from", "", "feed the (one) streaming producer this saved log `FILE`")
	// The files producers can judge offline (Spec.Saved), by producer.
	saved := map[string]*string{}
	savedInputs := map[string]*producers.SavedInput{}
	for _, s := range producers.All() {
		if s.Saved != nil {
			saved[s.Name] = fs.String(s.Saved.Flag, "", "judge this saved `FILE` ("+s.Name+" producer)")
			savedInputs[s.Name] = s.Saved
		}
	}
	if err := fs.ParseArgs(args); err != nil {
		return err
	}
	if err := events.ValidHost(*name); err != nil {
		return cli.Usagef("--name: %v", err)
	}
	names := fs.Positional()
	for _, n := range names {
		if _, ok := producers.Lookup(n); !ok {
			return cli.Usagef("unknown producer %q; known producers: %s", n, strings.Join(producers.Names(), ", "))
		}
	}
	rootFS, runner, err := agentcmd.HostAccess(*root, *replay)
	if err != nil {
		return err
	}
	env := producers.Env{Host: *name, Root: rootFS, Run: runner, Now: time.Now,
		Log: discardLog(), State: &producers.MemState{}}
	var obs []producers.Collected
	var failed []string

	// Saved files judged offline.
	for p, path := range saved {
		if *path == "" {
			continue
		}
		if len(names) > 1 || (len(names) == 1 && names[0] != p) {
			return cli.Usagef("--%s judges the %s producer's input; do not name other producers", savedInputs[p].Flag, p)
		}
		o, err := judgeSaved(p, savedInputs[p], *path, env.Now())
		if err != nil {
			return err
		}
		obs = append(obs, o...)
		names = []string{}
	}
	if len(obs) == 0 {
		cfg, err := agentcmd.ReadConfig(*configFile)
		if err != nil {
			return err
		}
		var log string
		if *from != "" {
			if log, err = filepath.Abs(*from); err != nil {
				return cli.Usagef("--from: %v", err)
			}
			if st, err := os.Stat(log); err != nil {
				return cli.Usagef("--from: %v", err)
			} else if !st.Mode().IsRegular() {
				// A log is read to its end; a device or pipe may have none.
				return cli.Usagef("--from %s: not a regular file (give a saved log)", *from)
			}
			env.Root = os.DirFS("/")
		}
		built, err := cfg.BuildOnce(names, log, producers.Info{Instance: "collect", Version: version})
		if errors.Is(err, producers.ErrFromOneStreamer) {
			return cli.Usagef("--from feeds one streaming producer: name it (login or fail2ban)")
		}
		if err != nil {
			return cli.Usagef("%v", err)
		}
		for _, b := range built {
			got, err := producers.RunOnce(ctx, env, b)
			obs = append(obs, got...)
			switch {
			case errors.Is(err, producers.ErrNotApplicable):
				fmt.Fprintf(a.stderr, "%s: not applicable here (%v)\n", b.Name, err)
			case err != nil:
				failed = append(failed, b.Name)
				fmt.Fprintf(a.stderr, "%s: %v\n", b.Name, err)
			}
		}
	}
	findings := 0
	for _, c := range obs {
		e, err := producers.BuildEvent(*name, c.Producer, env.Now(), c.Obs)
		if err != nil {
			return err
		}
		verdict, reasons := producers.Verdict(c.Obs.Data)
		if verdict == "warning" || verdict == "failing" {
			findings++
		}
		if *asJSON {
			b, err := events.Encode(e)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, string(b))
			continue
		}
		obj := c.Obs.Object
		if obj == "" {
			obj = "-"
		}
		line := fmt.Sprintf("%-10s %-20s", c.Obs.Kind, obj)
		if verdict != "" {
			line += fmt.Sprintf(" %-8s", verdict)
			if len(reasons) > 0 {
				line += " " + strings.Join(reasons, "; ")
			}
		} else {
			line += " " + events.Summary(e.Data())
		}
		fmt.Fprintln(a.stdout, line)
	}
	if findings > 0 || len(failed) > 0 {
		return cli.Finding("%d cli.Finding(s), %d producer(s) failed", findings, len(failed))
	}
	return nil
}

// judgeSaved judges a saved file with producer p's Judge; a file that is
// not what the flag says is a usage error naming what was expected.
func judgeSaved(p string, in *producers.SavedInput, path string, now time.Time) ([]producers.Collected, error) {
	b, err := bounded.ReadPath(path, in.Limit)
	if err != nil {
		return nil, cli.Usagef("--%s: %v", in.Flag, err)
	}
	obs, err := in.Judge(b, now)
	if err != nil {
		return nil, cli.Usagef("--%s %s: not %s: %v", in.Flag, path, in.What, err)
	}
	if len(obs) == 0 {
		return nil, cli.Usagef("--%s %s: nothing in it to judge", in.Flag, path)
	}
	out := make([]producers.Collected, 0, len(obs))
	for _, o := range obs {
		out = append(out, producers.Collected{Producer: p, Obs: o})
	}
	return out, nil
}
