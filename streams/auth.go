package streams

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/pinkiefleet/pinkie/atomicfile"
	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// AuthFileName is the hub's auth file inside an auth directory. It holds
// public keys only; the seeds stay with whoever uses them.
const AuthFileName = "auth.json"

// Auth is the hub's auth file: who may connect, in which role. Keys are
// nkey public user keys (U…).
type Auth struct {
	Operators []string          `json:"operators"`
	Readers   []string          `json:"readers"`
	Hosts     map[string]string `json:"hosts"`
}

// HostNames returns the hosts in the auth file, sorted.
func (a *Auth) HostNames() []string {
	names := make([]string, 0, len(a.Hosts))
	for h := range a.Hosts {
		names = append(names, h)
	}
	sort.Strings(names)
	return names
}

// LoadAuth reads DIR/auth.json and checks every key and host name in it.
func LoadAuth(dir string) (*Auth, error) {
	p := filepath.Join(dir, AuthFileName)
	b, err := bounded.ReadPath(p, 16*bounded.MiB) // about 100 bytes a host
	if err != nil {
		return nil, fmt.Errorf("read auth file: %w (create it with: pinkie keys init %s)", err, dir)
	}
	var a Auth
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("parse auth file %s: %w", p, err)
	}
	check := func(role, k string) error {
		if !nkeys.IsValidPublicUserKey(k) {
			return fmt.Errorf("auth file %s: %s key %q is not an nkey public user key", p, role, k)
		}
		return nil
	}
	for _, k := range a.Operators {
		if err := check("operator", k); err != nil {
			return nil, err
		}
	}
	for _, k := range a.Readers {
		if err := check("reader", k); err != nil {
			return nil, err
		}
	}
	for h, k := range a.Hosts {
		if err := validAuthHost(h); err != nil {
			return nil, fmt.Errorf("auth file %s: %w", p, err)
		}
		if err := check("host "+h, k); err != nil {
			return nil, err
		}
	}
	if a.Hosts == nil {
		a.Hosts = map[string]string{}
	}
	return &a, nil
}

func (a *Auth) save(dir string) error {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, AuthFileName), append(b, '\n'), 0o644)
}

// writeFileAtomic writes via a temporary file and a rename, so a crash
// leaves either the old file or the new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm)
}

// newSeedFile creates a user nkey, writes its seed to path (mode 0600,
// refusing to overwrite) and returns the public key.
func newSeedFile(path string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return "", fmt.Errorf("%s already exists: refusing to overwrite a key", path)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", fmt.Errorf("create nkey: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, append(seed, '\n'), 0o600); err != nil {
		return "", err
	}
	return pub, nil
}

// OperatorSeedFile, ReaderSeedFile and HostSeedFile are where keys init
// puts the seeds.
func OperatorSeedFile(dir string) string   { return filepath.Join(dir, "operator.nk") }
func ReaderSeedFile(dir string) string     { return filepath.Join(dir, "reader.nk") }
func HostSeedFile(dir, host string) string { return filepath.Join(dir, "hosts", host+".nk") }
func authExists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, AuthFileName))
	return err == nil
}
func hostSeedExists(dir, host string) bool {
	_, err := os.Stat(HostSeedFile(dir, host))
	return err == nil
}
func seedsDirFor(dir string) string { return filepath.Join(dir, "hosts") }
func checkHosts(hosts []string) error {
	seen := map[string]bool{}
	for _, h := range hosts {
		if err := validAuthHost(h); err != nil {
			return err
		}
		if seen[h] {
			return fmt.Errorf("host %q listed twice", h)
		}
		seen[h] = true
	}
	return nil
}

