package streams

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/nixcache"
)

// closureHub starts a hub with auth for hosts; it stops with the test.
func closureHub(t *testing.T, hosts ...string) (auth string, hub *Hub) {
	t.Helper()
	auth = t.TempDir()
	if _, err := KeysInit(auth, hosts); err != nil {
		t.Fatal(err)
	}
	hub = startTestHub(t, auth, t.TempDir())
	t.Cleanup(hub.Close)
	return auth, hub
}

// closureFixture puts into hub's cache a closure: root refers to a and b,
// b to a and to gone (a path the cache lacks). NARs of small random
// bytes, one of three chunks. It returns the narinfos and NARs by name.
func closureFixture(t *testing.T, hub *Hub) (infos map[string][]byte, nars map[string][]byte, paths map[string]string) {
	t.Helper()
	ctx := context.Background()
	infos, nars, paths = map[string][]byte{}, map[string][]byte{}, map[string]string{}
	hashes := map[string]string{}
	for _, name := range []string{"a", "b", "root", "gone"} {
		sum := sha256.Sum256([]byte("closure-fixture-" + name))
		hashes[name] = nixcache.NixBase32(sum[:20])
		paths[name] = "/nix/store/" + hashes[name] + "-" + name
	}
	refs := map[string][]string{"a": nil, "b": {"a", "gone"}, "root": {"a", "b", "root"}}
	sizes := map[string]int{"a": 1000, "b": 2*narChunkSize + 777, "root": 5000}
	for _, name := range []string{"a", "b", "root"} {
		nar := make([]byte, sizes[name])
		_, _ = rand.Read(nar)
		sum := nixcache.SHA256(sha256.Sum256(nar))
		ni := &nixcache.NarInfo{StorePath: paths[name], URL: "nar/" + nixcache.NixBase32(sum[:]) + ".nar",
			Compression: "none", FileHash: &sum, FileSize: uint64(len(nar)), NarHash: sum, NarSize: uint64(len(nar))}
		for _, r := range refs[name] {
			ni.References = append(ni.References, hashes[r]+"-"+r)
		}
		infos[name], nars[name] = ni.Format(), nar
		if _, err := hub.NixCache().narinfo.Put(ctx, hashes[name], infos[name]); err != nil {
			t.Fatal(err)
		}
		if _, err := hub.NixCache().nar.PutBytes(ctx, ni.URL, nar); err != nil {
			t.Fatal(err)
		}
	}
	return infos, nars, paths
}

