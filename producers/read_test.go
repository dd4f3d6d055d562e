package producers

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
)

// endlessFS is a host tree whose every file is endless, as /dev/zero is:
// directories and links come from base, and opening anything else gives
// zeros without end (size 0, as /proc files report). A producer that
// reads a file whole without a limit never returns from it.
type endlessFS struct{ base fs.FS }

func (e endlessFS) Open(name string) (fs.File, error) {
	st, err := fs.Stat(e.base, name)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return e.base.Open(name)
	}
	return &endlessFile{info: st}, nil
}

func (e endlessFS) ReadLink(name string) (string, error) { return fs.ReadLink(e.base, name) }
func (e endlessFS) Lstat(name string) (fs.FileInfo, error) {
	return fs.Lstat(e.base, name)
}

type endlessFile struct{ info fs.FileInfo }

func (f *endlessFile) Read(p []byte) (int, error) { clear(p); return len(p), nil }
func (f *endlessFile) Close() error               { return nil }
func (f *endlessFile) Stat() (fs.FileInfo, error) { return endlessInfo{f.info}, nil }

type endlessInfo struct{ fs.FileInfo }

func (endlessInfo) Size() int64 { return 0 }

// TestProducersBoundEveryFileTheyRead runs every scheduled producer on
// fixture hosts whose every file is endless: each returns within seconds
// and allocates a bounded amount, whatever it makes of the zeros.
func TestProducersBoundEveryFileTheyRead(t *testing.T) {
	roots := []string{"testdata/root-nixos", "testdata/root-debian", "testdata/mdraid", "testdata/btrfs/new"}
	for _, r := range roots {
		if _, err := os.Stat(r); err != nil {
			t.Fatalf("fixture root: %v", err)
		}
	}
	for _, spec := range All() {
		p, err := spec.New(nil, Info{Instance: "test"})
		if err != nil {
			t.Logf("%s: not built with default options (%v)", spec.Name, err)
			continue
		}
		c, ok := p.(Collector)
		if !ok {
			continue // streamers read incrementally: TestLogFollowCutsLongLines
		}
		for _, root := range roots {
			t.Run(spec.Name+" "+root, func(t *testing.T) {
				env := Env{Host: "h", Root: endlessFS{os.DirFS(root)}, Run: &execFakeRunner{}, Now: time.Now,
					Log: slog.New(slog.DiscardHandler), State: &MemState{}}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				start := time.Now()
				_, err := c.Collect(ctx, env)
				runtime.ReadMemStats(&after)
				if d := time.Since(start); d > 20*time.Second {
					t.Errorf("took %v", d)
				}
				if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<30 {
					t.Errorf("allocated %s reading endless files", bounded.Size(int64(alloc)))
				}
				if errors.Is(err, bounded.ErrTooLarge) && !strings.Contains(err.Error(), "larger than") {
					t.Errorf("error does not name the limit: %v", err)
				}
			})
		}
	}
}

// TestReadLimitsNameFileAndLimit: the files whose reading is the point of
// a producer report the limit when they are too big.
func TestReadLimitsNameFileAndLimit(t *testing.T) {
	big := func(limit int64) *fstest.MapFile { return &fstest.MapFile{Data: make([]byte, limit+1)} }
	tests := []struct {
		name string
		c    Collector
		root fstest.MapFS
		want string
	}{
		{"mdraid", &MDRaid{}, fstest.MapFS{"proc/mdstat": big(MaxMDStat)}, "read /proc/mdstat: read proc/mdstat: larger than 1 MiB"},
		{"fs", NewFilesystems(FSStatfs), fstest.MapFS{"proc/self/mountinfo": big(maxProcTable)}, "proc/self/mountinfo: larger than 16 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.Collect(context.Background(), Env{Root: tt.root, Run: &execFakeRunner{}, Now: time.Now, Log: slog.New(slog.DiscardHandler)})
			if !errors.Is(err, bounded.ErrTooLarge) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrTooLarge saying %q", err, tt.want)
			}
		})
	}
}
