package events

// The repository's boundaries, checked on every test run (scripts/test runs
// this package with the rest) rather than remembered:
//
//  a. Only streams/, cmd/ and scripts/bench/ talk NATS: no other non-test
//     package imports github.com/nats-io/… (nats.go, nats-server).
//  b. streams (non-test files) imports nothing from consumers/ or
//     projections/. The imports it has today are listed in
//     streamsImportExceptions; the check fails when a listed import is no
//     longer there, so the list can only shrink.
//  c. names.go is the one address book. A string literal in non-test Go
//     code outside events/ fails the check when it
//       - equals a stream, bucket or object store name declared in
//         names.go (a const whose name starts with Stream, Bucket or
//         ObjectStore), or
//       - starts with "pinkie." (SubjectPrefix): a subject, a subject prefix
//         or filter, and also a CloudEvents type (pinkie.<kind>.v1): types
//         are names too, built by Kind.Type/TypeOf and parsed by KindName,
//         or
//       - starts with "_pinkie.": an internal subject (delivery, deploy,
//         nix cache, gate, shell plumbing), or
//       - starts with "$KV.pinkie-", "$O.pinkie-", "KV_pinkie-" or
//         "OBJ_pinkie-": a bucket's subjects or stream spelt by hand.
//     Literals that merely contain such text (usage text, error messages
//     such as "pinkie-inventory %s: %w") are not names and pass.
//     Test files may spell wire values on purpose (to assert them).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/pinkiefleet/pinkie"

// streamsImportExceptions are the consumers/ and projections/ packages
// streams still imports (being removed: the folds move behind events-only
// interfaces). Remove an entry once streams no longer imports it.
var streamsImportExceptions = []string{
	module + "/consumers/alerter",
	module + "/projections",
}

// natsAllowed are the directories (relative to the module) whose packages
// may import NATS.
var natsAllowed = []string{"streams", "cmd", "scripts/bench"}

type goPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
}

// listPackages is `go list -json ./...` from the module's root.
func listPackages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -json ./...: %v: %s", err, stderr.String())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages: not the whole module", len(pkgs))
	}
	return pkgs
}

// rel is the package's path inside the module ("" for the root).
func rel(importPath string) string {
	return strings.TrimPrefix(strings.TrimPrefix(importPath, module), "/")
}

// under reports whether dir is d or below it.
func under(dir, d string) bool { return dir == d || strings.HasPrefix(dir, d+"/") }

// checkImports applies rules a and b to packages; it returns the
// violations, in words.
func checkImports(pkgs []goPackage, exceptions []string) []string {
	var bad []string
	seen := map[string]bool{}
	for _, p := range pkgs {
		dir := rel(p.ImportPath)
		natsOK := slices.ContainsFunc(natsAllowed, func(d string) bool { return under(dir, d) })
		for _, imp := range p.Imports {
			if !natsOK && strings.HasPrefix(imp, "github.com/nats-io/") {
				bad = append(bad, fmt.Sprintf("%s imports %s: only %s may talk NATS (rule a)", p.ImportPath, imp, strings.Join(natsAllowed, ", ")))
			}
			if under(dir, "streams") && (under(imp, module+"/consumers") || under(imp, module+"/projections")) {
				if slices.Contains(exceptions, imp) {
					seen[imp] = true
					continue
				}
				bad = append(bad, fmt.Sprintf("%s imports %s: streams must not import consumers/ or projections/ (rule b)", p.ImportPath, imp))
			}
		}
	}
	for _, e := range exceptions {
		if !seen[e] {
			bad = append(bad, fmt.Sprintf("streams no longer imports %s: remove it from streamsImportExceptions (rule b)", e))
		}
	}
	return bad
}

// declaredNames are the stream, bucket and object store names names.go
// declares: the string constants whose Go names start with Stream, Bucket
// or ObjectStore.
func declaredNames(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "names.go", nil, 0)
	if err != nil {
		t.Fatalf("parse names.go: %v", err)
	}
	names := map[string]string{} // value → constant
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if !strings.HasPrefix(id.Name, "Stream") && !strings.HasPrefix(id.Name, "Bucket") && !strings.HasPrefix(id.Name, "ObjectStore") {
					continue
				}
				if i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("names.go: %s is not a plain string literal; the boundary check reads it", id.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("names.go: %s: %v", id.Name, err)
				}
				names[v] = id.Name
			}
		}
	}
	for _, want := range []string{StreamHosts, BucketInventory, ObjectStoreNixNar} {
		if names[want] == "" {
			t.Fatalf("declaredNames missed %q: the parse of names.go is broken", want)
		}
	}
	return names
}

