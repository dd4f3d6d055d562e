package deploy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/pinkiefleet/pinkie/deploy/nix"
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
			err := a.fetch(context.Background(), path)
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
