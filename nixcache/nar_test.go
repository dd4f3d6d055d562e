package nixcache

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDumpPathIsNixs: DumpPath writes the bytes `nix-store --dump` writes
// for a tree of every kind Nix archives: regular, empty and executable
// files, a symlink, nested and empty directories, names that sort
// differently by byte and by locale, contents of every padding length.
func TestDumpPathIsNixs(t *testing.T) {
	if _, err := exec.LookPath("nix-store"); err != nil {
		t.Skip("nix is not installed (apt-get install nix-bin)")
	}
	root := filepath.Join(t.TempDir(), "tree")
	files := map[string]string{
		"a":             "hello\n",
		"B":             "",
		"dir/nested/x":  "1234567",
		"dir/nested/y8": "12345678",
		"dir/z":         "123456789",
		"Zeta":          "upper case sorts first",
		"ä":             "non-ASCII name",
	}
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dir/z", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{root, filepath.Join(root, "a"), filepath.Join(root, "link")} {
		want, err := exec.Command("nix-store", "--dump", p).Output()
		if err != nil {
			t.Fatalf("nix-store --dump %s: %v", p, err)
		}
		var got bytes.Buffer
		if err := DumpPath(&got, p); err != nil {
			t.Fatalf("DumpPath %s: %v", p, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("DumpPath %s: %d bytes, nix-store --dump %d bytes; they differ", p, got.Len(), len(want))
		}
	}
}
