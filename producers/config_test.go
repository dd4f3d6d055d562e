package producers

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/schemas"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"empty object", `{}`, ""},
		{"example", `{"producers": {"login": {"file": "/var/log/auth.log"}, "profile": {"interval": "6h"}, "smart": {"enabled": false}}}`, ""},
		{"unknown top-level key", `{"producer": {}}`, `unknown key "producer"`},
		{"unknown producer", `{"producers": {"logins": {}}}`, `unknown producer "logins" (known: `},
		{"bad interval", `{"producers": {"network": {"interval": "5 minutes"}}}`, "producers.network: interval"},
		{"interval not a string", `{"producers": {"network": {"interval": 300}}}`, "duration string"},
		{"negative interval", `{"producers": {"network": {"interval": "-5m"}}}`, "not positive"},
		{"enabled not a bool", `{"producers": {"network": {"enabled": "yes"}}}`, "enabled: want true or false"},
		{"producer not an object", `{"producers": {"network": true}}`, "want an object"},
		{"not JSON", `{"producers": `, "config:"},
		{"trailing data", `{} {}`, "after the top-level object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigBuild(t *testing.T) {
	cfg, err := LoadConfig([]byte(`{"producers": {
		"login": {"file": "/var/log/auth.log"},
		"profile": {"interval": "12h", "check": "30s"},
		"network": {"interval": "10m"},
		"guest": {"interval": "1m"},
		"fail2ban": {"enabled": false}}}`))
	if err != nil {
		t.Fatal(err)
	}
	built, err := cfg.Build(Info{Instance: "i", Version: "v"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Built{}
	for _, b := range built {
		got[b.Name] = b
	}
	if _, ok := got["fail2ban"]; ok {
		t.Error("disabled fail2ban was built")
	}
	if b := got["login"]; b.Streamer == nil || b.Collector != nil || b.Interval != 0 {
		t.Errorf("login %+v", b)
	}
	if b := got["profile"]; b.Collector == nil || b.Interval != 30*time.Second {
		t.Errorf("profile checks every %v, want 30s", b.Interval)
	} else if p := b.Collector.(*Profile); p.gate.Refresh() != 12*time.Hour {
		t.Errorf("profile refresh %v, want the configured 12h", p.gate.Refresh())
	}
	if b := got["network"]; b.Interval != time.Minute || b.Collector.(*Network).gate.Refresh() != 10*time.Minute {
		t.Errorf("network %+v", b)
	}
	if b := got["guest"]; b.Interval != time.Minute {
		t.Errorf("guest interval %v, want the configured 1m", b.Interval)
	}
	for _, name := range []string{"heartbeat", "systemd"} {
		if _, ok := got[name]; !ok {
			t.Errorf("default-enabled %s not built", name)
		}
	}
}

func TestConfigBuildRefusesBadOptions(t *testing.T) {
	for _, tt := range []struct{ in, wantErr string }{
		{`{"producers": {"login": {"fil": "/x"}}}`, `producer login: options: json: unknown field "fil"`},
		{`{"producers": {"login": {"interval": "1m"}}}`, "takes no interval"},
		{`{"producers": {"systemd": {"units": "nginx.service"}}}`, "producer systemd: options"},
		{`{"producers": {"login": {"file": "/x", "journal": true}}}`, "exclude each other"},
	} {
		cfg, err := LoadConfig([]byte(tt.in))
		if err != nil {
			t.Fatalf("LoadConfig(%s): %v", tt.in, err)
		}
		if _, err := cfg.Build(Info{}); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: err = %v, want %q", tt.in, err, tt.wantErr)
		}
	}
}

// TestHostEventsMatchSchemas runs the host producers against the fixture
// roots and validates every event they make against its JSON Schema, as
// the hub does on ingest.
func TestHostEventsMatchSchemas(t *testing.T) {
	set, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	var obs []Observation
	for _, root := range []string{"testdata/root-nixos", "testdata/root-debian", "testdata/root-darwin"} {
		env := networkEnv(t, root)
		p, _ := NewProfile(nil)
		n, _ := NewNetwork(nil)
		s, _ := NewSystemd(json.RawMessage(`{"dbus": false, "units": ["nginx.service", "nope.service"]}`))
		for _, c := range []Collector{p, n, s, &Guest{}} {
			o, _ := c.Collect(context.Background(), env)
			obs = append(obs, o...)
		}
	}
	dir := t.TempDir()
	log := "Nov 27 01:58:03 g sshd-session[1]: Accepted publickey for alice from 192.0.2.1 port 2 ssh2: ED25519 SHA256:x\n" +
		"Nov 27 08:00:01 g systemd-logind[812]: New session 'c2' of user 'gdm' with class 'greeter' and type 'wayland'.\n" +
		"2026-11-27 01:57:41,123 fail2ban.actions [1]: NOTICE [sshd] Restore Ban 203.0.113.77\n"
	if err := os.WriteFile(filepath.Join(dir, "log"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	env := Env{Host: "goliath", Root: os.DirFS(dir), Now: time.Now}
	l, _ := NewLogin(json.RawMessage(`{"file": "/log", "follow": false}`))
	f, _ := NewFail2ban(json.RawMessage(`{"file": "/log", "follow": false}`))
	for _, s := range []Streamer{l, f} {
		if err := s.Stream(context.Background(), env, func(_ context.Context, o Observation) error { obs = append(obs, o); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	kinds := map[string]int{}
	for _, o := range obs {
		e, err := BuildEvent("goliath", o.Kind, time.Now(), o)
		if err != nil {
			t.Fatalf("%s: %v", o.Kind, err)
		}
		b, _ := json.Marshal(e)
		if _, _, err := set.Validate(b); err != nil {
			t.Errorf("%s event does not validate: %v\n%s", o.Kind, err, b)
		}
		kinds[o.Kind]++
	}
	for _, k := range []string{"profile", "network", "systemd", "guest", "login", "fail2ban"} {
		if kinds[k] == 0 {
			t.Errorf("no %s event made", k)
		}
	}
}

func TestEnableOnly(t *testing.T) {
	var c Config
	c.EnableOnly(nil)
	if c.Producers != nil {
		t.Fatalf("EnableOnly(nil) changed the configuration: %+v", c.Producers)
	}
	c.EnableOnly([]string{"mdraid", "heartbeat"})
	for _, s := range All() {
		pc, ok := c.Producers[s.Name]
		want := s.Name == "mdraid" || s.Name == "heartbeat"
		if !ok || pc.Enabled == nil || *pc.Enabled != want {
			t.Errorf("%s: enabled %v, want %v", s.Name, pc.Enabled, want)
		}
	}
}

func TestSetHeartbeat(t *testing.T) {
	info := Info{Instance: "i", Version: "v"}
	for _, tc := range []struct {
		name   string
		config string
		want   time.Duration
	}{
		{"the flag's interval", `{}`, 7 * time.Second},
		{"the config's wins", `{"producers": {"heartbeat": {"interval": "42s"}}}`, 42 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadConfig([]byte(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			cfg.EnableOnly([]string{"heartbeat"})
			built, err := cfg.Build(info)
			if err != nil || len(built) != 1 {
				t.Fatalf("Build: %v, %v", built, err)
			}
			cfg.SetHeartbeat(built, 7*time.Second, 3)
			hb := built[0].Collector.(*Heartbeat)
			if built[0].Interval != tc.want || hb.Interval() != tc.want || hb.limit != 3 {
				t.Errorf("interval %s (heartbeat's %s), limit %d; want %s and 3", built[0].Interval, hb.Interval(), hb.limit, tc.want)
			}
		})
	}
}
