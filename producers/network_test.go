package producers

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/pinkiefleet/pinkie/events"
)

var networkTestNow = time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)

func networkEnv(t testing.TB, root string) Env {
	return Env{Host: "goliath", Root: os.DirFS(root), Run: execCapturedRunner(t, root), Now: func() time.Time { return networkTestNow }}
}

func networkCollect(t *testing.T, n *Network, env Env) (events.Network, error) {
	t.Helper()
	obs, err := n.Collect(context.Background(), env)
	if len(obs) != 1 {
		t.Fatalf("Collect returned %d observations (err %v)", len(obs), err)
	}
	return obs[0].Data.(events.Network), err
}

func TestNetworkNixOSRoot(t *testing.T) {
	n, err := NewNetwork(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := networkCollect(t, n, networkEnv(t, "testdata/root-nixos"))
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	hs := time.Unix(1795744752, 0).UTC()
	age := int64(networkTestNow.Sub(hs) / time.Second)
	want := events.Network{
		Interfaces: []events.NetInterface{
			{Name: "enp5s0", MAC: "a8:a1:59:12:34:56", MTU: 1500, State: "up", Kind: "ether", Addresses: []string{"192.0.2.10/24", "2001:db8::10/64", "fe80::aaa1:59ff:fe12:3456/64"}},
			{Name: "lo", MAC: "00:00:00:00:00:00", MTU: 65536, State: "unknown", Kind: "loopback", Addresses: []string{"127.0.0.1/8", "::1/128"}},
			{Name: "tailscale0", MTU: 1280, State: "unknown", Kind: "none", VPN: "tailscale", Addresses: []string{"100.64.0.7/32", "fd7a:115c:a1e0::7/128"}},
			{Name: "ve-web", MAC: "02:00:00:00:00:02", MTU: 1500, State: "up", Kind: "ether", Addresses: []string{}},
			{Name: "vm-db", MAC: "02:00:00:00:00:01", MTU: 1500, State: "up", Kind: "ether", Addresses: []string{}},
			{Name: "wg0", MTU: 1420, State: "unknown", Kind: "none", VPN: "wireguard", Addresses: []string{"10.100.0.1/24"}},
		},
		DefaultRoutes: []events.Route{{Family: "inet", Gateway: "192.0.2.1", Interface: "enp5s0", Metric: 100}, {Family: "inet6", Gateway: "fe80::1", Interface: "enp5s0", Metric: 1024}},
		DNS:           events.DNS{Nameservers: []string{"192.0.2.1", "2001:db8::1"}, Search: []string{"home.arpa"}},
		WireGuard:     []events.WireGuard{{Interface: "wg0", PublicKey: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", ListenPort: 51820, Peers: 3, LatestHandshake: &hs, HandshakeAgeSeconds: &age}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestNetworkThisMachine reads the root captured from the machine the
// project is developed on (Debian 12 in a VM; see testdata/README.md).
func TestNetworkThisMachine(t *testing.T) {
	n, _ := NewNetwork(nil)
	got, err := networkCollect(t, n, networkEnv(t, "testdata/root-debian"))
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	var eth0 *events.NetInterface
	for i := range got.Interfaces {
		if got.Interfaces[i].Name == "eth0" {
			eth0 = &got.Interfaces[i]
		}
	}
	if eth0 == nil || eth0.MTU != 1400 || eth0.State != "up" || !cmp.Equal(eth0.Addresses, []string{"192.0.2.2/24", "fd00::2/64", "fe80::fc:ff:fe00:1/64"}) {
		t.Errorf("eth0 = %+v", eth0)
	}
	if len(got.DefaultRoutes) != 2 || got.DefaultRoutes[0].Gateway != "192.0.2.1" || got.DefaultRoutes[1].Gateway != "fd00::1" {
		t.Errorf("default routes %+v", got.DefaultRoutes)
	}
	if !cmp.Equal(got.DNS.Nameservers, []string{"10.255.255.53"}) {
		t.Errorf("DNS %+v", got.DNS)
	}
	if got.WireGuard != nil || got.Public != nil {
		t.Errorf("no WireGuard and no public lookup expected: %+v %+v", got.WireGuard, got.Public)
	}
}

func TestNetworkBadInput(t *testing.T) {
	t.Run("no ip command: sysfs and /proc/net/route still read", func(t *testing.T) {
		n, _ := NewNetwork(nil)
		env := networkEnv(t, "testdata/root-nixos")
		env.Run = &execFakeRunner{}
		got, err := networkCollect(t, n, env)
		if err == nil || !strings.Contains(err.Error(), "ip -j addr show") || !strings.Contains(err.Error(), "wg show all dump") {
			t.Errorf("err = %v, want it to name ip and wg", err)
		}
		if len(got.Interfaces) != 6 || len(got.DefaultRoutes) != 1 || got.DefaultRoutes[0].Gateway != "192.0.2.1" {
			t.Errorf("partial result %+v", got)
		}
	})
	t.Run("garbage command output", func(t *testing.T) {
		n, _ := NewNetwork(nil)
		env := networkEnv(t, "testdata/root-nixos")
		env.Run = &execFakeRunner{answers: map[string]execFakeAnswer{
			"ip -j addr show": {out: "[{\"ifname\": 3"}, "ip -j route show default": {out: "nope"}, "wg show all dump": {out: "\x00\x01\n\t\t\t\n"},
		}}
		got, err := networkCollect(t, n, env)
		if err == nil || !strings.Contains(err.Error(), "parse") {
			t.Errorf("err = %v", err)
		}
		if len(got.Interfaces) != 6 {
			t.Errorf("interfaces %+v", got.Interfaces)
		}
	})
	t.Run("empty root", func(t *testing.T) {
		n, _ := NewNetwork(nil)
		got, err := networkCollect(t, n, Env{Root: os.DirFS(t.TempDir()), Run: &execFakeRunner{}, Now: time.Now})
		if err == nil || !strings.Contains(err.Error(), "/sys/class/net") || !strings.Contains(err.Error(), "resolv.conf") {
			t.Errorf("err = %v", err)
		}
		if got.Interfaces == nil || got.DefaultRoutes == nil || got.DNS.Nameservers == nil {
			t.Errorf("required lists must be empty, not null: %+v", got)
		}
	})
	t.Run("unknown option", func(t *testing.T) {
		if _, err := NewNetwork(json.RawMessage(`{"geoip": "x"}`)); err == nil || !strings.Contains(err.Error(), "geoip") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestNetworkWGDumpKeepsNoSecrets(t *testing.T) {
	dump := "wg0\tSECRETPRIVATEKEY=\tpub=\t51820\toff\nwg0\tpeer=\tSECRETPSK=\t(none)\t10.0.0.2/32\t0\t0\t0\toff\nbroken line\n"
	got := networkParseWGDump([]byte(dump), networkTestNow)
	b, _ := json.Marshal(got)
	if strings.Contains(string(b), "SECRET") {
		t.Errorf("secret kept: %s", b)
	}
	if len(got) != 1 || got[0].Peers != 1 || got[0].LatestHandshake != nil {
		t.Errorf("got %+v", got)
	}
}

// TestNetworkReportsOnChange checks the change gate: a second look with
// nothing changed reports nothing; a change, or the refresh period, does.
func TestNetworkReportsOnChange(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, s string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("sys/class/net/eth0/operstate", "up\n")
	write("sys/class/net/eth0/mtu", "1500\n")
	write("etc/resolv.conf", "nameserver 192.0.2.1\n")
	write("proc/net/route", "")
	now := networkTestNow
	env := Env{Root: os.DirFS(dir), Run: &execFakeRunner{answers: map[string]execFakeAnswer{
		"ip -j addr show": {out: "[]"}, "ip -j route show default": {out: "[]"}, "ip -j -6 route show default": {out: "[]"},
	}}, Now: func() time.Time { return now }}
	n, _ := NewNetwork(nil)
	count := func() int {
		obs, err := n.Collect(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		return len(obs)
	}
	if count() != 1 {
		t.Fatal("first look reports nothing")
	}
	now = now.Add(time.Minute)
	if count() != 0 {
		t.Error("unchanged network reported again after a minute")
	}
	write("sys/class/net/eth0/operstate", "down\n")
	now = now.Add(time.Minute)
	if count() != 1 {
		t.Error("link down not reported")
	}
	now = now.Add(5 * time.Minute)
	if count() != 1 {
		t.Error("nothing reported after the refresh period")
	}
	if n.Interval() != time.Minute {
		t.Errorf("check interval %v", n.Interval())
	}
}

// TestNetworkPublicAndGeoIP serves the public address over loopback HTTP
// and looks it up in a GeoIP database written for the test.
func TestNetworkPublicAndGeoIP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "198.51.100.23")
	}))
	defer srv.Close()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-City", IncludeReservedNetworks: true, RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	_, network, _ := net.ParseCIDR("198.51.100.0/24")
	rec := mmdbtype.Map{
		"country":                        mmdbtype.Map{"iso_code": mmdbtype.String("DE")},
		"city":                           mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("Berlin")}},
		"autonomous_system_number":       mmdbtype.Uint32(64500),
		"autonomous_system_organization": mmdbtype.String("Example Net"),
	}
	if err := tree.Insert(network, rec); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(t.TempDir(), "city.mmdb")
	f, err := os.Create(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	n, err := NewNetwork(json.RawMessage(fmt.Sprintf(`{"public_ip_url": %q, "geoip_db": %q}`, srv.URL, dbPath)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	got, err := networkCollect(t, n, networkEnv(t, "testdata/root-nixos"))
	if err != nil {
		t.Fatal(err)
	}
	want := &events.PublicAddress{IP: "198.51.100.23", Country: "DE", City: "Berlin", ASN: 64500, ASOrg: "Example Net"}
	if diff := cmp.Diff(want, got.Public); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// A missing database is reported in the result, not as a crash.
	n2, _ := NewNetwork(json.RawMessage(`{"geoip_db": "/nonexistent/city.mmdb"}`))
	got, _ = networkCollect(t, n2, networkEnv(t, "testdata/root-nixos"))
	// Without a URL the first global interface address is looked up.
	if got.Public == nil || got.Public.IP != "192.0.2.10" || !strings.Contains(got.Public.Error, "/nonexistent/city.mmdb") {
		t.Errorf("public %+v", got.Public)
	}
}
