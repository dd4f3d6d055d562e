package producers

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/pinkiefleet/pinkie/atomicfile"
	"github.com/pinkiefleet/pinkie/bounded"
)

// FileState keeps producers' state as one small file per key in a
// directory, replaced atomically (write, fsync, rename), so a crash leaves
// the old value or the new one, never half of one.
type FileState struct {
	Dir string
	mu  sync.Mutex
}

var stateKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func (s *FileState) path(key string) (string, error) {
	if !stateKeyRE.MatchString(key) || key == "." || key == ".." {
		return "", fmt.Errorf("state key %q: use letters, digits, '.', '-' and '_'", key)
	}
	return filepath.Join(s.Dir, key+".state"), nil
}

// Get returns the value stored under key, and whether there is one.
func (s *FileState) Get(key string) ([]byte, bool, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, false, err
	}
	b, err := bounded.ReadPath(p, maxStateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read state %s: %w", key, err)
	}
	return b, true, nil
}

// Put stores value under key atomically.
func (s *FileState) Put(key string, value []byte) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if err := atomicfile.Write(p, value, 0o600); err != nil {
		return fmt.Errorf("write state %s: %w", key, err)
	}
	return nil
}

// MemState keeps state in memory only: for one-off runs (pinkie collect)
// that must not move an agent's saved positions.
type MemState struct {
	mu sync.Mutex
	m  map[string][]byte
}

// Get returns the value stored under key.
func (s *MemState) Get(key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return append([]byte(nil), v...), ok, nil
}

// Put stores value under key.
func (s *MemState) Put(key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[key] = append([]byte(nil), value...)
	return nil
}
