package streams

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// startSubstitutingAgent starts host's agent with a loopback nix
// substituter and waits until the hub's cache answers through it.
func startSubstitutingAgent(t *testing.T, host, hubURL, nkey, pinned string) (*Agent, *NixSubstituter) {
	t.Helper()
	sub, err := NewNixSubstituter(host, "", pinned, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	a, err := StartAgent(context.Background(), AgentOptions{
		Host: host, HubURLs: []string{hubURL}, NkeyFile: nkey, DataDir: t.TempDir(),
		ReconnectInterval: 100 * time.Millisecond, Log: testLog(t), Services: []AgentService{sub},
	})
	if err != nil {
		t.Fatalf("StartAgent: %v", err)
	}
	// The hub's interest reaches the agent a moment after the link is up.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := sub.Has(context.Background(), "/nix/store/"+fmt.Sprintf("%032d", 0)+"-probe")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's substituter never reached the hub's cache: %v", host, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return a, sub
}

// writeFleetKey puts a made-up fleet public key where keys init puts the
// real one.
func writeFleetKey(t *testing.T, authDir string) string {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	key := "pinkie-fleet-1:" + base64.StdEncoding.EncodeToString(raw)
	if err := os.WriteFile(NixPublicKeyFile(authDir), []byte(key+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, b
}

// TestNixCacheOverLeaf: an agent's loopback substituter answers from the
// hub's cache over its leaf link with auth on: narinfos, a NAR of several
// chunks intact, the fleet key; bad requests get a reason; another host's
// leaf key can neither call koishi's subjects nor receive koishi's
// replies.
func TestNixCacheOverLeaf(t *testing.T) {
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"goliath", "koishi"}); err != nil {
		t.Fatal(err)
	}
	fleetKey := writeFleetKey(t, auth)
	hub := startTestHub(t, auth, t.TempDir())
	defer hub.Close()
	ctx := context.Background()
	hash := "0123456789abcdfghijklmnpqrsvwxyz"
	narURL := "nar/1ab2c3.nar.xz"
	narinfo := []byte("StorePath: /nix/store/" + hash + "-x\nURL: " + narURL + "\n")
	nar := make([]byte, 2*narChunkSize+12345)
	_, _ = rand.Read(nar)
	if _, err := hub.NixCache().narinfo.Put(ctx, hash, narinfo); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.NixCache().nar.PutBytes(ctx, narURL, nar); err != nil {
		t.Fatal(err)
	}

	koishi, ks := startSubstitutingAgent(t, "koishi", hub.LeafURL(), HostSeedFile(auth, "koishi"), "")
	defer koishi.Close()
	goliath, _ := startSubstitutingAgent(t, "goliath", hub.LeafURL(), HostSeedFile(auth, "goliath"), "")
	defer goliath.Close()

	t.Run("binary cache protocol", func(t *testing.T) {
		if code, b := httpGet(t, ks.URL()+"/nix-cache-info"); code != 200 || !bytes.Contains(b, []byte("StoreDir: /nix/store")) {
			t.Errorf("nix-cache-info: %d %q", code, b)
		}
		if code, b := httpGet(t, ks.URL()+"/"+hash+".narinfo"); code != 200 || !bytes.Equal(b, narinfo) {
			t.Errorf("narinfo: %d %q, want %q", code, b, narinfo)
		}
		if code, _ := httpGet(t, ks.URL()+"/"+"1123456789abcdfghijklmnpqrsvwxyz.narinfo"); code != 404 {
			t.Errorf("a narinfo the cache lacks: %d, want 404", code)
		}
		if code, b := httpGet(t, ks.URL()+"/"+narURL); code != 200 || !bytes.Equal(b, nar) {
			t.Errorf("NAR of %d bytes: %d, got %d bytes, equal %t", len(nar), code, len(b), bytes.Equal(b, nar))
		}
		if code, _ := httpGet(t, ks.URL()+"/nar/ffff.nar.xz"); code != 404 {
			t.Errorf("a NAR the cache lacks: %d, want 404", code)
		}
		if code, _ := httpGet(t, ks.URL()+"/nar/../auth.json"); code != 404 {
			t.Errorf("a path outside nar/: %d, want 404", code)
		}
		res, err := http.Post(ks.URL()+"/"+hash+".narinfo", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("a PUT/POST: %d, want 405 (read-only)", res.StatusCode)
		}
		if key, err := ks.TrustedKey(ctx); err != nil || key != fleetKey {
			t.Errorf("learnt key %q %v, want %q", key, err, fleetKey)
		}
	})

	t.Run("many NARs at once share the substituter's budget", func(t *testing.T) {
		// 24 transfers of 3 chunks each want more chunk requests on their
		// way than the budget (narFetchBudget) allows: each must still
		// arrive whole, none waiting on another for ever.
		const n = 24
		errs := make(chan error, n)
		client := &http.Client{Timeout: 30 * time.Second}
		for range n {
			go func() {
				res, err := client.Get(ks.URL() + "/" + narURL)
				if err != nil {
					errs <- err
					return
				}
				defer res.Body.Close()
				b, err := io.ReadAll(res.Body)
				if err == nil && (res.StatusCode != 200 || !bytes.Equal(b, nar)) {
					err = fmt.Errorf("status %d, %d bytes, equal %t", res.StatusCode, len(b), bytes.Equal(b, nar))
				}
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("one of %d NAR transfers at once: %v", n, err)
			}
		}
		// Each handler gives its budget back as it returns, just after
		// its response is complete.
		for deadline := time.Now().Add(5 * time.Second); len(ks.budget) != 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d chunks of the budget still held after every transfer ended", len(ks.budget))
			}
		}
	})

	t.Run("bad requests get a reason", func(t *testing.T) {
		for _, tc := range []struct {
			name, op, body string
			status         int
		}{
			{"hash too short", "narinfo", "0123", 400},
			{"hash with a path", "narinfo", "../../0123456789abcdfghijklmnpqrs", 400},
			{"NAR not JSON", "nar", "nar/1ab2c3.nar.xz", 400},
			{"NAR outside nar/", "nar", `{"url":"nar/../x.nar","offset":0}`, 400},
			{"NAR unknown field", "nar", `{"url":"` + narURL + `","offset":0,"x":1}`, 400},
			{"negative offset", "nar", `{"url":"` + narURL + `","offset":-1}`, 400},
			{"offset beyond", "nar", fmt.Sprintf(`{"url":"%s","offset":%d}`, narURL, len(nar)+1), 400},
			{"missing NAR", "nar", `{"url":"nar/ffff.nar","offset":0}`, 404},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := ks.call(ctx, tc.op, []byte(tc.body))
				var ce *errNixCache
				if !errors.As(err, &ce) || ce.Status != tc.status || ce.Reason == "" {
					t.Errorf("got %v, want status %d with a reason", err, tc.status)
				}
			})
		}
		// A resumed transfer: a chunk from the middle.
		m, err := ks.call(ctx, "nar", []byte(fmt.Sprintf(`{"url":"%s","offset":%d}`, narURL, narChunkSize+7)))
		if err != nil || !bytes.Equal(m.Data, nar[narChunkSize+7:2*narChunkSize+7]) {
			t.Errorf("chunk at an offset: %v, %d bytes", err, len(m.Data))
		}
	})

	t.Run("goliath cannot use koishi's subjects", func(t *testing.T) {
		// Everything that reaches the hub on the cache's subjects.
		spy, err := hub.Conn().SubscribeSync(nixCacheSubjectPrefix + ".>")
		if err != nil {
			t.Fatal(err)
		}
		defer spy.Unsubscribe()
		if err := hub.Conn().Flush(); err != nil {
			t.Fatal(err)
		}
		// goliath's agent, with koishi's inbox prefix and with its own.
		asKoishi, err := nats.Connect("", nats.InProcessServer(goliath.Server()), nats.CustomInboxPrefix(nixCacheInboxPrefix("koishi")))
		if err != nil {
			t.Fatal(err)
		}
		defer asKoishi.Close()
		asGoliath, err := nats.Connect("", nats.InProcessServer(goliath.Server()), nats.CustomInboxPrefix(nixCacheInboxPrefix("goliath")))
		if err != nil {
			t.Fatal(err)
		}
		defer asGoliath.Close()
		for _, op := range []string{"narinfo", "nar", "key", "closure"} {
			for _, nc := range []*nats.Conn{asKoishi, asGoliath} {
				if _, err := nc.Request(nixCacheSubject("koishi", op), []byte(hash), 300*time.Millisecond); err == nil {
					t.Errorf("goliath called koishi's %s and got an answer", op)
				}
			}
		}
		for _, subj := range []string{
			nixCacheInboxPrefix("koishi") + ".x", nixCacheInboxPrefix("goliath") + ".x",
			nixCacheSubjectPrefix + ".goliath.other", nixCacheSubjectPrefix + ".koishi", "_pinkie.nixcache",
		} {
			if err := asGoliath.Publish(subj, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		// koishi's replies must not reach goliath's side: a subscription
		// there, made known to the hub before koishi asks (goliath's own
		// request travels the same link after it).
		stolen, err := asGoliath.SubscribeSync(nixCacheInboxPrefix("koishi") + ".>")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := asGoliath.Request(nixCacheSubject("goliath", "key"), nil, 5*time.Second); err != nil {
			t.Fatalf("goliath's own key request: %v", err)
		}
		if _, err := ks.call(ctx, "narinfo", []byte(hash)); err != nil {
			t.Fatalf("koishi's own request: %v", err)
		}
		// Then one more of goliath's own: the hub must have seen exactly
		// the three legitimate requests (and its own replies), nothing
		// goliath sent on koishi's subjects or to any inbox.
		if _, err := asGoliath.Request(nixCacheSubject("goliath", "narinfo"), []byte(hash), 5*time.Second); err != nil {
			t.Fatalf("goliath's own narinfo request: %v", err)
		}
		var seen []string
		for {
			m, err := spy.NextMsg(2 * time.Second)
			if err != nil {
				t.Fatalf("the hub never saw goliath's last request; saw %q", seen)
			}
			if m.Header.Get(HeaderNixCacheStatus) != "" || (m.Reply == "" && len(m.Data) > 0 && string(m.Data) != "x") {
				continue // the hub's own replies
			}
			seen = append(seen, m.Subject)
			if m.Subject == nixCacheSubject("goliath", "narinfo") {
				break
			}
		}
		want := []string{nixCacheSubject("goliath", "key"), nixCacheSubject("koishi", "narinfo"), nixCacheSubject("goliath", "narinfo")}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Errorf("the hub saw %q, want only %q", seen, want)
		}
		if m, err := stolen.NextMsg(200 * time.Millisecond); err == nil {
			t.Errorf("goliath received a reply meant for koishi: %s", m.Subject)
		}
	})
}

