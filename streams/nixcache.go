package streams

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/nixcache"
)

// The hub's Nix binary cache (issue 12): narinfos in a KV bucket keyed by
// the store path's hash part, NAR files in an object store under the URL
// their narinfo names (nar/<file hash>.nar[.xz|.zst]; the stream S2-compresses
// what it stores, so NARs sent as they are take less room). Served read-only over the
// hub's HTTP under /nix-cache/ as a standard binary cache.
const (
	NixNarinfoBucket = events.BucketNixNarinfo
	NixNarBucket     = events.ObjectStoreNixNar
	nixCachePrefix   = "/nix-cache"
	// maxNarinfo bounds one narinfo; real ones are a few hundred bytes.
	maxNarinfo = 64 << 10
)

// NixCache is the hub's binary cache in JetStream.
type NixCache struct {
	narinfo jetstream.KeyValue
	nar     jetstream.ObjectStore
	// narStream is the object store's stream, read chunk by chunk when
	// agents pull NARs (nixcache_serve.go).
	narStream jetstream.Stream
	// namingMu keeps a narinfo from naming a NAR that retention is
	// deleting: read-held by uploads from their NAR check to the
	// narinfo's store (several at once), held by retention from its last
	// listing to its NAR deletes.
	namingMu sync.RWMutex
}

// OpenNixCache opens (creating if needed) the cache's bucket and object
// store, with the hub's replicas.
func OpenNixCache(ctx context.Context, js jetstream.JetStream, replicas int) (*NixCache, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: NixNarinfoBucket,
		Description: "the fleet's Nix binary cache: narinfo by store path hash", History: 1, Storage: jetstream.FileStorage, MaxValueSize: maxNarinfo, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("create KV bucket %s: %w", NixNarinfoBucket, err)
	}
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: NixNarBucket,
		Description: "the fleet's Nix binary cache: NAR files", Storage: jetstream.FileStorage, Compression: false, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("create object store %s: %w", NixNarBucket, err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+NixNarBucket)
	if err != nil {
		return nil, fmt.Errorf("open the stream of object store %s: %w", NixNarBucket, err)
	}
	return &NixCache{narinfo: kv, nar: obj, narStream: stream}, nil
}

// lookupParallel is how many narinfo lookups one call (an upload's has,
// a closure's walk) makes at once.
const lookupParallel = 8

// narinfos looks up the narinfos of hashes, lookupParallel at once: each
// one's value, nil where the cache lacks it.
func (c *NixCache) narinfos(ctx context.Context, hashes []string) ([][]byte, error) {
	infos := make([][]byte, len(hashes))
	errs := make([]error, lookupParallel)
	var wg sync.WaitGroup
	for w := range min(lookupParallel, len(hashes)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(hashes) && errs[w] == nil; i += lookupParallel {
				e, err := c.narinfo.Get(ctx, hashes[i])
				if err == nil {
					infos[i] = e.Value()
				} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
					errs[w] = fmt.Errorf("look up the narinfo of %s: %w", hashes[i], err)
				}
			}
		}()
	}
	wg.Wait()
	return infos, errors.Join(errs...)
}

// storeHashRE is the hash part of a store path: 32 characters of Nix's
// base32 alphabet.
var storeHashRE = regexp.MustCompile(`^[0-9a-df-np-sv-z]{32}$`)

// narURLRE is what a narinfo's URL may be: a file under nar/.
var narURLRE = regexp.MustCompile(`^nar/[0-9a-z]+\.nar(\.(xz|bz2|zst|br|gz))?$`)

// narinfoURL is a narinfo's URL, checked to be a NAR file under nar/.
func narinfoURL(info []byte) (string, error) {
	ni, err := nixcache.ParseNarInfo(info)
	if err != nil {
		return "", err
	}
	return ni.URL, checkNarURL(ni.URL)
}

// checkNarURL checks that a narinfo's URL names a NAR file under nar/
// (nothing else is ever read or written in the cache's object store).
func checkNarURL(url string) error {
	if !narURLRE.MatchString(url) {
		return fmt.Errorf("narinfo URL %q is not a NAR file under nar/", url)
	}
	return nil
}

// ServeHTTP serves the cache read-only as a standard Nix binary cache:
// /nix-cache-info, /<hash>.narinfo and /nar/<file>, under the prefix it is
// mounted at.
func (c *NixCache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/")
	switch {
	case p == "nix-cache-info":
		w.Header().Set("Content-Type", "text/x-nix-cache-info")
		fmt.Fprint(w, "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n")
	case strings.HasSuffix(p, ".narinfo"):
		hash := strings.TrimSuffix(p, ".narinfo")
		if !storeHashRE.MatchString(hash) {
			http.Error(w, "not a narinfo name", http.StatusNotFound)
			return
		}
		e, err := c.narinfo.Get(r.Context(), hash)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			http.Error(w, "no such path in the cache", http.StatusNotFound)
			return
		} else if err != nil {
			http.Error(w, "cache unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/x-nix-narinfo")
		_, _ = w.Write(e.Value())
	case narURLRE.MatchString(p):
		res, err := c.nar.Get(r.Context(), p)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			http.Error(w, "no such NAR in the cache", http.StatusNotFound)
			return
		} else if err != nil {
			http.Error(w, "cache unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer res.Close()
		if info, err := res.Info(); err == nil {
			w.Header().Set("Content-Length", fmt.Sprint(info.Size))
		}
		w.Header().Set("Content-Type", "application/x-nix-nar")
		_, _ = io.Copy(w, res)
	default:
		http.NotFound(w, r)
	}
}

// NixCache returns the hub's binary cache.
func (h *Hub) NixCache() *NixCache { return h.nixCache }

// nixCacheHandler serves the cache to the clients the hub trusts with
// per-host detail (loopback, or the bearer token of --metrics-token-file):
// store paths name what runs on every host.
func (h *Hub) nixCacheHandler() http.Handler {
	inner := http.StripPrefix(nixCachePrefix, h.nixCache)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.trusted(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pinkie nix cache"`)
			http.Error(w, "the nix cache is served to loopback clients and to the bearer token of --metrics-token-file", http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	})
}
