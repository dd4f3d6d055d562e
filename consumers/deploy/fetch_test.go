package deploy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/events"
)

// commands records what would run and answers exit 0.
type commands struct{ ran []string }

func (c *commands) Run(_ context.Context, _ []string, name string, args ...string) (nix.Result, error) {
	c.ran = append(c.ran, name+" "+strings.Join(args, " "))
	return nix.Result{}, nil
}

type fakeFleetCache struct {
	has    bool
	hasErr error
	keyErr error
}

func (f fakeFleetCache) Has(context.Context, string) (bool, error) { return f.has, f.hasErr }
func (f fakeFleetCache) Source(context.Context) (string, string, error) {
	return "http://127.0.0.1:4711", "fleet-1:KEY", f.keyErr
}

// TestFetchSource: where the activator fetches a closure from, and with
// which signature checks.
func TestFetchSource(t *testing.T) {
	const path = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-sys"
	for _, tc := range []struct {
		name        string
		substituter string
		checkSigs   bool
		fleet       FleetCache
		want        string // a substring of the one command run
		wantErr     string
	}{
		{name: "explicit substituter, checks off", substituter: "file:///c", want: "copy --from file:///c --no-check-sigs " + path},
		{name: "explicit substituter, checks on", substituter: "file:///c", checkSigs: true, want: "copy --from file:///c " + path},
		{name: "explicit substituter wins over the hub's cache", substituter: "file:///c", checkSigs: true, fleet: fakeFleetCache{has: true}, want: "copy --from file:///c " + path},
		{name: "hub's cache, fleet key only", fleet: fakeFleetCache{has: true},
			want: "copy --from http://127.0.0.1:4711 --option require-sigs true --option trusted-public-keys fleet-1:KEY --option narinfo-cache-negative-ttl 0 " + path},
		{name: "hub's cache lacks it: nix.conf's substituters", fleet: fakeFleetCache{}, want: "nix-store --realise " + path},
		{name: "no hub cache: nix.conf's substituters", want: "nix-store --realise " + path},
		{name: "hub unreachable", fleet: fakeFleetCache{hasErr: errors.New("the hub is not reachable")}, wantErr: "ask the hub's cache: the hub is not reachable"},
		{name: "no fleet key", fleet: fakeFleetCache{has: true, keyErr: errors.New("no fleet signing key")}, wantErr: "no fleet signing key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c commands
			a := &Activator{Host: "goliath", Nix: nix.Nix{Run: &c}, Run: &c, Substituter: tc.substituter, CheckSigs: tc.checkSigs,
				FleetCache: tc.fleet, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			err := a.fetch(context.Background(), &events.DeployPhase{StorePath: path})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || len(c.ran) != 0 {
					t.Errorf("got %v after %q, want an error with %q and nothing run", err, c.ran, tc.wantErr)
				}
				return
			}
			if err != nil || len(c.ran) != 1 || !strings.Contains(c.ran[0], tc.want) {
				t.Errorf("ran %q (%v), want one command with %q", c.ran, err, tc.want)
			}
		})
	}
}

// countingFleetCache serves from a fake hub cache and says it served one
// NAR file of 4,096 bytes each time it is asked.
type countingFleetCache struct {
	fakeFleetCache
	asked *int
}

func (f countingFleetCache) Served() (int, int64) {
	*f.asked++
	return 10 + *f.asked, int64(*f.asked) * 4096
}

// TestFetchCountsWhatCameFromTheHub: what the substituter served during the
// fetch (the difference of its counters) lands in the job's fetched_paths
// and fetched_bytes; nothing when the hub's cache lacks the closure.
func TestFetchCountsWhatCameFromTheHub(t *testing.T) {
	for _, tc := range []struct {
		name      string
		has       bool
		wantPaths int
		wantBytes int64
	}{
		{name: "fetched from the hub's cache", has: true, wantPaths: 1, wantBytes: 4096},
		{name: "the hub's cache lacks it", has: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c commands
			asked := 0
			a := &Activator{Host: "goliath", Nix: nix.Nix{Run: &c}, Run: &c,
				FleetCache: countingFleetCache{fakeFleetCache{has: tc.has}, &asked}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			job := events.DeployPhase{StorePath: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-sys"}
			if err := a.fetch(context.Background(), &job); err != nil {
				t.Fatal(err)
			}
			if job.FetchedPaths != tc.wantPaths || job.FetchedBytes != tc.wantBytes {
				t.Errorf("fetched %d paths, %d bytes; want %d, %d", job.FetchedPaths, job.FetchedBytes, tc.wantPaths, tc.wantBytes)
			}
		})
	}
}

// TestNixRefusal: a fetch refused for a signature or a hash says so first,
// whatever line nix printed last.
func TestNixRefusal(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail []string
		want string
	}{
		{name: "unsigned or altered narinfo", tail: []string{"copying path '/nix/store/x-sys' from 'http://127.0.0.1:1'...", "error: cannot add path '/nix/store/x-sys' because it lacks a valid signature"},
			want: "refused by nix: a path from the cache has no valid signature by a trusted key"},
		{name: "altered NAR", tail: []string{"error: hash mismatch importing path '/nix/store/x-sys';", "         specified: sha256:0a", "         got:       sha256:1b"},
			want: "refused by nix: a NAR from the cache does not match the hash its signed narinfo names"},
		{name: "anything else", tail: []string{"error: unable to download 'http://127.0.0.1:1/x.narinfo': Couldn't connect to server (7)"}, want: "nix exited 1: error: unable to download"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := nixRefusal(&nix.Error{Command: "nix", ExitCode: 1, Tail: tc.tail})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if len(nix.LogTail(err)) != len(tc.tail) {
				t.Errorf("the log tail is lost: %v", nix.LogTail(err))
			}
		})
	}
}
