package streams

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/bounded"
)

// Tests fill the hub's cache straight through JetStream, bypassing the
// upload service's checks (to serve an unsigned or tampered path to nix,
// say); production uploads go through UploadNixCacheDir.

// UploadStats says what an upload added and what the cache already had.
type UploadStats struct {
	Paths        int   `json:"paths"`
	NewPaths     int   `json:"new_paths"`
	NewNARs      int   `json:"new_nars"`
	BytesSent    int64 `json:"bytes_sent"`
	SkippedPaths int   `json:"skipped_paths"`
}

// UploadDir uploads a local binary cache directory (what `nix copy --to
// file://DIR` writes) into the hub's cache: for each narinfo the cache
// lacks, its NAR first (unless stored already), then the narinfo, so a
// narinfo in the cache never names a missing NAR. Paths the cache has are
// skipped; an upload cut short resumes where it stopped when run again.
func (c *NixCache) UploadDir(ctx context.Context, dir string) (UploadStats, error) {
	var st UploadStats
	entries, err := os.ReadDir(dir)
	if err != nil {
		return st, fmt.Errorf("read binary cache %s: %w", dir, err)
	}
	for _, e := range entries {
		hash, ok := strings.CutSuffix(e.Name(), ".narinfo")
		if !ok || e.IsDir() {
			continue
		}
		if !storeHashRE.MatchString(hash) {
			return st, fmt.Errorf("binary cache %s: %s is not <store hash>.narinfo", dir, e.Name())
		}
		st.Paths++
		if _, err := c.narinfo.Get(ctx, hash); err == nil {
			st.SkippedPaths++
			continue
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return st, fmt.Errorf("look up %s in the cache: %w", hash, err)
		}
		info, err := bounded.ReadPath(filepath.Join(dir, e.Name()), maxNarinfo)
		if err != nil {
			return st, err
		}
		url, err := narinfoURL(info)
		if err != nil {
			return st, fmt.Errorf("%s: %w", e.Name(), err)
		}
		if _, err := c.nar.GetInfo(ctx, url); errors.Is(err, jetstream.ErrObjectNotFound) {
			f, err := os.Open(filepath.Join(dir, filepath.FromSlash(url)))
			if err != nil {
				return st, fmt.Errorf("%s names %s: %w", e.Name(), url, err)
			}
			oi, err := c.nar.Put(ctx, jetstream.ObjectMeta{Name: url}, f)
			f.Close()
			if err != nil {
				return st, fmt.Errorf("upload %s: %w", url, err)
			}
			st.NewNARs++
			st.BytesSent += int64(oi.Size)
		} else if err != nil {
			return st, fmt.Errorf("look up %s in the cache: %w", url, err)
		}
		if _, err := c.narinfo.Create(ctx, hash, info); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return st, fmt.Errorf("store %s: %w", e.Name(), err)
		}
		st.NewPaths++
		st.BytesSent += int64(len(info))
	}
	return st, nil
}
