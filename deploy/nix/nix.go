// Package nix runs the nix commands a deploy needs (eval, build, copy,
// profile switches) through an injected command runner, and parses their
// machine output (--json). Nothing here knows about events or NATS.
package nix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/nixcache"
)

// Result is a finished command: its output and exit code, kept apart.
type Result struct {
	Stdout, Stderr []byte
	ExitCode       int
}

// Runner runs a command. A non-zero exit is not an error (it is in
// Result.ExitCode); an error means the command could not run at all.
type Runner interface {
	Run(ctx context.Context, env []string, name string, args ...string) (Result, error)
}

// ExecRunner runs commands with os/exec, adding Env to the process's own
// environment.
type ExecRunner struct{ Env []string }

// Run implements Runner.
func (r ExecRunner) Run(ctx context.Context, env []string, name string, args ...string) (Result, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), r.Env...), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	res := Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		if res.ExitCode < 0 {
			res.ExitCode = 128
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("%s: %w", name, ctx.Err())
		}
		return res, nil
	case err != nil:
		return res, fmt.Errorf("run %s: %w", name, err)
	}
	return res, nil
}

// Error is a command that exited non-zero, with the last lines of its
// output for the report.
type Error struct {
	Command  string
	ExitCode int
	Tail     []string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s exited %d", e.Command, e.ExitCode)
	if len(e.Tail) > 0 {
		msg += ": " + e.Tail[len(e.Tail)-1]
	}
	return msg
}

// LogTail returns the last lines of a failed command's output, or nil.
func LogTail(err error) []string {
	var ne *Error
	if errors.As(err, &ne) {
		return ne.Tail
	}
	return nil
}

