package main

import (
	"context"
	"fmt"

	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/nixcache"
	"github.com/pinkiefleet/pinkie/streams"
)

func runKeys(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(a.stdout, `Usage:
  pinkie keys init DIR --hosts goliath,koishi [--nix-key FILE] [--json]
  pinkie keys add-host DIR NAME [--json]
  pinkie keys add-nix-key DIR [--nix-key FILE] [--json]
  pinkie keys show-nix-key DIR [--json]

init writes an operator seed (DIR/operator.nk: may publish deploy requests and
manage streams), a read-only seed (DIR/reader.nk), one seed per host
(DIR/hosts/<name>.nk, for that host's agent only), the fleet's Nix signing key
pair (DIR/nix-signing.sec, for the hub only, and DIR/nix-signing.pub) and the
hub's auth file DIR/auth.json (public keys only). Seed files are mode 0600 and
work with the nats CLI: nats --nkey DIR/operator.nk sub 'pinkie.>'. Start the
hub with --auth DIR. add-host adds one host; a running hub picks it up within
seconds.

The Nix key signs what the hub's binary cache holds; hosts trust its public
key. --nix-key FILE takes an existing Nix secret key (nix key generate-secret)
instead of making one. add-nix-key gives an auth directory made before pinkie
had a Nix cache its key pair; it never overwrites one. show-nix-key prints the
public key, as nix.conf's trusted-public-keys takes it.
`)
		if len(args) == 0 {
			return cli.Usagef("missing subcommand: init, add-host, add-nix-key or show-nix-key")
		}
		return nil
	}
	switch args[0] {
	case "init":
		fs := cli.NewFlagSet("keys init", "DIR --hosts a,b", "Create an auth directory: operator, reader and per-host nkeys, the fleet's Nix signing key pair and the hub's auth file.")
		var hosts cli.StringList
		fs.Var(&hosts, "hosts", "host `NAMES`, comma-separated")
		asJSON := fs.Bool("json", false, "print the result as JSON")
		dir, opts, err := parseWithNixKey(fs, args[1:])
		if err != nil {
			return err
		}
		auth, err := streams.KeysInit(dir, hosts, opts...)
		if err != nil {
			return cli.Usagef("%v", err)
		}
		return printKeys(a, dir, auth, hosts, true, *asJSON)
	case "add-host":
		fs := cli.NewFlagSet("keys add-host", "DIR NAME", "Add a host's nkey to an auth directory.")
		asJSON := fs.Bool("json", false, "print the result as JSON")
		if err := fs.ParseArgs(args[1:]); err != nil {
			return err
		}
		if len(fs.Positional()) != 2 {
			return cli.Usagef("keys add-host takes DIR and NAME, got %q", fs.Positional())
		}
		dir, host := fs.Positional()[0], fs.Positional()[1]
		auth, err := streams.KeysAddHost(dir, host)
		if err != nil {
			return cli.Usagef("%v", err)
		}
		return printKeys(a, dir, auth, []string{host}, false, *asJSON)
	case "add-nix-key":
		fs := cli.NewFlagSet("keys add-nix-key", "DIR", "Give an auth directory the fleet's Nix signing key pair (never overwrites one).")
		asJSON := fs.Bool("json", false, "print the result as JSON")
		dir, opts, err := parseWithNixKey(fs, args[1:])
		if err != nil {
			return err
		}
		pub, err := streams.KeysAddNixKey(dir, opts...)
		if err != nil {
			return cli.Usagef("%v", err)
		}
		return printNixKey(a, dir, pub, true, *asJSON)
	case "show-nix-key":
		fs := cli.NewFlagSet("keys show-nix-key", "DIR", "Print the fleet's Nix public key (for nix.conf's trusted-public-keys).")
		asJSON := fs.Bool("json", false, "print the result as JSON")
		dir, err := parseOneDir(fs, args[1:])
		if err != nil {
			return err
		}
		pub, err := streams.LoadNixPublicKey(dir)
		if err != nil {
			return cli.Usagef("%v", err)
		}
		return printNixKey(a, dir, pub, false, *asJSON)
	}
	return cli.Usagef("unknown keys subcommand %q: want init, add-host, add-nix-key or show-nix-key", args[0])
}

