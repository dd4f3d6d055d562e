package streams

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/nixcache"
)

// TestNixCacheUploadFromHost: a host's agent uploads an unsigned binary
// cache directory over its leaf link on its own upload subjects; the hub
// signs the narinfo with the fleet key, and real nix fetches the path from
// the hub trusting that key only. Another host cannot upload on the first
// host's subjects (nothing reaches the hub, nothing enters the cache), nor
// aim the replies at the first host's inbox; a narinfo signed by a foreign
// key is re-signed by the hub, the foreign signature dropped.
func TestNixCacheUploadFromHost(t *testing.T) {
	needNixRoot(t)
	dir := t.TempDir()
	env := nixEnv()
	otherSec, _ := nixSigningKey(t, dir, "pinkie-other-1")
	auth := t.TempDir()
	if _, err := KeysInit(auth, []string{"koishi", "goliath"}); err != nil {
		t.Fatal(err)
	}
	pub := must(os.ReadFile(NixPublicKeyFile(auth)))
	drv := filepath.Join(dir, "d.nix")
	if err := os.WriteFile(drv, []byte(`{ seed }: derivation { name = "pinkie-hostput-test"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo ${seed} > $out" ]; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := fmt.Sprint(time.Now().UnixNano())
	p1, p2 := nixBuild(t, env, drv, "seed", seed+"-a"), nixBuild(t, env, drv, "seed", seed+"-b")
	unsigned := filepath.Join(dir, "unsigned")
	mustNix(t, env, "copy", "--to", "file://"+unsigned, p1)
	foreign := filepath.Join(dir, "foreign")
	mustNix(t, env, "copy", "--to", "file://"+foreign+"?secret-key="+otherSec, p2)

	hub := startTestHub(t, auth, t.TempDir())
	defer hub.Close()
	koishi, ks := startSubstitutingAgent(t, "koishi", hub.LeafURL(), HostSeedFile(auth, "koishi"), "")
	defer koishi.Close()
	goliath, _ := startSubstitutingAgent(t, "goliath", hub.LeafURL(), HostSeedFile(auth, "goliath"), "")
	defer goliath.Close()
	ctx := context.Background()

	t.Run("goliath cannot upload as koishi", func(t *testing.T) {
		spy, err := hub.Conn().SubscribeSync(nixCachePutPrefix + ".>")
		if err != nil {
			t.Fatal(err)
		}
		defer spy.Unsubscribe()
		if err := hub.Conn().Flush(); err != nil {
			t.Fatal(err)
		}
		for _, inbox := range []string{"koishi", "goliath"} {
			nc, err := nats.Connect("", nats.InProcessServer(goliath.Server()), nats.CustomInboxPrefix(nixCacheInboxPrefix(inbox)))
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err = UploadNixCacheDir(rctx, connRequester{nc}, NixCachePutHost("koishi"), unsigned)
			cancel()
			nc.Close()
			if err == nil {
				t.Errorf("goliath (inbox %s) uploaded on koishi's subjects", inbox)
			}
		}
		// goliath's own subjects with koishi's inbox: the hub does not answer.
		nc, err := nats.Connect("", nats.InProcessServer(goliath.Server()), nats.CustomInboxPrefix(nixCacheInboxPrefix("koishi")))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = UploadNixCacheDir(rctx, connRequester{nc}, NixCachePutHost("goliath"), unsigned)
		cancel()
		if err == nil {
			t.Errorf("goliath's upload with replies to koishi's inbox was answered")
		}
		for {
			m, err := spy.NextMsg(300 * time.Millisecond)
			if err != nil {
				break
			}
			if strings.HasPrefix(m.Subject, NixCachePutHost("koishi")+".") {
				t.Errorf("the hub received %s from goliath", m.Subject)
			}
		}
		if has, err := ks.Has(ctx, p1); err != nil || has {
			t.Errorf("after goliath's attempts the cache holds %s: %v %v", p1, has, err)
		}
	})

	t.Run("a host no build was ordered from cannot upload", func(t *testing.T) {
		if _, err := ks.UploadDir(ctx, unsigned); err == nil || !strings.Contains(err.Error(), "not ordered to build") {
			t.Fatalf("koishi's upload without a build order: %v, want a refusal", err)
		}
		if has, err := ks.Has(ctx, p1); err != nil || has {
			t.Errorf("the refused upload left %s in the cache: %v %v", p1, has, err)
		}
	})

	t.Run("koishi uploads unsigned, the hub signs", func(t *testing.T) {
		// The planner orders koishi to build goliath's system.
		orderBuild(t, hub, "koishi", "goliath")
		if _, err := ks.UploadDir(ctx, unsigned); err != nil {
			t.Fatal(err)
		}
		if _, err := ks.UploadDir(ctx, foreign); err != nil {
			t.Fatalf("a narinfo signed by a foreign key: %v, want it re-signed", err)
		}
		fleet, err := nixcache.ParsePublicKey(strings.TrimSpace(string(pub)))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{p1, p2} {
			m, err := ks.call(ctx, "narinfo", []byte(filepath.Base(p)[:32]))
			if err != nil {
				t.Fatalf("narinfo of %s: %v", p, err)
			}
			ni, err := nixcache.ParseNarInfo(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if len(ni.Sigs) != 1 || ni.Sigs[0].KeyName != fleet.Name {
				t.Errorf("%s: signatures %v, want the fleet key's only", p, ni.Sigs)
			}
			trusted := append(nixEnv("trusted-public-keys = "+strings.TrimSpace(string(pub))), "XDG_CACHE_HOME="+t.TempDir())
			if _, err := runNix(t, trusted, "copy", "--from", "http://"+hub.HTTPAddr()+"/nix-cache", "--to", filepath.Join(t.TempDir(), "store"), p); err != nil {
				t.Errorf("fetching %s with the fleet key trusted: %v", p, err)
			}
		}
	})
}

// orderBuild stores a build order from the hub's planner: builder is to
// build target's system.
func orderBuild(t *testing.T, hub *Hub, builder, target string) {
	t.Helper()
	k, _ := events.Lookup("deploy.build.ordered")
	p := &events.DeployPhase{RequestID: "req-" + target, Host: target, Builder: builder}
	e, err := events.New(k, "hub", "deploy-planner", time.Now(), p, events.WithSubject(target))
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hub.JetStream().Publish(context.Background(), k.HubSubject(p), b); err != nil {
		t.Fatal(err)
	}
}

// UploadDir uploads a local binary cache directory (nix copy --to
// file://DIR) as the agent would upload store paths: on this host's own
// upload subjects, over its leaf link.
func (s *NixSubstituter) UploadDir(ctx context.Context, dir string) (NixUploadStats, error) {
	s.mu.Lock()
	nc := s.nc
	s.mu.Unlock()
	if nc == nil {
		return NixUploadStats{}, errors.New("the agent's nix cache link is not connected yet")
	}
	return UploadNixCacheDir(ctx, connRequester{nc}, NixCachePutHost(s.host), dir)
}