// TailLines returns the last n non-empty lines of b, each cut to 512 bytes.
func TailLines(b []byte, n int) []string {
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimRight(l, "\r "); l != "" {
			// Build output may carry colours and progress bars: shown
			// escaped, since events refuse control characters.
			if l = events.EscapeText(l); len(l) > 512 {
				l = strings.ToValidUTF8(l[:512], "")
			}
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// Nix runs nix commands.
type Nix struct {
	Run Runner
	// Bin is the nix binary (default "nix"); NixEnv is nix-env's.
	Bin, NixEnv string
}

func (n Nix) bin() string {
	if n.Bin != "" {
		return n.Bin
	}
	return "nix"
}

func (n Nix) nixEnv() string {
	if n.NixEnv != "" {
		return n.NixEnv
	}
	return "nix-env"
}

// experimental makes flakes work whatever nix.conf says.
var experimental = []string{"--extra-experimental-features", "nix-command flakes"}

func (n Nix) run(ctx context.Context, name string, args ...string) (Result, error) {
	res, err := n.Run.Run(ctx, nil, name, args...)
	if err != nil {
		return res, err
	}
	if res.ExitCode != 0 {
		cmd := filepath.Base(name)
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			cmd += " " + args[0]
		} else if len(args) > 2 && args[0] == experimental[0] {
			cmd += " " + args[2]
		}
		return res, &Error{Command: cmd, ExitCode: res.ExitCode, Tail: TailLines(append(res.Stdout, res.Stderr...), 20)}
	}
	return res, nil
}

// EvalJSON evaluates installable with an --apply function and decodes the
// JSON result into v.
func (n Nix) EvalJSON(ctx context.Context, installable, apply string, v any) error {
	args := append(append([]string{}, experimental...), "eval", "--json", installable)
	if apply != "" {
		args = append(args, "--apply", apply)
	}
	res, err := n.run(ctx, n.bin(), args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(res.Stdout, v); err != nil {
		return fmt.Errorf("nix eval %s: output is not the JSON expected: %w", installable, err)
	}
	return nil
}

// Metadata is what nix flake metadata --json says about a flake.
type Metadata struct {
	// URL is the locked URL (with ?rev= for a clean git tree).
	URL         string `json:"url"`
	OriginalURL string `json:"originalUrl"`
	ResolvedURL string `json:"resolvedUrl"`
	Revision    string `json:"revision"`
	// Path is the flake's source in the store, NarHash (in Locked) its
	// hash: together a reference any host holding that path can build
	// from (see SourceRef).
	Path   string `json:"path"`
	Locked struct {
		NarHash string `json:"narHash"`
		Rev     string `json:"rev"`
	} `json:"locked"`
}

// SourceRef is a flake reference to exactly the source nix evaluated
// (dirty working trees included): path:<store path>?narHash=<hash>. A
// host resolves it from its store, after fetching the path from a cache.
func (m Metadata) SourceRef() (string, error) {
	if !strings.HasPrefix(m.Path, "/nix/store/") || m.Locked.NarHash == "" {
		return "", fmt.Errorf("nix flake metadata gave no store path and narHash for %s", m.OriginalURL)
	}
	return "path:" + m.Path + "?narHash=" + m.Locked.NarHash, nil
}

// FlakeSources are the store paths of a flake's source and of all its
// inputs, fetched into the local store (what nix flake archive would
// copy).
func (n Nix) FlakeSources(ctx context.Context, ref string) ([]string, error) {
	res, err := n.run(ctx, n.bin(), append(append([]string{}, experimental...), "flake", "archive", "--json", "--dry-run", ref)...)
	if err != nil {
		return nil, err
	}
	type node struct {
		Path   string           `json:"path"`
		Inputs map[string]*node `json:"inputs"`
	}
	var root node
	if err := json.Unmarshal(res.Stdout, &root); err != nil {
		return nil, fmt.Errorf("nix flake archive --json %s: output is not the JSON expected: %w", ref, err)
	}
	var paths []string
	seen := map[string]bool{}
	var walk func(*node)
	walk = func(nd *node) {
		if nd == nil {
			return
		}
		if nd.Path != "" && !seen[nd.Path] {
			seen[nd.Path] = true
			paths = append(paths, nd.Path)
		}
		for _, in := range nd.Inputs {
			walk(in)
		}
	}
	walk(&root)
	if len(paths) == 0 {
		return nil, fmt.Errorf("nix flake archive --json %s: no source path", ref)
	}
	return paths, nil
}

// FlakeMetadata resolves and locks a flake reference.
func (n Nix) FlakeMetadata(ctx context.Context, ref string) (Metadata, error) {
	var md Metadata
	res, err := n.run(ctx, n.bin(), append(append([]string{}, experimental...), "flake", "metadata", "--json", ref)...)
	if err != nil {
		return md, err
	}
	if err := json.Unmarshal(res.Stdout, &md); err != nil {
		return md, fmt.Errorf("nix flake metadata %s: %w", ref, err)
	}
	return md, nil
}

// Toplevel is the installable of a host's system in a flake.
func Toplevel(flake, host string) string {
	return flake + "#nixosConfigurations." + quoteAttr(host) + ".config.system.build.toplevel"
}

func quoteAttr(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return `"` + s + `"`
		}
	}
	return s
}

type buildOutput struct {
	DrvPath string            `json:"drvPath"`
	Outputs map[string]string `json:"outputs"`
}

// Build builds installable (nix build --no-link --json) and returns its
// out path.
func (n Nix) Build(ctx context.Context, installable string) (string, error) {
	res, err := n.run(ctx, n.bin(), append(append([]string{}, experimental...), "build", "--no-link", "--json", installable)...)
	if err != nil {
		return "", err
	}
	var outs []buildOutput
	if err := json.Unmarshal(res.Stdout, &outs); err != nil {
		return "", fmt.Errorf("nix build %s: %w", installable, err)
	}
	if len(outs) != 1 || outs[0].Outputs["out"] == "" {
		return "", fmt.Errorf("nix build %s: want one out path, got %s", installable, bytes.TrimSpace(res.Stdout))
	}
	return outs[0].Outputs["out"], nil
}

// CopyTo copies path's closure to a store URL (file:///dir makes a binary
// cache directory, ssh-ng://host another machine's store).
func (n Nix) CopyTo(ctx context.Context, url, path string) error {
	_, err := n.run(ctx, n.bin(), append(append([]string{}, experimental...), "copy", "--to", url, path)...)
	return err
}

// CopyFrom fetches path's closure from a store URL. Unsigned caches (a
// file:// cache made by nix copy) need checkSigs false.
func (n Nix) CopyFrom(ctx context.Context, url, path string, checkSigs bool) error {
	args := append(append([]string{}, experimental...), "copy", "--from", url)
	if !checkSigs {
		args = append(args, "--no-check-sigs")
	}
	_, err := n.run(ctx, n.bin(), append(args, path)...)
	return err
}

