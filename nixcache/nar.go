package nixcache

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// DumpPath writes the NAR serialisation of the file tree at path to w, as
// `nix store dump-path` does (src/libutil/archive.cc, dumpPath): regular
// files with their contents and executable bit, symlinks with their
// target, directories with their entries sorted by name. Its SHA-256 is
// the path's NarHash, which is how a reader (the hub, nix) checks it.
func DumpPath(w io.Writer, path string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	d := narDumper{w: bw}
	d.str("nix-archive-1")
	if err := d.node(path); err != nil {
		return err
	}
	if d.err != nil {
		return d.err
	}
	return bw.Flush()
}

type narDumper struct {
	w   *bufio.Writer
	err error
	buf [8]byte
}

// str writes a NAR string: its length (64-bit little endian), its bytes,
// zeros up to a multiple of 8.
func (d *narDumper) str(s string) {
	d.length(uint64(len(s)))
	d.write([]byte(s))
	d.pad(uint64(len(s)))
}

func (d *narDumper) length(n uint64) {
	binary.LittleEndian.PutUint64(d.buf[:], n)
	d.write(d.buf[:])
}

func (d *narDumper) pad(n uint64) {
	if n%8 != 0 {
		clear(d.buf[:])
		d.write(d.buf[:8-n%8])
	}
}

func (d *narDumper) write(b []byte) {
	if d.err == nil {
		_, d.err = d.w.Write(b)
	}
}

func (d *narDumper) node(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	d.str("(")
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		d.str("type")
		d.str("regular")
		if mode&0o100 != 0 {
			d.str("executable")
			d.str("")
		}
		d.str("contents")
		if err := d.contents(path, fi.Size()); err != nil {
			return err
		}
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return err
		}
		d.str("type")
		d.str("symlink")
		d.str("target")
		d.str(target)
	case mode.IsDir():
		d.str("type")
		d.str("directory")
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		slices.Sort(names) // byte order, as Nix's std::map
		for _, name := range names {
			d.str("entry")
			d.str("(")
			d.str("name")
			d.str(name)
			d.str("node")
			if err := d.node(filepath.Join(path, name)); err != nil {
				return err
			}
			d.str(")")
		}
	default:
		return fmt.Errorf("%s: %s is neither a file, a directory nor a symlink", path, mode.Type())
	}
	d.str(")")
	return d.err
}

func (d *narDumper) contents(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	d.length(uint64(size))
	if d.err != nil {
		return d.err
	}
	n, err := io.Copy(d.w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: read %d bytes of %d (changed while being read)", path, n, size)
	}
	d.pad(uint64(size))
	return nil
}