// TestNixCacheClosure: the closure op answers a host, into its own inbox
// only, the narinfos of a path's closure as the cache holds them,
// references first, and names what the cache lacks; a path the cache
// lacks and bad requests get a reason; another host's leaf cannot ask.
func TestNixCacheClosure(t *testing.T) {
	auth, hub := closureHub(t, "goliath", "koishi")
	infos, _, paths := closureFixture(t, hub)
	koishi, ks := startSubstitutingAgent(t, "koishi", hub.LeafURL(), HostSeedFile(auth, "koishi"), "")
	defer koishi.Close()
	goliath, _ := startSubstitutingAgent(t, "goliath", hub.LeafURL(), HostSeedFile(auth, "goliath"), "")
	defer goliath.Close()
	ctx := context.Background()
	hash := func(name string) string { return strings.TrimPrefix(paths[name], "/nix/store/")[:32] }

	got, err := ks.Closure(ctx, hash("root"))
	if err != nil {
		t.Fatalf("closure of root: %v", err)
	}
	want := [][]byte{infos["a"], infos["b"], infos["root"]}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("closure of root:\n%q\nwant (references first, byte for byte):\n%q", got, want)
	}
	// Paged: one narinfo a page.
	defer closurePageBytes.Store(closurePageBytes.Load())
	closurePageBytes.Store(1)
	if paged, err := ks.Closure(ctx, hash("root")); err != nil || !slices.EqualFunc(paged, want, bytes.Equal) {
		t.Errorf("closure of root a narinfo a page: %q %v", paged, err)
	}
	m, err := ks.call(ctx, "closure", must(json.Marshal(closureRequest{Hash: hash("root"), From: 1})))
	if err != nil {
		t.Fatal(err)
	}
	var page closureReply
	if err := json.Unmarshal(m.Data, &page); err != nil || len(page.NarInfos) != 1 || page.NarInfos[0] != string(infos["b"]) || page.Next != 2 {
		t.Errorf("page from 1: %d narinfos, next %d (%v); want b's alone and next 2", len(page.NarInfos), page.Next, err)
	}
	m, err = ks.call(ctx, "closure", must(json.Marshal(closureRequest{Hash: hash("root")})))
	if err != nil {
		t.Fatal(err)
	}
	var rep closureReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || rep.Total != 3 || fmt.Sprint(rep.Missing) != "["+hash("gone")+"]" {
		t.Errorf("closure reply: total %d, missing %q (%v), want 3 and the path the cache lacks", rep.Total, rep.Missing, err)
	}

	for _, c := range []struct {
		name, body string
		status     int
		reason     string
	}{
		{"unknown path", `{"hash":"` + hash("gone") + `"}`, 404, "no path " + hash("gone") + " in the hub's cache"},
		{"not a hash", `{"hash":"nothash"}`, 400, "not a store path hash"},
		{"not json", `nothash`, 400, "closure request is not"},
		{"unknown field", `{"hash":"` + hash("root") + `","x":1}`, 400, "closure request is not"},
		{"beyond the closure", `{"hash":"` + hash("root") + `","from":9}`, 400, "beyond the 3 paths"},
	} {
		_, err := ks.call(ctx, "closure", []byte(c.body))
		var ce *errNixCache
		if !errors.As(err, &ce) || ce.Status != c.status || !strings.Contains(ce.Reason, c.reason) {
			t.Errorf("%s: %v, want %d %q", c.name, err, c.status, c.reason)
		}
	}
	if _, _, err := ks.Prefetch(ctx, paths["gone"], func(context.Context, []string) ([]string, error) { return nil, nil }); err == nil || !strings.Contains(err.Error(), "no path "+hash("gone")) {
		t.Errorf("prefetch of a path the cache lacks: %v, want the hub's reason", err)
	}

	// goliath's leaf may not ask on koishi's subject, nor have the answer
	// sent to an inbox of its own choosing on its own subject.
	asGoliath, err := nats.Connect("", nats.InProcessServer(goliath.Server()), nats.CustomInboxPrefix(nixCacheInboxPrefix("goliath")))
	if err != nil {
		t.Fatal(err)
	}
	defer asGoliath.Close()
	body := must(json.Marshal(closureRequest{Hash: hash("root")}))
	if _, err := asGoliath.Request(nixCacheSubject("koishi", "closure"), body, 300*time.Millisecond); err == nil {
		t.Error("goliath asked for a closure on koishi's subject and got an answer")
	}
	if _, err := asGoliath.Request(nixCacheSubject("goliath", "closure"), body, 5*time.Second); err != nil {
		t.Errorf("goliath's own closure request: %v", err)
	}
	elsewhere, err := asGoliath.SubscribeSync("elsewhere.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := asGoliath.PublishRequest(nixCacheSubject("goliath", "closure"), "elsewhere.x", body); err != nil {
		t.Fatal(err)
	}
	if m, err := elsewhere.NextMsg(500 * time.Millisecond); err == nil {
		t.Errorf("the hub answered a closure request outside goliath's inbox: %s", m.Subject)
	}
}

