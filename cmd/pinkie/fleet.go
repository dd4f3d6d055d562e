package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/atomicfile"
	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/cmd/internal/cli"
	"github.com/pinkiefleet/pinkie/deploy/fleet"
	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
	"github.com/pinkiefleet/pinkie/streams"
)

// fleetMaxInput bounds a declared fleet read with --from: room for
// indentation around the most the FLEET stream takes.
const fleetMaxInput = 8 * fleet.MaxEventBytes

func runFleet(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 {
		return cli.Usagef("missing subcommand: sync or export")
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(a.stdout, fleetUsage)
		return nil
	}
	switch args[0] {
	case "sync":
		return runFleetSync(ctx, a, args[1:])
	case "export":
		return runFleetExport(ctx, a, args[1:])
	}
	return cli.Usagef("unknown subcommand %q: want sync or export", args[0])
}

const fleetUsage = `Usage: pinkie fleet sync|export [flags]

The fleet as the flake declares it: every host of its plain nixosConfigurations
with its pinkie.deployment options, pinkie roles, the systemd services it should
run and the nginx/caddy domains it serves (pinkie's fleet export, nixos/lib.nix,
evaluated with one nix eval; no special flake output needed).

  pinkie fleet sync [--flake REF] [--json]      publish it as pinkie.fleet.declared
  pinkie fleet export --format dashy [-o FILE]  write a dashy configuration
  pinkie fleet export --format json             print the declared fleet

Run 'pinkie fleet sync --help' or 'pinkie fleet export --help' for the flags.
`

// fleetSyncResult is what fleet sync prints with --json.
type fleetSyncResult struct {
	pubResult
	Flake    string `json:"flake"`
	Revision string `json:"revision,omitempty"`
	Hosts    int    `json:"hosts"`
	Services int    `json:"services"`
	Domains  int    `json:"domains"`
}

func runFleetSync(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("fleet sync", "", `
Evaluate the flake's fleet (hosts, deployment options, roles, services, domains)
and publish it at the hub as a pinkie.fleet.declared event on subject
pinkie.fleet.declared (stream FLEET keeps the last 10), so the inventory knows
which hosts and services should exist. Needs nix with flakes and an operator
key. A fleet with problems no single host can see (buildOn naming a host that
is not in the fleet or has no builder role, an agent named differently from
its configuration) is refused: nothing is published and the problems are
listed (exit 2).

  pinkie fleet sync --flake git+https://git.example.org/infra --nkey operator.nk`)
	cf := addClientFlags(fs, a)
	flake := fs.String("flake", ".", "flake `REF` whose nixosConfigurations to read")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long (evaluating a large fleet takes a while)")
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	set, err := schemas.Load()
	if err != nil {
		return err
	}
	decl, err := fleetEvaluate(ctx, *flake)
	if err != nil {
		return err
	}
	e, err := fleet.Event(set, decl, cliSourceHost(), time.Now())
	if err != nil {
		return fleetUserError(err)
	}
	c, err := cf.connect(ctx, "pinkie fleet sync")
	if err != nil {
		return err
	}
	defer c.Close()
	ack, err := c.Publish(ctx, events.FleetDeclaredSubject, e)
	if err != nil {
		return err
	}
	res := fleetSyncResult{pubResult: newPubResult(e, events.FleetDeclaredSubject, ack), Flake: decl.Flake, Revision: decl.Revision, Hosts: len(decl.Hosts)}
	for _, h := range decl.Hosts {
		res.Services += len(h.Services)
		res.Domains += len(h.Domains)
	}
	return printLine(a, *asJSON, res, func() {
		fmt.Fprintf(a.stdout, "published %s on %s: %d hosts, %d services, %d domains from %s\nid %s, stream %s, seq %d\n",
			res.Type, res.Subject, res.Hosts, res.Services, res.Domains, res.Flake, res.ID, res.Stream, res.Seq)
	})
}