// TestNixCacheKeyMissing: without nix-signing.pub the key request says so.
func TestNixCacheKeyMissing(t *testing.T) {
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"koishi"}); err != nil {
		t.Fatal(err)
	}
	// An auth directory from before keys init made the fleet's key pair.
	for _, f := range []string{NixPublicKeyFile(auth), NixSecretKeyFile(auth)} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	hub := startTestHub(t, auth, t.TempDir())
	defer hub.Close()
	a, ks := startSubstitutingAgent(t, "koishi", hub.LeafURL(), HostSeedFile(auth, "koishi"), "")
	defer a.Close()
	if _, err := ks.TrustedKey(context.Background()); err == nil || !bytes.Contains([]byte(err.Error()), []byte("no fleet signing key")) {
		t.Errorf("key without nix-signing.pub: %v, want 'no fleet signing key'", err)
	}
	// A pinned key wins, hub or not.
	pinned := "pinned-1:" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	s, err := NewNixSubstituter("koishi", "", pinned, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if key, err := s.TrustedKey(context.Background()); err != nil || key != pinned {
		t.Errorf("pinned key: %q %v", key, err)
	}
	for _, bad := range []struct{ listen, key string }{{"0.0.0.0:0", ""}, {"192.0.2.1:0", ""}, {"", "nokey"}, {"", "x:AAAA"}} {
		if _, err := NewNixSubstituter("koishi", bad.listen, bad.key, testLog(t)); err == nil {
			t.Errorf("NewNixSubstituter(%q, %q) accepted", bad.listen, bad.key)
		}
	}
}
