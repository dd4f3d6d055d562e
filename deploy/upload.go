package deploy

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/nixcache"
)

// Uploaded is what an upload to the hub's Nix cache did: how many paths
// it offered, the hash parts of those the cache lacked and it sent, and
// the bytes sent.
type Uploaded struct {
	Paths      int
	SentHashes []string
	BytesSent  int64
}

// UploadFunc sends what the hub's Nix cache lacks of the signed paths
// infos describe (streams.UploadNixPaths, over a client's connection).
type UploadFunc func(ctx context.Context, infos []*nixcache.NarInfo) (Uploaded, error)

// UploadClosure signs the closure of paths with the fleet key in keyFile
// and uploads what the hub's cache lacks, each NAR read straight from the
// store (nothing copied or compressed first), and says what it sent.
func UploadClosure(ctx context.Context, n nix.Nix, upload UploadFunc, keyFile string, paths ...string) (*fleetview.CacheUpload, error) {
	key, err := nixcache.ReadSecretKeyFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("the fleet's nix signing key: %w", err)
	}
	closure, err := n.Closure(ctx, paths...)
	if err != nil {
		return nil, err
	}
	infos := make([]*nixcache.NarInfo, 0, len(closure))
	for _, p := range closure {
		ni, err := p.NarInfo()
		if err != nil {
			return nil, err
		}
		if err := ni.Sign(key); err != nil {
			return nil, fmt.Errorf("sign %s with %s: %w", p.Path, keyFile, err)
		}
		infos = append(infos, ni)
	}
	st, err := upload(ctx, infos)
	if err != nil {
		return nil, fmt.Errorf("upload %s to the hub's cache: %w", strings.Join(paths, " "), err)
	}
	sent := map[string]bool{}
	for _, h := range st.SentHashes {
		sent[h] = true
	}
	up := &fleetview.CacheUpload{Paths: st.Paths, UploadedPaths: []string{}, UploadedBytes: st.BytesSent}
	for _, ni := range infos {
		if sent[ni.HashPart()] {
			up.UploadedPaths = append(up.UploadedPaths, ni.StorePath)
			continue
		}
		up.CachedPaths++
		up.CachedBytes += int64(ni.FileSize)
	}
	sort.Strings(up.UploadedPaths)
	return up, nil
}

// ShipFlakeSource signs the flake's source and inputs with the fleet key
// in keyFile, uploads what the hub's cache lacks and returns the reference
// hosts build from, and what it sent.
func ShipFlakeSource(ctx context.Context, n nix.Nix, upload UploadFunc, keyFile, ref string) (string, *fleetview.CacheUpload, error) {
	md, err := n.FlakeMetadata(ctx, ref)
	if err != nil {
		return "", nil, fmt.Errorf("flake %s: %w", ref, err)
	}
	src, err := md.SourceRef()
	if err != nil {
		return "", nil, err
	}
	paths, err := n.FlakeSources(ctx, ref)
	if err != nil {
		return "", nil, fmt.Errorf("the flake source of %s: %w", ref, err)
	}
	up, err := UploadClosure(ctx, n, upload, keyFile, paths...)
	if err != nil {
		return "", nil, fmt.Errorf("the flake source of %s: %w", ref, err)
	}
	return src, up, nil
}
