package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

// TestDeployUploadsLocalBuildToHubCache: `pinkie deploy` of a host built
// locally signs the closure with the fleet key found beside the operator's
// nkey (nix-signing.sec) and uploads it into the hub's Nix cache over its
// NATS connection, with the flake's source (an uncommitted change
// included), and requests the deploy from that source; real nix then
// fetches both from the hub into a store of its own with signature checks
// on.
func TestDeployUploadsLocalBuildToHubCache(t *testing.T) {
	deployNeedNix(t)
	if os.Geteuid() != 0 {
		t.Skip("building with nix here needs root (the machine's /nix is root's)")
	}
	f := newFleet(t, "goliath")
	// pinkie keys init made the fleet's key pair beside operator.nk.
	pub, err := os.ReadFile(streams.NixPublicKeyFile(f.auth))
	if err != nil {
		t.Fatal(err)
	}
	f.startHub()
	flake := newDeployFlake(t, map[string]deployTestHost{"goliath": {buildOn: "local"}})
	// An uncommitted change: hosts must build exactly this tree.
	fl, err := os.OpenFile(filepath.Join(flake.dir, "flake.nix"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(fl, "# uncommitted %d\n", time.Now().UnixNano())
	fl.Close()
	res, code := runPinkie(t, "deploy", "goliath", "--flake", flake.dir, "--server", f.natsURL(), "--nkey", f.operator(), "--json")
	if code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, res)
	}
	d := parseDeployJSON(t, res)
	if len(d.Hosts) != 1 || d.Hosts[0].StorePath == "" {
		t.Fatalf("deploy result %+v: want goliath built locally", d)
	}
	src, ok := strings.CutPrefix(d.Flake, "path:")
	src, _, _ = strings.Cut(src, "?")
	if !ok || !strings.HasPrefix(src, "/nix/store/") || !strings.Contains(d.Flake, "narHash=") {
		t.Fatalf("deploy sent flake %q, want path:/nix/store/…?narHash=… (the shipped source)", d.Flake)
	}
	for _, p := range []string{d.Hosts[0].StorePath, src} {
		fetch := exec.Command("nix", "copy", "--from", f.httpURL()+"/nix-cache", "--to", filepath.Join(t.TempDir(), "store"), p)
		fetch.Env = append(os.Environ(), "NIX_CONFIG="+deployNixConfig+"\ntrusted-public-keys = "+strings.TrimSpace(string(pub)), "XDG_CACHE_HOME="+t.TempDir())
		if out, err := fetch.CombinedOutput(); err != nil {
			t.Fatalf("fetching %s from the hub's cache: %v\n%s", p, err, out)
		}
	}
	// The shipped source holds the uncommitted change.
	if b, err := os.ReadFile(filepath.Join(src, "flake.nix")); err != nil || !strings.Contains(string(b), "# uncommitted") {
		t.Errorf("the shipped source %s lacks the uncommitted change (%v)", src, err)
	}
}
