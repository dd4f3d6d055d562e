package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployUploadsLocalBuildToHubCache: `pinkie deploy` of a host built
// locally signs the closure with the fleet key found beside the operator's
// nkey (nix-signing.sec) and uploads it into the hub's Nix cache over its
// NATS connection; real nix then fetches the closure from the hub into a
// store of its own with signature checks on.
func TestDeployUploadsLocalBuildToHubCache(t *testing.T) {
	deployNeedNix(t)
	if os.Geteuid() != 0 {
		t.Skip("building with nix here needs root (the machine's /nix is root's)")
	}
	f := newFleet(t, "goliath")
	sec := filepath.Join(f.auth, "nix-signing.sec")
	out, err := exec.Command("nix", "key", "generate-secret", "--key-name", "pinkie-test-1").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sec, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nix", "key", "convert-secret-to-public")
	cmd.Stdin = strings.NewReader(string(out))
	pub, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	f.startHub()
	flake := newDeployFlake(t, map[string]deployTestHost{"goliath": {buildOn: "local"}})
	res, code := runPinkie(t, "deploy", "goliath", "--flake", flake.dir, "--server", f.natsURL(), "--nkey", f.operator(), "--json")
	if code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, res)
	}
	d := parseDeployJSON(t, res)
	if len(d.Hosts) != 1 || d.Hosts[0].StorePath == "" {
		t.Fatalf("deploy result %+v: want goliath built locally", d)
	}
	fetch := exec.Command("nix", "copy", "--from", "http://"+strings.TrimPrefix(f.httpURL(), "http://")+"/nix-cache",
		"--to", filepath.Join(t.TempDir(), "store"), d.Hosts[0].StorePath)
	fetch.Env = append(os.Environ(), "NIX_CONFIG="+deployNixConfig+"\ntrusted-public-keys = "+strings.TrimSpace(string(pub)), "XDG_CACHE_HOME="+t.TempDir())
	if out, err := fetch.CombinedOutput(); err != nil {
		t.Fatalf("fetching %s from the hub's cache: %v\n%s", d.Hosts[0].StorePath, err, out)
	}
}