// KeysInit creates an auth directory: an operator seed, a reader seed, a
// seed per host, the fleet's Nix signing key pair (new, or WithNixKey's)
// and the hub's auth file. It refuses to touch an existing auth directory.
func KeysInit(dir string, hosts []string, opts ...KeysOption) (*Auth, error) {
	if err := checkHosts(hosts); err != nil {
		return nil, err
	}
	if authExists(dir) {
		return nil, fmt.Errorf("%s already holds an auth file; add hosts with: pinkie keys add-host %s NAME", dir, dir)
	}
	if err := checkNoNixKey(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(seedsDirFor(dir), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if _, err := writeNixKey(dir, opts); err != nil {
		return nil, err
	}
	a := &Auth{Hosts: map[string]string{}}
	op, err := newSeedFile(OperatorSeedFile(dir))
	if err != nil {
		return nil, err
	}
	rd, err := newSeedFile(ReaderSeedFile(dir))
	if err != nil {
		return nil, err
	}
	a.Operators, a.Readers = []string{op}, []string{rd}
	for _, h := range hosts {
		pub, err := newSeedFile(HostSeedFile(dir, h))
		if err != nil {
			return nil, err
		}
		a.Hosts[h] = pub
	}
	// The route password of a clustered hub, made now so that every node
	// the directory is copied to has the same one.
	if err := newClusterSecret(ClusterSecretFile(dir)); err != nil {
		return nil, err
	}
	return a, a.save(dir)
}

// KeysAddHost adds a host's seed and its public key to an auth directory.
func KeysAddHost(dir, host string) (*Auth, error) {
	if err := validAuthHost(host); err != nil {
		return nil, err
	}
	a, err := LoadAuth(dir)
	if err != nil {
		return nil, err
	}
	if _, ok := a.Hosts[host]; ok || hostSeedExists(dir, host) {
		return nil, fmt.Errorf("host %q already has a key in %s", host, dir)
	}
	pub, err := newSeedFile(HostSeedFile(dir, host))
	if err != nil {
		return nil, err
	}
	a.Hosts[host] = pub
	return a, a.save(dir)
}

// ReadSeed reads an nkey seed file as written by keys init or nsc (the
// first line that is a user seed).
func ReadSeed(path string) (nkeys.KeyPair, error) {
	b, err := bounded.ReadPath(path, 64*bounded.KiB) // a seed is 58 bytes; nsc's creds files a few KB
	if err != nil {
		return nil, fmt.Errorf("read nkey file: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "SU") {
			kp, err := nkeys.FromSeed([]byte(line))
			if err != nil {
				return nil, fmt.Errorf("nkey file %s: %w", path, err)
			}
			return kp, nil
		}
	}
	return nil, fmt.Errorf("nkey file %s holds no user seed (a line starting with SU)", path)
}

// ErrNotLoopback is returned when the hub would listen beyond loopback
// without authentication.
var ErrNotLoopback = errors.New("refusing to listen beyond loopback without --auth")

// leafPermissions are a host agent's rights on its leaf connection, written
// from the leaf's point of view (the hub swaps them for leaf connections):
// it may send only its own deliveries and replies to the hub's calls into
// its own domain, and receive only those calls and its own commands; call
// its own subjects of the hub's nix cache and receive their replies
// (nixcache_serve.go); serve its own shell sessions (shell_auth.go).
func leafPermissions(host string) *server.Permissions {
	d := events.Domain(host)
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: append([]string{
			events.DeliverPrefix(host) + ".>",
			"$JSC.R." + d + ".>",
		}, append(append(deployLeafPublish(host), nixCacheLeafPublish(host)...), shellLeafPublish(host)...)...)},
		Subscribe: &server.SubjectPermission{Allow: append([]string{
			"$JS." + d + ".API.CONSUMER.>",
			"$JS.FC." + d + ".>",
			events.CmdSubjects(host),
		}, append(append(deployLeafSubscribe(host), nixCacheLeafSubscribe(host)...), shellLeafSubscribe(host)...)...)},
	}
}

// reservedHosts are names a host key may not have: pinkie's own subjects
// put them where a host name goes (_pinkie.nixcache.put.operator…, and a
// host called "put" would read on _pinkie.nixcache.put.… where other
// hosts upload).
var reservedHosts = map[string]bool{"operator": true, "put": true}

// validAuthHost checks a host name for the auth file.
func validAuthHost(name string) error {
	if err := events.ValidHost(name); err != nil {
		return err
	}
	if reservedHosts[name] {
		return fmt.Errorf("host name %q is reserved: pinkie's own subjects use it where a host name goes; choose another", name)
	}
	return nil
}