// parseOneDir parses the flags of a keys verb that takes one DIR.
func parseOneDir(fs *cli.FlagSet, args []string) (string, error) {
	if err := fs.ParseArgs(args); err != nil {
		return "", err
	}
	if len(fs.Positional()) != 1 {
		return "", cli.Usagef("%s takes one DIR, got %q", fs.Name(), fs.Positional())
	}
	return fs.Positional()[0], nil
}

// parseWithNixKey parses a one-DIR verb that takes --nix-key FILE and
// reads that file, refusing one that is not a Nix secret key before
// anything is written.
func parseWithNixKey(fs *cli.FlagSet, args []string) (string, []streams.KeysOption, error) {
	file := fs.String("nix-key", "", "use the Nix secret key in `FILE` (nix key generate-secret) instead of making one")
	dir, err := parseOneDir(fs, args)
	if err != nil || *file == "" {
		return dir, nil, err
	}
	k, err := nixcache.ReadSecretKeyFile(*file)
	if err != nil {
		return "", nil, cli.Usagef("--nix-key: %v", err)
	}
	return dir, []streams.KeysOption{streams.WithNixKey(k)}, nil
}

// nixKeyResult is what add-nix-key and show-nix-key print with --json;
// keys init prints the same fields among its own.
type nixKeyResult struct {
	NixSecretKeyFile string `json:"nix_secret_key_file,omitempty"`
	NixPublicKeyFile string `json:"nix_public_key_file"`
	NixKeyName       string `json:"nix_key_name"`
	NixPublicKey     string `json:"nix_public_key"`
}

func newNixKeyResult(dir string, pub nixcache.PublicKey, withSecret bool) nixKeyResult {
	r := nixKeyResult{NixPublicKeyFile: streams.NixPublicKeyFile(dir), NixKeyName: pub.Name, NixPublicKey: pub.String()}
	if withSecret {
		r.NixSecretKeyFile = streams.NixSecretKeyFile(dir)
	}
	return r
}

// printNixKey prints the Nix key pair's files (after add-nix-key) or just
// the public key, for $(pinkie keys show-nix-key DIR).
func printNixKey(a *app, dir string, pub nixcache.PublicKey, files, asJSON bool) error {
	r := newNixKeyResult(dir, pub, files)
	return printLine(a, asJSON, r, func() {
		if !files {
			fmt.Fprintln(a.stdout, r.NixPublicKey)
			return
		}
		printNixKeyLines(a, r)
	})
}

func printNixKeyLines(a *app, r nixKeyResult) {
	fmt.Fprintf(a.stdout, "nix key    %s (the hub's only; signs its binary cache)\n", r.NixSecretKeyFile)
	fmt.Fprintf(a.stdout, "nix public %s (trusted-public-keys = %s)\n", r.NixPublicKeyFile, r.NixPublicKey)
}

type keysResult struct {
	AuthFile string            `json:"auth_file"`
	Operator string            `json:"operator_seed_file,omitempty"`
	Reader   string            `json:"reader_seed_file,omitempty"`
	Hosts    map[string]string `json:"host_seed_files"`
	*nixKeyResult
}

func printKeys(a *app, dir string, auth *streams.Auth, hosts []string, roles, asJSON bool) error {
	r := keysResult{AuthFile: dir + "/" + streams.AuthFileName, Hosts: map[string]string{}}
	for _, h := range hosts {
		r.Hosts[h] = streams.HostSeedFile(dir, h)
	}
	if roles && len(auth.Operators) > 0 {
		r.Operator, r.Reader = streams.OperatorSeedFile(dir), streams.ReaderSeedFile(dir)
		pub, err := streams.LoadNixPublicKey(dir)
		if err != nil {
			return err
		}
		nr := newNixKeyResult(dir, pub, true)
		r.nixKeyResult = &nr
	}
	return printLine(a, asJSON, r, func() {
		fmt.Fprintf(a.stdout, "auth file  %s (give the hub --auth %s)\n", r.AuthFile, dir)
		if r.Operator != "" {
			fmt.Fprintf(a.stdout, "operator   %s\nreader     %s\n", r.Operator, r.Reader)
		}
		if r.nixKeyResult != nil {
			printNixKeyLines(a, *r.nixKeyResult)
		}
		for _, h := range hosts {
			fmt.Fprintf(a.stdout, "host %-6s %s (copy to that host only; pinkie agent --nkey)\n", h, r.Hosts[h])
		}
	})
}
