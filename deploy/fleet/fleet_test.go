package fleet

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/deploy/nix"
)

// testFlake has plain nixosConfigurations (no nixpkgs: attribute sets with
// config.pinkie.deployment and a toplevel) covering every attribute, and
// one host without any.
const testFlake = `{
  outputs = { self }: let
    mk = name: dep: {
      config.pinkie.deployment = dep;
      config.system.build.toplevel = derivation { name = name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "/bin/mkdir $out" ]; };
    };
  in {
    nixosConfigurations = {
      goliath = mk "goliath" { tags = [ "web" "eu" ]; healthChecks = [ "curl -f localhost" { command = "true"; } ]; };
      koishi = mk "koishi" { tags = [ "web" ]; buildOn = "target"; };
      edge-1 = mk "edge-1" { tags = [ "edge" "eu" ]; buildOn = "tower"; goal = "boot"; };
      edge-2 = mk "edge-2" { tags = [ "edge" ]; targetHost = "edge-2.example.org"; };
      tower = mk "tower" { requireExplicit = true; tags = [ "build" ]; };
      bare = { config.system.build.toplevel = derivation { name = "bare"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "/bin/mkdir $out" ]; }; };
    };
  };
}
`

func readTestFleet(t *testing.T, flake string) (Fleet, error) {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix is not installed (scripts/test installs Debian's nix-bin)")
	}
	t.Setenv("NIX_CONFIG", "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	return Read(context.Background(), nix.Nix{Run: nix.ExecRunner{}}, "path:"+dir)
}

func TestReadDefaultsMissingAttributes(t *testing.T) {
	f, err := readTestFleet(t, testFlake)
	if err != nil {
		t.Fatal(err)
	}
	want := []Host{
		{Name: "bare", Tags: []string{}},
		{Name: "edge-1", Tags: []string{"edge", "eu"}, BuildOn: "tower", Goal: "boot"},
		{Name: "edge-2", Tags: []string{"edge"}, TargetHost: "edge-2.example.org"},
		{Name: "goliath", Tags: []string{"web", "eu"}, HealthChecks: []string{"curl -f localhost", "true"}},
		{Name: "koishi", Tags: []string{"web"}, BuildOn: "target"},
		{Name: "tower", Tags: []string{"build"}, RequireExplicit: true},
	}
	if diff := cmp.Diff(want, f.Hosts); diff != "" {
		t.Errorf("fleet (-want +got):\n%s", diff)
	}
}

func TestReadRefusesBadFlakes(t *testing.T) {
	tests := []struct {
		name, flake, want string
	}{
		{"does not evaluate", `{ outputs = { self }: { nixosConfigurations.x = throw "broken module"; }; }`, "broken module"},
		{"no nixosConfigurations", `{ outputs = { self }: { }; }`, "nixosConfigurations"},
		{"unknown goal", `{ outputs = { self }: { nixosConfigurations.x.config.pinkie.deployment.goal = "reboot"; }; }`, `nixosConfigurations.x.config.pinkie.deployment.goal: unknown goal "reboot"`},
		{"builder not in fleet", `{ outputs = { self }: { nixosConfigurations.x.config.pinkie.deployment.buildOn = "nowhere"; }; }`, `builder host "nowhere" is not in the fleet`},
		{"bad host name", `{ outputs = { self }: { nixosConfigurations."a.b" = {}; }; }`, `invalid host name "a.b"`},
		{"tags not a list", `{ outputs = { self }: { nixosConfigurations.x.config.pinkie.deployment.tags = "web"; }; }`, "nixosConfigurations.x.config.pinkie.deployment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readTestFleet(t, tt.flake)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Read: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSelectAndPlace(t *testing.T) {
	f, err := readTestFleet(t, testFlake)
	if err != nil {
		t.Fatal(err)
	}
	sel := []struct {
		name      string
		selectors []string
		want      []string
		wantErr   string
	}{
		{"name", []string{"goliath"}, []string{"goliath"}, ""},
		{"names as a union", []string{"goliath", "koishi"}, []string{"goliath", "koishi"}, ""},
		{"comma union", []string{"goliath,edge-2"}, []string{"edge-2", "goliath"}, ""},
		{"glob", []string{"edge-*"}, []string{"edge-1", "edge-2"}, ""},
		{"tag", []string{"@web"}, []string{"goliath", "koishi"}, ""},
		{"intersection", []string{"@web&@eu"}, []string{"goliath"}, ""},
		{"intersection of tag and glob", []string{"@eu&edge-*"}, []string{"edge-1"}, ""},
		{"exclusion", []string{"@web", "!koishi"}, []string{"goliath"}, ""},
		{"exclusion inside an intersection", []string{"@web&!koishi"}, []string{"goliath"}, ""},
		{"only exclusions mean all except", []string{"!koishi"}, []string{"bare", "edge-1", "edge-2", "goliath"}, ""},
		{"all skips requireExplicit", []string{"all"}, []string{"bare", "edge-1", "edge-2", "goliath", "koishi"}, ""},
		{"glob skips requireExplicit", []string{"*"}, []string{"bare", "edge-1", "edge-2", "goliath", "koishi"}, ""},
		{"requireExplicit by name", []string{"all", "tower"}, []string{"bare", "edge-1", "edge-2", "goliath", "koishi", "tower"}, ""},
		{"requireExplicit by tag", []string{"@build"}, []string{"tower"}, ""},
		{"union of overlapping", []string{"@web", "@eu"}, []string{"edge-1", "goliath", "koishi"}, ""},
		{"unknown host", []string{"goliath", "gloriath"}, nil, `host "gloriath" is not in the fleet`},
		{"unknown tag", []string{"@db"}, nil, `selector "@db": no host has tag "db"`},
		{"glob matching nothing", []string{"db-*"}, nil, `selector "db-*" matches no host`},
		{"empty intersection", []string{"@web&@edge"}, nil, `selector "@web&@edge" matches no host`},
		{"exclusion of an unknown host", []string{"@web", "!koishy"}, nil, `host "koishy" is not in the fleet`},
		{"everything excluded", []string{"@web", "!goliath", "!koishi"}, nil, "leave no host"},
		{"no selector", nil, nil, "no selector"},
		{"bad glob", []string{"edge-["}, nil, "bad glob"},
	}
	for _, tt := range sel {
		t.Run("select/"+tt.name, func(t *testing.T) {
			got, err := Select(f, tt.selectors)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Select(%q) = %v, %v; want error %q", tt.selectors, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Select(%q) (-want +got):\n%s", tt.selectors, diff)
			}
		})
	}
	place := []struct {
		name          string
		host          string
		buildOn, goal string
		want          Plan
		wantErr       string
	}{
		{"fleet default", "edge-2", "", "", Plan{Host: "edge-2", BuildOn: "local", Goal: "switch"}, ""},
		{"host buildOn and goal", "edge-1", "", "", Plan{Host: "edge-1", BuildOn: "tower", Goal: "boot"}, ""},
		{"host target", "koishi", "", "", Plan{Host: "koishi", BuildOn: "target", Goal: "switch"}, ""},
		{"flag beats host", "edge-1", "local", "test", Plan{Host: "edge-1", BuildOn: "local", Goal: "test"}, ""},
		{"flag builder", "goliath", "tower", "", Plan{Host: "goliath", BuildOn: "tower", Goal: "switch", HealthChecks: []string{"curl -f localhost", "true"}}, ""},
		{"own builder is target", "tower", "tower", "", Plan{Host: "tower", BuildOn: "target", Goal: "switch"}, ""},
		{"unknown builder", "goliath", "nowhere", "", Plan{}, `--build-on: builder host "nowhere" is not in the fleet`},
		{"bad build location", "goliath", "a.b", "", Plan{}, `build location "a.b"`},
		{"unknown goal", "goliath", "", "reboot", Plan{}, `--goal: unknown goal "reboot"`},
	}
	for _, tt := range place {
		t.Run("place/"+tt.name, func(t *testing.T) {
			got, err := Place(f, []string{tt.host}, tt.buildOn, tt.goal)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Place = %v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]Plan{tt.want}, got); diff != "" {
				t.Errorf("Place (-want +got):\n%s", diff)
			}
		})
	}
}

// BenchmarkRead measures reading the test flake's fleet (one nix eval).
func BenchmarkRead(b *testing.B) {
	if _, err := exec.LookPath("nix"); err != nil {
		b.Skip("nix is not installed")
	}
	b.Setenv("NIX_CONFIG", "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false")
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(testFlake), 0o644); err != nil {
		b.Fatal(err)
	}
	n := nix.Nix{Run: nix.ExecRunner{}}
	for b.Loop() {
		if _, err := Read(context.Background(), n, "path:"+dir); err != nil {
			b.Fatal(err)
		}
	}
}
