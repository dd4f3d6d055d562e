package producers

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/pinkiefleet/pinkie/bounded"
)

// Readers of /proc files shared by several producers. Each reads through
// the rooted filesystem and hands the bytes to a pure parser.

// meminfo is /proc/meminfo in bytes, keyed by field name ("MemTotal").
type meminfo map[string]uint64

func readMeminfo(root fs.FS) (meminfo, error) {
	b, err := bounded.ReadFile(root, "proc/meminfo", maxProcTable)
	if err != nil {
		return nil, fmt.Errorf("read /proc/meminfo: %w", err)
	}
	return parseMeminfo(b)
}

// parseMeminfo parses lines like "MemTotal:       24576000 kB"
// (proc(5), /proc/meminfo).
func parseMeminfo(b []byte) (meminfo, error) {
	m := meminfo{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/meminfo %s: %w", key, err)
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		m[key] = v
	}
	if _, ok := m["MemTotal"]; !ok {
		return nil, fmt.Errorf("/proc/meminfo has no MemTotal")
	}
	return m, nil
}

// readFirstLine returns the first line of a small file, trimmed.
func readFirstLine(root fs.FS, name string) (string, error) {
	b, err := bounded.ReadFile(root, name, maxSmallFile)
	if err != nil {
		return "", fmt.Errorf("read /%s: %w", name, err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return strings.TrimSpace(string(line)), nil
}

// readFloats reads the leading whitespace-separated numbers of a one-line
// file such as /proc/uptime or /proc/loadavg.
func readFloats(root fs.FS, name string, n int) ([]float64, error) {
	line, err := readFirstLine(root, name)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(line)
	if len(f) < n {
		return nil, fmt.Errorf("/%s: want %d numbers, got %q", name, n, line)
	}
	out := make([]float64, n)
	for i := range out {
		if out[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return nil, fmt.Errorf("/%s field %d: %w", name, i+1, err)
		}
	}
	return out, nil
}
