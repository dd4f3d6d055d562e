package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// deployNixConfig makes nix work offline in tests: flakes on, no sandbox,
// no substituters (cache.nixos.org is not reachable).
const deployNixConfig = "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false"

// deployNeedNix skips when nix is missing and points child processes'
// nix at the test configuration.
func deployNeedNix(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix is not installed (scripts/test installs Debian's nix-bin)")
	}
	t.Setenv("NIX_CONFIG", deployNixConfig)
}

// deployTestHost is one host of the test flake.
type deployTestHost struct {
	tags            []string
	buildOn         string
	requireExplicit bool
	goal            string
	healthChecks    []string
	rollbackTimeout int
}

// deployFlake is a test flake in a git repository: plain
// nixosConfigurations whose toplevel is a tiny /bin/sh derivation. Its
// bin/switch-to-configuration appends "<host> <goal> <rev>" to
// <dir>/stc.log and fails when <dir>/fail-<host>-<rev> exists. When
// <dir>/cut-<host>-<rev> exists it creates <dir>/switched-<host>-<rev> and
// waits (up to 30 s) for <dir>/cut-done-<host>-<rev> before it ends: the
// test cuts the host's link meanwhile, as a configuration that breaks the
// network would.
type deployFlake struct {
	t     *testing.T
	dir   string
	hosts map[string]deployTestHost
	rev   int
}

func newDeployFlake(t *testing.T, hosts map[string]deployTestHost) *deployFlake {
	t.Helper()
	f := &deployFlake{t: t, dir: t.TempDir(), hosts: hosts}
	f.git("init", "-q", ".")
	f.commit()
	return f
}

func (f *deployFlake) git(args ...string) {
	f.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.email=test@pinkie", "-c", "user.name=test", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = f.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		f.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func nixList(xs []string) string {
	var q []string
	for _, x := range xs {
		q = append(q, fmt.Sprintf("%q", x))
	}
	return "[ " + strings.Join(q, " ") + " ]"
}

// commit writes the flake at the next revision and commits it.
func (f *deployFlake) commit() {
	f.t.Helper()
	f.rev++
	var b strings.Builder
	fmt.Fprintf(&b, `{
  outputs = { self }: let
    dir = %q;
    rev = "r%d";
    mk = name: dep: {
      config.pinkie.deployment = dep;
      config.system.build.toplevel = derivation {
        name = "nixos-system-${name}-${rev}";
        system = "x86_64-linux";
        builder = "/bin/sh";
        args = [ "-c" ''
          /bin/mkdir -p $out/bin
          /bin/cat > $out/bin/switch-to-configuration <<'EOF'
          #!/bin/sh
          if [ -e ${dir}/fail-${name}-${rev} ]; then
            echo "${name} $1 ${rev} FAIL" >> ${dir}/stc.log
            echo "switch-to-configuration: failing on demand (${name} ${rev})" >&2
            exit 1
          fi
          echo "${name} $1 ${rev}" >> ${dir}/stc.log
          if [ -e ${dir}/cut-${name}-${rev} ]; then
            : > ${dir}/switched-${name}-${rev}
            i=0
            while [ ! -e ${dir}/cut-done-${name}-${rev} ] && [ $i -lt 300 ]; do /bin/sleep 0.1; i=$((i+1)); done
          fi
          EOF
          /bin/chmod +x $out/bin/switch-to-configuration
        '' ];
      };
    };
  in {
    nixosConfigurations = {
`, f.dir, f.rev)
	names := make([]string, 0, len(f.hosts))
	for n := range f.hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h := f.hosts[n]
		var attrs []string
		if h.tags != nil {
			attrs = append(attrs, "tags = "+nixList(h.tags)+";")
		}
		if h.buildOn != "" {
			attrs = append(attrs, fmt.Sprintf("buildOn = %q;", h.buildOn))
		}
		if h.requireExplicit {
			attrs = append(attrs, "requireExplicit = true;")
		}
		if h.goal != "" {
			attrs = append(attrs, fmt.Sprintf("goal = %q;", h.goal))
		}
		if h.healthChecks != nil {
			attrs = append(attrs, "healthChecks = "+nixList(h.healthChecks)+";")
		}
		if h.rollbackTimeout != 0 {
			attrs = append(attrs, fmt.Sprintf("rollbackTimeout = %d;", h.rollbackTimeout))
		}
		fmt.Fprintf(&b, "      %s = mk %q { %s };\n", n, n, strings.Join(attrs, " "))
	}
	b.WriteString("    };\n  };\n}\n")
	if err := os.WriteFile(filepath.Join(f.dir, "flake.nix"), []byte(b.String()), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.git("add", "flake.nix")
	f.git("commit", "-q", "-m", fmt.Sprintf("r%d", f.rev))
}

// stcLog returns the lines switch-to-configuration wrote.
func (f *deployFlake) stcLog() []string {
	b, err := os.ReadFile(filepath.Join(f.dir, "stc.log"))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (f *deployFlake) failOnDemand(host string, rev int) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, fmt.Sprintf("fail-%s-r%d", host, rev)), nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}