// TestNixPrefetchFetchesOnlyMissing: a prefetch of a closure whose paths
// the local store partly has pulls only the NARs it lacks, counts them as
// served, answers nix's narinfo and NAR requests for the closure from
// what it holds, and leaves nothing on disk once released.
func TestNixPrefetchFetchesOnlyMissing(t *testing.T) {
	auth, hub := closureHub(t, "koishi")
	infos, nars, paths := closureFixture(t, hub)
	koishi, ks := startSubstitutingAgent(t, "koishi", hub.LeafURL(), HostSeedFile(auth, "koishi"), "")
	defer koishi.Close()
	ctx := context.Background()

	var asked []string
	has := map[string]bool{paths["a"]: true} // the local store has a
	nars0, bytes0 := ks.Served()
	local, release, err := ks.Prefetch(ctx, paths["root"], func(_ context.Context, ps []string) ([]string, error) {
		asked = append(asked, ps...)
		var lacking []string
		for _, p := range ps {
			if !has[p] {
				lacking = append(lacking, p)
			}
		}
		return lacking, nil
	})
	if err != nil {
		t.Fatalf("prefetch: %v", err)
	}
	slices.Sort(asked)
	if wantAsked := []string{paths["a"], paths["b"], paths["root"]}; !slices.Equal(asked, slices.Sorted(slices.Values(wantAsked))) {
		t.Errorf("the local store was asked about %q, want the closure %q", asked, wantAsked)
	}
	ks.pf.mu.Lock()
	var held []*prefetched
	var heldURLs []string
	for url, e := range ks.pf.nar {
		held, heldURLs = append(held, e), append(heldURLs, url)
	}
	dir := ks.pf.dir
	ks.pf.mu.Unlock()
	for _, e := range held {
		<-e.ready
		if e.file == "" {
			t.Errorf("the prefetch of %s failed", e.url)
		}
	}
	wantURLs := []string{}
	for _, name := range []string{"b", "root"} {
		ni := must(nixcache.ParseNarInfo(infos[name]))
		wantURLs = append(wantURLs, ni.URL)
	}
	slices.Sort(heldURLs)
	slices.Sort(wantURLs)
	if !slices.Equal(heldURLs, wantURLs) {
		t.Errorf("prefetched NARs %q, want only those of b and root %q", heldURLs, wantURLs)
	}
	// The prefetch's own binary cache: every narinfo, the NARs fetched.
	cacheDir, ok := strings.CutPrefix(local, "file://")
	if !ok || !strings.HasPrefix(cacheDir, dir+"/") {
		t.Fatalf("the prefetch's cache: %q, want a file:// directory under %s", local, dir)
	}
	var files []string
	for _, name := range []string{"a", "b", "root"} {
		ni := must(nixcache.ParseNarInfo(infos[name]))
		if b, err := os.ReadFile(cacheDir + "/" + ni.HashPart() + ".narinfo"); err != nil || !bytes.Equal(b, infos[name]) {
			t.Errorf("the prefetch's narinfo of %s: %q %v", name, b, err)
		}
		if b, err := os.ReadFile(cacheDir + "/" + ni.URL); err == nil {
			files = append(files, name)
			if !bytes.Equal(b, nars[name]) {
				t.Errorf("the prefetch's NAR of %s: %d bytes, not the hub's %d", name, len(b), len(nars[name]))
			}
		}
	}
	if fmt.Sprint(files) != "[b root]" {
		t.Errorf("the prefetch's cache holds the NARs of %q, want those of b and root", files)
	}
	nars1, bytes1 := ks.Served()
	if n, b := nars1-nars0, bytes1-bytes0; n != 2 || b != int64(len(nars["b"])+len(nars["root"])) {
		t.Errorf("served after the prefetch: %d NARs, %d bytes; want 2 and %d", n, b, len(nars["b"])+len(nars["root"]))
	}
	// nix's requests: every narinfo of the closure, the NARs, from what
	// the prefetch holds; a's NAR from the hub as before.
	for _, name := range []string{"a", "b", "root"} {
		hash := strings.TrimPrefix(paths[name], "/nix/store/")[:32]
		if code, b := httpGet(t, ks.URL()+"/"+hash+".narinfo"); code != 200 || !bytes.Equal(b, infos[name]) {
			t.Errorf("narinfo of %s: %d %q", name, code, b)
		}
		ni := must(nixcache.ParseNarInfo(infos[name]))
		if code, b := httpGet(t, ks.URL()+"/"+ni.URL); code != 200 || !bytes.Equal(b, nars[name]) {
			t.Errorf("NAR of %s: %d, %d bytes, want %d", name, code, len(b), len(nars[name]))
		}
	}
	if nars2, _ := ks.Served(); nars2-nars1 != 1 {
		t.Errorf("NARs served from the hub after the prefetch: %d, want a's alone (prefetched ones count once)", nars2-nars1)
	}
	release()
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("after release the prefetch directory %s holds %d entries (%v)", dir, len(ents), err)
	}
	ks.pf.mu.Lock()
	left := len(ks.pf.nar) + len(ks.pf.info)
	ks.pf.mu.Unlock()
	if left != 0 {
		t.Errorf("after release %d prefetch entries are held", left)
	}
}
