// Package bounded reads files whole, but never more than a limit the
// caller chooses for what the file should hold: a wrong path (/dev/zero, a
// disk image) or a runaway file fails at once with an error naming the file
// and the limit, instead of filling memory. Every file pinkie reads whole
// goes through it; files read incrementally (log followers) bound their
// line length instead.
package bounded

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Sizes for limits.
const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
)

// ErrTooLarge matches every error for an input over its limit.
var ErrTooLarge = errors.New("larger than its limit")

// TooLargeError is an input with more than Limit bytes. It comes wrapped in
// an *fs.PathError naming the file, as os.ReadFile's errors do.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("larger than %s, the limit for this input", Size(e.Limit))
}

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// ReadFile reads name from fsys whole, failing when it holds more than
// limit bytes.
func ReadFile(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, name, limit)
}

// ReadPath reads the file at path (an operating system path) whole,
// failing when it holds more than limit bytes.
func ReadPath(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, path, limit)
}

// ReadTail reads at most the last n bytes of the file at path: the end of
// a log that may have grown large. The first line returned may be cut.
func ReadTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > n {
		if _, err := f.Seek(st.Size()-n, io.SeekStart); err != nil {
			return nil, &fs.PathError{Op: "seek", Path: path, Err: err}
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, n))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return b, nil
}

// Read reads r to its end, failing when it gives more than limit bytes;
// name names the input in errors ("-" or "stdin" for standard input).
func Read(r io.Reader, name string, limit int64) ([]byte, error) {
	if limit < 0 {
		limit = 0
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	if int64(len(b)) > limit {
		return nil, &fs.PathError{Op: "read", Path: name, Err: &TooLargeError{Limit: limit}}
	}
	return b, nil
}

// Size prints a byte count the way limits are chosen: 64 KiB, 16 MiB.
func Size(n int64) string {
	switch {
	case n >= MiB && n%MiB == 0:
		return fmt.Sprintf("%d MiB", n/MiB)
	case n >= KiB && n%KiB == 0:
		return fmt.Sprintf("%d KiB", n/KiB)
	}
	return fmt.Sprintf("%d bytes", n)
}