// CopyFromTrusting fetches path's closure from a store URL with signature
// checks on, whatever nix.conf says, trusting only key (NAME:BASE64): a
// path not signed by it is refused. Misses are not remembered (the
// closure may be uploaded while a deploy waits for it).
func (n Nix) CopyFromTrusting(ctx context.Context, url, path, key string) error {
	args := append(append([]string{}, experimental...), "copy", "--from", url,
		"--option", "require-sigs", "true", "--option", "trusted-public-keys", key,
		"--option", "narinfo-cache-negative-ttl", "0", path)
	_, err := n.run(ctx, n.bin(), args...)
	return err
}

// PathInfo is what nix path-info --json says of a store path.
type PathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
	CA         string   `json:"ca"`
}

// Closure is what nix path-info says of every path in the closure of
// paths.
func (n Nix) Closure(ctx context.Context, paths ...string) ([]PathInfo, error) {
	res, err := n.run(ctx, n.bin(), append(append(append([]string{}, experimental...), "path-info", "--json", "--recursive"), paths...)...)
	if err != nil {
		return nil, err
	}
	var infos []PathInfo
	if err := json.Unmarshal(res.Stdout, &infos); err != nil {
		return nil, fmt.Errorf("nix path-info --json %s: output is not the JSON expected: %w", strings.Join(paths, " "), err)
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("nix path-info --json %s: no paths", strings.Join(paths, " "))
	}
	return infos, nil
}

// NarInfo is the narinfo of p for a NAR stored as it is (Compression
// none, URL nar/<NAR hash>.nar), unsigned.
func (p PathInfo) NarInfo() (*nixcache.NarInfo, error) {
	h, err := nixcache.ParseSHA256(p.NarHash)
	if err != nil {
		return nil, fmt.Errorf("%s: narHash: %w", p.Path, err)
	}
	ni := &nixcache.NarInfo{StorePath: p.Path, URL: "nar/" + nixcache.NixBase32(h[:]) + ".nar", Compression: "none",
		FileHash: &h, FileSize: p.NarSize, NarHash: h, NarSize: p.NarSize, CA: p.CA}
	for _, r := range p.References {
		ni.References = append(ni.References, filepath.Base(r))
	}
	if p.Deriver != "" {
		ni.Deriver = filepath.Base(p.Deriver)
	}
	return ni, nil
}

// Valid reports whether path is in the local store.
func (n Nix) Valid(ctx context.Context, path string) bool {
	res, err := n.Run.Run(ctx, nil, n.bin(), append(append([]string{}, experimental...), "path-info", path)...)
	return err == nil && res.ExitCode == 0
}

// Invalid returns those of paths the local store lacks (nix-store
// --check-validity --print-invalid, one call per invalidBatch paths).
func (n Nix) Invalid(ctx context.Context, paths []string) ([]string, error) {
	var out []string
	for len(paths) > 0 {
		batch := paths[:min(len(paths), invalidBatch)]
		paths = paths[len(batch):]
		res, err := n.run(ctx, n.nixStore(), append([]string{"--check-validity", "--print-invalid"}, batch...)...)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(res.Stdout), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out, nil
}

// invalidBatch bounds the paths of one nix-store call (its arguments).
const invalidBatch = 2000

// nixStore is nix-store, next to Bin when that is a path.
func (n Nix) nixStore() string {
	if strings.Contains(n.bin(), "/") {
		return filepath.Join(filepath.Dir(n.bin()), "nix-store")
	}
	return "nix-store"
}

// SetProfile points profile at path (a new generation), creating the
// profile's directory if needed.
func (n Nix) SetProfile(ctx context.Context, profile, path string) error {
	if err := os.MkdirAll(filepath.Dir(profile), 0o755); err != nil {
		return fmt.Errorf("create profile directory: %w", err)
	}
	_, err := n.run(ctx, n.nixEnv(), "-p", profile, "--set", path)
	return err
}

// CurrentPath is the store path profile points at now ("" if none).
func CurrentPath(profile string) string {
	p, err := filepath.EvalSymlinks(profile)
	if err != nil {
		return ""
	}
	return p
}