func runFleetExport(ctx context.Context, a *app, args []string) error {
	fs := cli.NewFlagSet("fleet export", "", `
Write the declared fleet in another format:

  --format json    the pinkie.fleet.declared data (as fleet sync publishes it)
  --format dashy   a dashy (https://dashy.to) configuration: a section per host,
                   an item per domain it serves, with its tags

The fleet comes from the flake (--flake, evaluated with nix), from a file
written by --format json (--from FILE, "-" for stdin), or from the hub's FLEET
stream (--from-hub, with --server and --nkey; a reader key will do), so a
dashboard host needs no nix.

  pinkie fleet export --format dashy --flake . -o /var/lib/dashy/conf.yml`)
	cf := addClientFlags(fs, a)
	flake := fs.String("flake", ".", "flake `REF` whose nixosConfigurations to read")
	format := fs.String("format", "json", "output `FORMAT`: json or dashy")
	out := fs.String("o", "", "write to `FILE` (atomically) instead of stdout")
	from := fs.String("from", "", "read the fleet from `FILE` (fleet export --format json output; - for stdin) instead of the flake")
	fromHub := fs.Bool("from-hub", false, "read the fleet that fleet sync last published at the hub, instead of the flake")
	title := fs.String("title", "pinkie fleet", "dashy page `TITLE`")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	if *format != "json" && *format != "dashy" {
		return cli.Usagef("--format %q: want json or dashy", *format)
	}
	if *from != "" && *fromHub {
		return cli.Usagef("--from and --from-hub exclude each other")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var decl events.FleetDeclared
	var err error
	switch {
	case *from != "":
		decl, err = fleetReadFile(*from)
	case *fromHub:
		decl, err = fleetFromHub(ctx, cf)
	default:
		decl, err = fleetEvaluate(ctx, *flake)
	}
	if err != nil {
		return err
	}
	var b []byte
	switch *format {
	case "json":
		b, err = json.MarshalIndent(decl, "", "  ")
		b = append(b, '\n')
	case "dashy":
		b = fleet.Dashy(decl, *title)
	}
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = a.stdout.Write(b)
		return err
	}
	// Via a temporary file and a rename: a dashboard never reads half a
	// configuration.
	return atomicfile.Write(*out, b, 0o644)
}

// fleetEvaluate reads the declared fleet from a flake with one nix eval
// (plus nix flake metadata for its resolved URL and revision).
func fleetEvaluate(ctx context.Context, flake string) (events.FleetDeclared, error) {
	if flake == "" || strings.Contains(flake, "#") {
		return events.FleetDeclared{}, cli.Usagef("--flake %q: want a flake reference without #fragment (the fleet is read from its nixosConfigurations)", flake)
	}
	nixBin, err := exec.LookPath("nix")
	if err != nil {
		return events.FleetDeclared{}, cli.UsageExit(errors.New("nix is not on PATH: the fleet is read by evaluating the flake with nix (2.8 or later, with flakes)"))
	}
	decl, err := fleet.Declared(ctx, nix.Nix{Run: nix.ExecRunner{}, Bin: nixBin}, flake)
	return decl, fleetUserError(err)
}

// fleetUserError makes a fleet the user gave that the fleet package
// refuses an exit 2 with its problems.
func fleetUserError(err error) error {
	var ue *fleet.UserError
	if errors.As(err, &ue) {
		return cli.UsageExit(ue.Err)
	}
	return err
}

func fleetReadFile(path string) (events.FleetDeclared, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = bounded.Read(os.Stdin, "stdin", fleetMaxInput)
	} else {
		b, err = bounded.ReadPath(path, fleetMaxInput)
	}
	if err != nil {
		return events.FleetDeclared{}, cli.Usagef("--from: %v", err)
	}
	return fleetDecode(b, "--from "+path)
}

// fleetDecode checks a declared fleet against the schema, then decodes it;
// what names where it came from.
func fleetDecode(b []byte, what string) (events.FleetDeclared, error) {
	set, err := schemas.Load()
	if err != nil {
		return events.FleetDeclared{}, err
	}
	decl, err := fleet.Decode(set, b)
	var ue *fleet.UserError
	if errors.As(err, &ue) {
		return decl, cli.Usagef("%s: %v", what, ue.Err)
	}
	return decl, err
}

// fleetFromHub reads the fleet that fleet sync last published.
func fleetFromHub(ctx context.Context, cf clientFlags) (events.FleetDeclared, error) {
	c, err := cf.connect(ctx, "pinkie fleet export")
	if err != nil {
		return events.FleetDeclared{}, err
	}
	defer c.Close()
	m, err := lastFleet(ctx, c, *cf.server)
	if err != nil {
		return events.FleetDeclared{}, err
	}
	if m == nil {
		return events.FleetDeclared{}, fmt.Errorf("the hub at %s holds no declared fleet yet: run pinkie fleet sync first", *cf.server)
	}
	return fleetDecode(m.Event.Data(), fmt.Sprintf("the hub's declared fleet (seq %d)", m.Seq))
}

// lastFleet reads the fleet that fleet sync last published at the hub at
// server, or nil when none was.
func lastFleet(ctx context.Context, c *streams.Client, server string) (*events.Stored, error) {
	m, err := streams.ReadLastFleet(ctx, c.JS)
	var le *streams.LastError
	switch {
	case errors.As(err, &le) && le.Op == streams.LastOpen:
		return nil, fmt.Errorf("stream %s at %s: %w (is this a pinkie hub?)", le.Stream, server, le.Err)
	case errors.As(err, &le) && le.Op == streams.LastGet:
		return nil, fmt.Errorf("read the declared fleet from %s: %w", server, le.Err)
	case errors.As(err, &le):
		return nil, fmt.Errorf("the hub's declared fleet (seq %d): %w", le.Seq, le.Err)
	}
	return m, err
}
