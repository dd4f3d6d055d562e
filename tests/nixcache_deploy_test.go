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

// TestDeployToHostSharingNothing: the "done" cases. The target's
// agent runs in its own mount namespace with an empty directory on /nix,
// so nothing of the operator's store is there; with only what keys init
// made, `pinkie deploy --wait` ships the flake source (with an uncommitted
// change) and, for a local build, the closure through the hub; the agent
// fetches over its leaf link (its loopback substituter, signatures checked
// with the fleet key it learnt from the hub), builds when it is asked to,
// and activates.
func TestDeployToHostSharingNothing(t *testing.T) {
	needOwnNix(t)
	for _, buildOn := range []string{"local", "target"} {
		t.Run("built "+buildOn, func(t *testing.T) {
			f := newFleet(t, "goliath")
			f.startHub()
			flake := newDeployFlake(t, map[string]deployTestHost{"goliath": {buildOn: buildOn}})
			// An uncommitted change the target has never seen.
			fl, err := os.OpenFile(filepath.Join(flake.dir, "flake.nix"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(fl, "# uncommitted %d\n", time.Now().UnixNano())
			fl.Close()
			agent, nixDir, profile := startOwnNixAgent(t, f, "goliath")
			out, code := runPinkie(t, "deploy", "goliath", "--flake", flake.dir, "--server", f.natsURL(), "--nkey", f.operator(), "--wait", "--timeout", "3m", "--json")
			if code != 0 {
				t.Fatalf("deploy: exit %d\n%s\nagent:\n%s", code, out, agent.out.String())
			}
			d := parseDeployJSON(t, out)
			if len(d.Hosts) != 1 || d.Hosts[0].Outcome != "activated" {
				t.Fatalf("deploy result %+v, want goliath activated\nagent:\n%s", d, agent.out.String())
			}
			if _, err := os.Stat(filepath.Join(nixDir, "store", filepath.Base(d.Hosts[0].StorePath))); err != nil {
				t.Errorf("the closure is not in the agent's own store: %v", err)
			}
			if link, err := os.Readlink(profile); err != nil || !strings.Contains(link, "system-") {
				t.Errorf("profile %s: %q %v", profile, link, err)
			}
			if !contains(flake.stcLog(), "goliath switch r1") {
				t.Errorf("switch-to-configuration did not run: %q", flake.stcLog())
			}
		})
	}
}

// TestDeployBuiltOnAnotherHostSharingNothing: goliath is built on the
// builder host tower (buildOn = "tower"); each agent runs in its own mount
// namespace with its own empty /nix. tower fetches the shipped flake
// source from the hub, builds, and uploads the closure unsigned over its
// leaf link (it holds no fleet secret key); the hub signs it with the
// fleet key; goliath fetches it over its own link with signature checks
// on (the fleet key learnt from the hub) and activates. The closure in the
// hub's cache then verifies against the fleet key in a fresh store.
func TestDeployBuiltOnAnotherHostSharingNothing(t *testing.T) {
	needOwnNix(t)
	f := newFleet(t, "goliath", "tower")
	f.startHub()
	flake := newDeployFlake(t, map[string]deployTestHost{"goliath": {buildOn: "tower"}, "tower": {}})
	fl, err := os.OpenFile(filepath.Join(flake.dir, "flake.nix"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(fl, "# uncommitted %d\n", time.Now().UnixNano())
	fl.Close()
	tower, towerNix, _ := startOwnNixAgent(t, f, "tower", "--builder")
	goliath, goliathNix, profile := startOwnNixAgent(t, f, "goliath")
	out, code := runPinkie(t, "deploy", "goliath", "--flake", flake.dir, "--server", f.natsURL(), "--nkey", f.operator(), "--wait", "--timeout", "3m", "--json")
	if code != 0 {
		t.Fatalf("deploy: exit %d\n%s\ntower:\n%s\ngoliath:\n%s", code, out, tower.out.String(), goliath.out.String())
	}
	d := parseDeployJSON(t, out)
	if len(d.Hosts) != 1 || d.Hosts[0].Outcome != "activated" {
		t.Fatalf("deploy result %+v, want goliath activated\ntower:\n%s\ngoliath:\n%s", d, tower.out.String(), goliath.out.String())
	}
	sp := d.Hosts[0].StorePath
	for name, dir := range map[string]string{"tower (built it)": towerNix, "goliath (fetched it)": goliathNix} {
		if _, err := os.Stat(filepath.Join(dir, "store", filepath.Base(sp))); err != nil {
			t.Errorf("%s: the closure is not in its own store: %v", name, err)
		}
	}
	if link, err := os.Readlink(profile); err != nil || !strings.Contains(link, "system-") {
		t.Errorf("goliath's profile %s: %q %v", profile, link, err)
	}
	if !contains(flake.stcLog(), "goliath switch r1") {
		t.Errorf("switch-to-configuration did not run: %q", flake.stcLog())
	}
	if !strings.Contains(tower.out.String(), "uploaded to the hub's nix cache") {
		t.Errorf("tower did not upload through its link:\n%s", tower.out.String())
	}
	// What tower uploaded unsigned is in the hub's cache signed by the fleet key.
	pub, err := os.ReadFile(streams.NixPublicKeyFile(f.auth))
	if err != nil {
		t.Fatal(err)
	}
	fetch := exec.Command("nix", "copy", "--from", f.httpURL()+"/nix-cache", "--to", filepath.Join(t.TempDir(), "store"), sp)
	fetch.Env = append(os.Environ(), "NIX_CONFIG="+deployNixConfig+"\ntrusted-public-keys = "+strings.TrimSpace(string(pub)), "XDG_CACHE_HOME="+t.TempDir())
	if out, err := fetch.CombinedOutput(); err != nil {
		t.Errorf("fetching %s from the hub's cache with the fleet key trusted: %v\n%s", sp, err, out)
	}
}

// needOwnNix skips unless agents can run with a Nix store of their own: nix,
// root and mount namespaces.
func needOwnNix(t *testing.T) {
	t.Helper()
	deployNeedNix(t)
	if os.Geteuid() != 0 {
		t.Skip("a mount namespace with its own /nix needs root")
	}
	if out, err := exec.Command("unshare", "-m", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a mount namespace here: %v: %s", err, out)
	}
}

// ownNix is a host's own /nix, agent data directory and system profile,
// kept across its agent's restarts.
type ownNix struct{ nix, data, profile string }

func newOwnNix(t *testing.T) ownNix {
	return ownNix{nix: t.TempDir(), data: t.TempDir(), profile: filepath.Join(t.TempDir(), "profiles", "system")}
}

// startOwnNixAgent starts host's agent in its own mount namespace with a
// fresh empty directory on /nix (Debian's nix initialises a store there),
// and returns it with that directory and its system profile.
func startOwnNixAgent(t *testing.T, f *fleet, host string, extra ...string) (*proc, string, string) {
	t.Helper()
	d := newOwnNix(t)
	return startOwnNixAgentIn(t, f, host, d, extra...), d.nix, d.profile
}

// startOwnNixAgentIn starts host's agent in its own mount namespace with
// d's directory on /nix, d's data directory and profile.
func startOwnNixAgentIn(t *testing.T, f *fleet, host string, d ownNix, extra ...string) *proc {
	t.Helper()
	args := append([]string{"-m", "sh", "-c", `mount --bind "$0" /nix && exec "$@"`, d.nix,
		pinkieBin, "agent", "--name", host, "--hub", f.leafURL(), "--data", d.data, "--nkey", streams.HostSeedFile(f.auth, host),
		"--reconnect", "200ms", "--producers", "heartbeat", "--heartbeat", "1h", "--system-profile", d.profile, "--activation", "direct"}, extra...)
	a := startCommand(t, "agent-"+host, exec.Command("unshare", args...))
	a.waitFor("hub connected", 30*time.Second)
	return a
}
