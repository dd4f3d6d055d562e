package streams

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStreamsImportsNoFold checks that streams runs folds without knowing
// them: cmd/pinkie wires the projections, the alerter, the deploy planner
// and last-deploy into FoldService.
func TestStreamsImportsNoFold(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{
		"github.com/pinkiefleet/pinkie/projections",
		"github.com/pinkiefleet/pinkie/consumers/alerter",
		"github.com/pinkiefleet/pinkie/consumers/deploy",
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if path == bad || strings.HasPrefix(path, bad+"/") {
					t.Errorf("%s imports %s", f, path)
				}
			}
		}
	}
}
