package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pinkiefleet/pinkie/streams"
)

func runKeys(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(a.stdout, `Usage:
  pinkie keys init DIR --hosts goliath,koishi [--json]
  pinkie keys add-host DIR NAME [--json]

init writes an operator seed (DIR/operator.nk: may publish deploy requests and
manage streams), a read-only seed (DIR/reader.nk), one seed per host
(DIR/hosts/<name>.nk, for that host's agent only) and the hub's auth file
DIR/auth.json (public keys only). Seed files are mode 0600 and work with the
nats CLI: nats --nkey DIR/operator.nk sub 'pinkie.>'. Start the hub with
--auth DIR. add-host adds one host; a running hub picks it up within seconds.
`)
		if len(args) == 0 {
			return usagef("missing subcommand: init or add-host")
		}
		return nil
	}
	switch args[0] {
	case "init":
		fs := newFlagSet("keys init", "DIR --hosts a,b", "Create an auth directory: operator, reader and per-host nkeys and the hub's auth file.")
		var hosts stringList
		fs.Var(&hosts, "hosts", "host `NAMES`, comma-separated")
		asJSON := fs.Bool("json", false, "print the result as JSON")
		if err := fs.parse(args[1:]); err != nil {
			return err
		}
		if len(fs.args()) != 1 {
			return usagef("keys init takes one DIR, got %q", fs.args())
		}
		dir := fs.args()[0]
		auth, err := streams.KeysInit(dir, hosts)
		if err != nil {
			return usagef("%v", err)
		}
		return printKeys(a, dir, auth, hosts, true, *asJSON)
	case "add-host":
		fs := newFlagSet("keys add-host", "DIR NAME", "Add a host's nkey to an auth directory.")
		asJSON := fs.Bool("json", false, "print the result as JSON")
		if err := fs.parse(args[1:]); err != nil {
			return err
		}
		if len(fs.args()) != 2 {
			return usagef("keys add-host takes DIR and NAME, got %q", fs.args())
		}
		dir, host := fs.args()[0], fs.args()[1]
		auth, err := streams.KeysAddHost(dir, host)
		if err != nil {
			return usagef("%v", err)
		}
		return printKeys(a, dir, auth, []string{host}, false, *asJSON)
	}
	return usagef("unknown keys subcommand %q: want init or add-host", args[0])
}

type keysResult struct {
	AuthFile string            `json:"auth_file"`
	Operator string            `json:"operator_seed_file,omitempty"`
	Reader   string            `json:"reader_seed_file,omitempty"`
	Hosts    map[string]string `json:"host_seed_files"`
}

func printKeys(a *app, dir string, auth *streams.Auth, hosts []string, roles, asJSON bool) error {
	r := keysResult{AuthFile: dir + "/" + streams.AuthFileName, Hosts: map[string]string{}}
	for _, h := range hosts {
		r.Hosts[h] = streams.HostSeedFile(dir, h)
	}
	if roles && len(auth.Operators) > 0 {
		r.Operator, r.Reader = streams.OperatorSeedFile(dir), streams.ReaderSeedFile(dir)
	}
	if asJSON {
		return json.NewEncoder(a.stdout).Encode(r)
	}
	fmt.Fprintf(a.stdout, "auth file  %s (give the hub --auth %s)\n", r.AuthFile, dir)
	if r.Operator != "" {
		fmt.Fprintf(a.stdout, "operator   %s\nreader     %s\n", r.Operator, r.Reader)
	}
	for _, h := range hosts {
		fmt.Fprintf(a.stdout, "host %-6s %s (copy to that host only; pinkie agent --nkey)\n", h, r.Hosts[h])
	}
	return nil
}