// literalViolation says why the string literal value breaks rule c, or ""
// when it does not.
func literalViolation(value string, names map[string]string) string {
	if c, ok := names[value]; ok {
		return "is events." + c
	}
	if strings.HasPrefix(value, SubjectPrefix) {
		return "is a subject or event type: build it with events"
	}
	if strings.HasPrefix(value, "_"+SubjectPrefix) {
		return "is an internal subject: build it with events"
	}
	for _, p := range []string{"$KV.pinkie-", "$O.pinkie-", "KV_pinkie-", "OBJ_pinkie-"} {
		if strings.HasPrefix(value, p) {
			return "spells a bucket's subject or stream: use events.KVSubjectPrefix and friends"
		}
	}
	return ""
}

// checkLiterals applies rule c to one Go source file.
func checkLiterals(filename string, src any, names map[string]string) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filename, src, 0)
	if err != nil {
		return nil, err
	}
	var bad []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		v, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		if why := literalViolation(v, names); why != "" {
			bad = append(bad, fmt.Sprintf("%s: literal %s %s (rule c)", fset.Position(lit.Pos()), lit.Value, why))
		}
		return true
	})
	return bad, nil
}

func TestBoundaries(t *testing.T) {
	pkgs := listPackages(t)
	for _, v := range checkImports(pkgs, streamsImportExceptions) {
		t.Error(v)
	}
	names := declaredNames(t)
	files := 0
	for _, p := range pkgs {
		if under(rel(p.ImportPath), "events") {
			continue
		}
		for _, name := range append(slices.Clone(p.GoFiles), p.CgoFiles...) {
			files++
			bad, err := checkLiterals(filepath.Join(p.Dir, name), nil, names)
			if err != nil {
				t.Fatalf("parse %s: %v", name, err)
			}
			for _, v := range bad {
				t.Error(v)
			}
		}
	}
	if files < 50 {
		t.Fatalf("checked %d files: not the whole module", files)
	}
}

// TestBoundaryRulesFail shows each rule catches what it is for, so a
// TestBoundaries that passes means something.
func TestBoundaryRulesFail(t *testing.T) {
	names := declaredNames(t)
	importCases := []struct {
		name string
		pkgs []goPackage
		want string
	}{
		{"nats outside streams", []goPackage{{ImportPath: module + "/dashboard", Imports: []string{"github.com/nats-io/nats.go"}}}, "rule a"},
		{"nats-server in a producer", []goPackage{{ImportPath: module + "/producers", Imports: []string{"github.com/nats-io/nats-server/v2/server"}}}, "rule a"},
		{"streams imports a consumer", []goPackage{{ImportPath: module + "/streams", Imports: []string{module + "/consumers/deploy"}}}, "streams must not import"},
		{"an exception gone", []goPackage{{ImportPath: module + "/streams", Imports: []string{module + "/events"}}}, "remove it from streamsImportExceptions"},
	}
	for _, c := range importCases {
		t.Run(c.name, func(t *testing.T) {
			bad := checkImports(c.pkgs, []string{module + "/projections"})
			if !slices.ContainsFunc(bad, func(s string) bool { return strings.Contains(s, c.want) }) {
				t.Errorf("checkImports = %q, want a violation containing %q", bad, c.want)
			}
		})
	}
	if bad := checkImports([]goPackage{{ImportPath: module + "/scripts/bench/x", Imports: []string{"github.com/nats-io/nats.go"}}, {ImportPath: module + "/streams", Imports: []string{module + "/projections"}}}, []string{module + "/projections"}); len(bad) > 0 {
		t.Errorf("checkImports of allowed imports = %q, want none", bad)
	}

	litCases := []struct {
		name, src string
		bad       bool
	}{
		{"stream name", `package p; var s = "HOSTS"`, true},
		{"bucket name", `package p; func f() { g("pinkie-alerts") }`, true},
		{"object store name", `package p; const n = "pinkie-nix-nar"`, true},
		{"subject", `package p; var s = "pinkie.host." + h`, true},
		{"filter", `package p; var s = []string{"pinkie.deploy.>"}`, true},
		{"event type", `package p; var ok = t == "pinkie.alert.firing.v1"`, true},
		{"KV subject", `package p; var s = "$KV.pinkie-guests.>"`, true},
		{"raw string subject", "package p; var s = `pinkie.fleet.declared`", true},
		{"error text", `package p; var e = "pinkie-inventory %s: %w"`, false},
		{"usage text", `package p; var u = "a pattern below \"pinkie.\""`, false},
		{"internal subject", `package p; var s = "_pinkie.nixcache"`, true},
		{"server name", `package p; var s = "pinkie-hub"`, false},
		{"other upper case", `package p; var s = "ONLINE"`, false},
	}
	for _, c := range litCases {
		t.Run(c.name, func(t *testing.T) {
			bad, err := checkLiterals("p.go", c.src, names)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(bad) > 0; got != c.bad {
				t.Errorf("checkLiterals(%s) = %q, want violation: %v", c.src, bad, c.bad)
			}
		})
	}
}
