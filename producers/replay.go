package producers

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pinkiefleet/pinkie/bounded"
)

// ReplayRunner answers producers' commands from recorded outputs instead of
// running them: DIR/commands.json maps a command line ("ip -j addr show")
// to a name, and DIR/<name>.out and DIR/<name>.code hold what the command
// printed and its exit code. A command with no recording behaves like one
// that is not installed. It lets an agent or `pinkie collect` run against a
// captured machine (a fixture root and its commands), for tests and demos.
type ReplayRunner struct {
	Dir   string
	lines map[string]string
}

// NewReplayRunner reads DIR/commands.json.
func NewReplayRunner(dir string) (*ReplayRunner, error) {
	b, err := bounded.ReadPath(filepath.Join(dir, "commands.json"), maxReplayIndex)
	if err != nil {
		return nil, fmt.Errorf("replay commands: %w", err)
	}
	r := &ReplayRunner{Dir: dir}
	if err := json.Unmarshal(b, &r.lines); err != nil {
		return nil, fmt.Errorf("replay commands %s: %w", filepath.Join(dir, "commands.json"), err)
	}
	return r, nil
}

// Run returns the recorded output of the command line.
func (r *ReplayRunner) Run(ctx context.Context, name string, args ...string) ([]byte, int, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	rec, ok := r.lines[line]
	if !ok {
		return nil, 0, fmt.Errorf("%s: no recording of %q: %w", r.Dir, line, exec.ErrNotFound)
	}
	out, err := bounded.ReadPath(filepath.Join(r.Dir, rec+".out"), MaxCommandOutput)
	if err != nil {
		return nil, 0, fmt.Errorf("replay %q: %w", line, err)
	}
	code := 0
	if c, err := bounded.ReadPath(filepath.Join(r.Dir, rec+".code"), maxSmallFile); err == nil {
		if code, err = strconv.Atoi(strings.TrimSpace(string(c))); err != nil {
			return nil, 0, fmt.Errorf("replay %q: exit code file: %w", line, err)
		}
	}
	return out, code, nil
}
