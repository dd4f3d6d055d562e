package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	tests := []struct {
		name string
		data string
		perm os.FileMode
	}{
		{"creates", "one", 0o600},
		{"replaces", "two, longer than one", 0o644},
		{"shrinks", "3", 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Write(p, []byte(tt.data), tt.perm); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.data {
				t.Errorf("content %q, want %q", b, tt.data)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tt.perm {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tt.perm)
			}
			onlyFile(t, dir, "state.json")
		})
	}
}

// TestWriteFailureLeavesOldContent: a rename that fails (the path is a
// non-empty directory) keeps what was there and leaves no temporary file.
func TestWriteFailureLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "taken")
	if err := os.MkdirAll(filepath.Join(p, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := Write(p, []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), "write "+p) {
		t.Fatalf("err = %v, want a write error naming %s", err, p)
	}
	if st, err := os.Stat(p); err != nil || !st.IsDir() {
		t.Errorf("the directory at the path was replaced: %v %v", st, err)
	}
	onlyFile(t, dir, "taken")

	err = Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("into a missing directory: err = %v, want ErrNotExist", err)
	}
}

func onlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Errorf("directory holds %q, want only %s (no temporary file left)", names, name)
	}
}
