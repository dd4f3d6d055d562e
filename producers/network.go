package producers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// Network reports the host's interfaces (MAC, MTU, state, addresses),
// default routes, DNS resolvers and VPNs (WireGuard peers and handshake
// age, Tailscale and other tun interfaces). It checks every minute and
// reports when something changed, and at least every 5 minutes. The public
// address and its location are looked up only when the operator configured
// a URL or a GeoIP database: by default nothing leaves the host.
type Network struct {
	opts  networkOptions
	gate  *ChangeGate
	check time.Duration

	mu     sync.Mutex
	geo    *maxminddb.Reader
	geoMod time.Time
	http   *http.Client
}

type networkOptions struct {
	// GeoIPDB is a MaxMind database (GeoLite2-City, -Country or -ASN) on
	// the agent's machine, opened directly (memory-mapped), not through
	// the host root.
	GeoIPDB string `json:"geoip_db,omitempty"`
	// PublicIPURL answers a GET with the caller's address as text
	// (e.g. an ifconfig.me-like service the operator trusts).
	PublicIPURL string `json:"public_ip_url,omitempty"`
	// Check is how often the network is looked at for changes ("1m").
	Check string `json:"check,omitempty"`
}

func networkSpec() Spec {
	return Spec{Name: "network", Doc: "interfaces, addresses, routes, DNS, WireGuard and tun VPNs; public IP/GeoIP when configured", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) { return NewNetwork(raw) }}
}

// NewNetwork builds the network producer from its options
// ({"geoip_db": PATH, "public_ip_url": URL, "check": "1m"}).
func NewNetwork(raw json.RawMessage) (*Network, error) {
	var o networkOptions
	if err := DecodeOptions(raw, &o); err != nil {
		return nil, err
	}
	n := &Network{opts: o, gate: NewChangeGate(5 * time.Minute), check: time.Minute,
		http: &http.Client{Timeout: 10 * time.Second}}
	if o.Check != "" {
		d, err := time.ParseDuration(o.Check)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("options: check: want a positive duration, got %q", o.Check)
		}
		n.check = d
	}
	if o.PublicIPURL != "" && !strings.HasPrefix(o.PublicIPURL, "https://") && !strings.HasPrefix(o.PublicIPURL, "http://") {
		return nil, fmt.Errorf("options: public_ip_url: want an http(s) URL, got %q", o.PublicIPURL)
	}
	return n, nil
}

func (n *Network) Name() string { return "network" }

// Interval is how often the network is checked; an observation is made
// only on change or once the refresh period (SetInterval, 5m) has passed.
func (n *Network) Interval() time.Duration { return min(n.check, n.gate.Refresh()) }

// SetInterval sets the refresh period (the config's "interval").
func (n *Network) SetInterval(d time.Duration) { n.gate.SetRefresh(d) }

func (n *Network) Collect(ctx context.Context, env Env) ([]Observation, error) {
	d, err := n.look(ctx, env)
	// Handshake ages change all the time; they are sent with the rest, but
	// do not count as a change.
	stable := d
	stable.WireGuard = nil
	for _, w := range d.WireGuard {
		w.HandshakeAgeSeconds, w.LatestHandshake = nil, nil
		stable.WireGuard = append(stable.WireGuard, w)
	}
	if !n.gate.Due(env.Now(), stable) {
		return nil, err
	}
	return []Observation{{Kind: "network", Data: d}}, err
}

func (n *Network) look(ctx context.Context, env Env) (events.Network, error) {
	var errs []error
	d := events.Network{Interfaces: []events.NetInterface{}, DefaultRoutes: []events.Route{}, DNS: events.DNS{Nameservers: []string{}}}
	ifs, err := networkReadInterfaces(env.Root)
	if err != nil {
		errs = append(errs, err)
	}
	addrs, err := networkRunJSON(ctx, env.Run, networkParseAddrs, "ip", "-j", "addr", "show")
	if err != nil {
		errs = append(errs, err)
	}
	for i := range ifs {
		if a := addrs[ifs[i].Name]; a != nil {
			ifs[i].Addresses = a
		}
	}
	d.Interfaces = ifs
	routes, err := networkRunJSON(ctx, env.Run, networkParseRoutes("inet"), "ip", "-j", "route", "show", "default")
	if err == nil {
		d.DefaultRoutes = append(d.DefaultRoutes, routes...)
		if r6, err := networkRunJSON(ctx, env.Run, networkParseRoutes("inet6"), "ip", "-j", "-6", "route", "show", "default"); err == nil {
			d.DefaultRoutes = append(d.DefaultRoutes, r6...)
		}
	} else if b, err2 := bounded.ReadFile(env.Root, "proc/net/route", maxBigTable); err2 == nil {
		// No ip(8): the kernel's IPv4 table still has the default route.
		d.DefaultRoutes = networkParseProcRoute(b)
	} else {
		errs = append(errs, err, fmt.Errorf("read /proc/net/route: %w", err2))
	}
	d.DNS, err = networkReadDNS(env.Root)
	if err != nil {
		errs = append(errs, err)
	}
	hasWG := false
	for _, i := range ifs {
		hasWG = hasWG || i.VPN == "wireguard"
	}
	if hasWG {
		out, code, err := env.Run.Run(ctx, "wg", "show", "all", "dump")
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("wg show all dump: %w", err))
		case code != 0:
			errs = append(errs, fmt.Errorf("wg show all dump: exit status %d", code))
		default:
			d.WireGuard = networkParseWGDump(out, env.Now())
		}
	}
	if n.opts.PublicIPURL != "" || n.opts.GeoIPDB != "" {
		d.Public = n.public(ctx, d.Interfaces)
	}
	if len(errs) > 0 {
		return d, fmt.Errorf("network incomplete: %w", errors.Join(errs...))
	}
	return d, nil
}

// networkRunJSON runs a command whose stdout is JSON and parses it.
func networkRunJSON[T any](ctx context.Context, run Runner, parse func([]byte) (T, error), name string, args ...string) (T, error) {
	var zero T
	if run == nil {
		return zero, fmt.Errorf("%s: no command runner", name)
	}
	out, code, err := run.Run(ctx, name, args...)
	cmd := strings.Join(append([]string{name}, args...), " ")
	if err != nil {
		return zero, fmt.Errorf("%s: %w", cmd, err)
	}
	if code != 0 {
		return zero, fmt.Errorf("%s: exit status %d", cmd, code)
	}
	v, err := parse(out)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", cmd, err)
	}
	return v, nil
}

// networkLinkTypes names the ARPHRD_* values of /sys/class/net/*/type
// (include/uapi/linux/if_arp.h) that hosts commonly have.
var networkLinkTypes = map[string]string{
	"1": "ether", "24": "ieee1394", "32": "infiniband", "512": "ppp", "768": "ipip", "769": "ip6tnl",
	"772": "loopback", "776": "sit", "778": "gre", "801": "ieee80211", "823": "ip6gre", "65534": "none",
}

// networkReadInterfaces lists /sys/class/net: MAC, MTU, operstate, link
// type, and whether it is a WireGuard (DEVTYPE=wireguard in uevent) or
// tun (tun_flags present; "tailscale*" for Tailscale) interface.
func networkReadInterfaces(root fs.FS) ([]events.NetInterface, error) {
	entries, err := fs.ReadDir(root, "sys/class/net")
	if err != nil {
		return []events.NetInterface{}, fmt.Errorf("list /sys/class/net: %w", err)
	}
	var out []events.NetInterface
	var errs []error
	for _, e := range entries {
		name := e.Name()
		dir := "sys/class/net/" + name
		if _, err := fs.Stat(root, dir+"/operstate"); err != nil {
			continue // bonding_masters and other non-interfaces
		}
		i := events.NetInterface{Name: name, Addresses: []string{}}
		i.MAC, _ = readFirstLine(root, dir+"/address")
		if mtu, err := readFirstLine(root, dir+"/mtu"); err == nil {
			i.MTU, _ = strconv.Atoi(mtu)
		} else {
			errs = append(errs, err)
		}
		i.State, _ = readFirstLine(root, dir+"/operstate")
		if t, err := readFirstLine(root, dir+"/type"); err == nil {
			i.Kind = networkLinkTypes[t]
			if i.Kind == "" {
				i.Kind = "arphrd-" + t
			}
		}
		if b, err := bounded.ReadFile(root, dir+"/uevent", maxSmallFile); err == nil && bytes.Contains(b, []byte("DEVTYPE=wireguard")) {
			i.VPN = "wireguard"
		} else if _, err := fs.Stat(root, dir+"/tun_flags"); err == nil {
			i.VPN = "tun"
			if strings.HasPrefix(name, "tailscale") {
				i.VPN = "tailscale"
			}
		}
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	if out == nil {
		out = []events.NetInterface{}
	}
	return out, errors.Join(errs...)
}

// networkParseAddrs reads `ip -j addr show`: per interface its addresses
// in CIDR notation.
func networkParseAddrs(b []byte) (map[string][]string, error) {
	var links []struct {
		IfName   string `json:"ifname"`
		AddrInfo []struct {
			Family    string `json:"family"`
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(b, &links); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	out := map[string][]string{}
	for _, l := range links {
		addrs := []string{}
		for _, a := range l.AddrInfo {
			if a.Local == "" || (a.Family != "inet" && a.Family != "inet6") {
				continue
			}
			addrs = append(addrs, a.Local+"/"+strconv.Itoa(a.PrefixLen))
		}
		out[l.IfName] = addrs
	}
	return out, nil
}

// networkParseRoutes reads `ip -j route show default`.
func networkParseRoutes(family string) func([]byte) ([]events.Route, error) {
	return func(b []byte) ([]events.Route, error) {
		var rs []struct {
			Dst     string `json:"dst"`
			Gateway string `json:"gateway"`
			Dev     string `json:"dev"`
			Metric  int    `json:"metric"`
		}
		if err := json.Unmarshal(b, &rs); err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		out := []events.Route{}
		for _, r := range rs {
			if r.Dst != "default" && r.Dst != "0.0.0.0/0" && r.Dst != "::/0" {
				continue
			}
			out = append(out, events.Route{Family: family, Gateway: r.Gateway, Interface: r.Dev, Metric: r.Metric})
		}
		return out, nil
	}
}

// networkParseProcRoute reads the default routes of /proc/net/route
// (Iface Destination Gateway Flags RefCnt Use Metric Mask …, addresses
// as little-endian hex).
func networkParseProcRoute(b []byte) []events.Route {
	out := []events.Route{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		r := events.Route{Family: "inet", Interface: f[0]}
		if gw, err := hex.DecodeString(f[2]); err == nil && len(gw) == 4 {
			r.Gateway = netip.AddrFrom4([4]byte{gw[3], gw[2], gw[1], gw[0]}).String()
		}
		r.Metric, _ = strconv.Atoi(f[6])
		out = append(out, r)
	}
	return out
}

// networkReadDNS reads nameserver and search lines of /etc/resolv.conf
// (resolv.conf(5)). With systemd-resolved's stub (127.0.0.53), the
// upstream servers in /run/systemd/resolve/resolv.conf are reported.
func networkReadDNS(root fs.FS) (events.DNS, error) {
	b, err := bounded.ReadFile(root, "etc/resolv.conf", maxSmallFile)
	if err != nil {
		return events.DNS{Nameservers: []string{}}, fmt.Errorf("read /etc/resolv.conf: %w", err)
	}
	d := networkParseResolvConf(b)
	if len(d.Nameservers) == 1 && d.Nameservers[0] == "127.0.0.53" {
		if up, err := bounded.ReadFile(root, "run/systemd/resolve/resolv.conf", maxSmallFile); err == nil {
			if u := networkParseResolvConf(up); len(u.Nameservers) > 0 {
				d.Nameservers = u.Nameservers
			}
		}
	}
	return d, nil
}

func networkParseResolvConf(b []byte) events.DNS {
	d := events.DNS{Nameservers: []string{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			d.Nameservers = append(d.Nameservers, f[1])
		case "search", "domain":
			d.Search = append(d.Search[:0], f[1:]...)
		}
	}
	return d
}

// networkParseWGDump reads `wg show all dump` (wg(8)): a line per
// interface "iface private-key public-key listen-port fwmark" and per peer
// "iface public-key preshared-key endpoint allowed-ips latest-handshake
// rx tx keepalive". The private and preshared keys are never kept.
func networkParseWGDump(b []byte, now time.Time) []events.WireGuard {
	byName := map[string]*events.WireGuard{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 5 {
			continue
		}
		w := byName[f[0]]
		if w == nil {
			w = &events.WireGuard{Interface: f[0]}
			byName[f[0]] = w
			order = append(order, f[0])
		}
		switch len(f) {
		case 5:
			w.PublicKey = f[2]
			w.ListenPort, _ = strconv.Atoi(f[3])
		case 9:
			w.Peers++
			sec, err := strconv.ParseInt(f[5], 10, 64)
			if err != nil || sec <= 0 {
				continue
			}
			t := time.Unix(sec, 0).UTC()
			if w.LatestHandshake == nil || t.After(*w.LatestHandshake) {
				age := int64(max(now.Sub(t), 0) / time.Second)
				w.LatestHandshake, w.HandshakeAgeSeconds = &t, &age
			}
		}
	}
	var out []events.WireGuard
	for _, name := range order {
		out = append(out, *byName[name])
	}
	return out
}

// public finds the public address (from the configured URL, else the
// first global unicast, non-private interface address) and, with a GeoIP
// database, where it is. Failures are reported in the result's Error.
func (n *Network) public(ctx context.Context, ifs []events.NetInterface) *events.PublicAddress {
	p := &events.PublicAddress{}
	var errs []string
	var ip netip.Addr
	if n.opts.PublicIPURL != "" {
		a, err := n.fetchPublicIP(ctx)
		if err != nil {
			errs = append(errs, err.Error())
		}
		ip = a
	} else {
		ip = networkGlobalAddr(ifs)
	}
	if ip.IsValid() {
		p.IP = ip.String()
	}
	if n.opts.GeoIPDB != "" && ip.IsValid() {
		if err := n.locate(ip, p); err != nil {
			errs = append(errs, err.Error())
		}
	}
	p.Error = strings.Join(errs, "; ")
	return p
}

func (n *Network) fetchPublicIP(ctx context.Context) (netip.Addr, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.opts.PublicIPURL, nil)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("public ip: %w", err)
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("public ip: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("public ip: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return netip.Addr{}, fmt.Errorf("public ip: %s answered %s", n.opts.PublicIPURL, resp.Status)
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(body)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("public ip: %s answered no address: %w", n.opts.PublicIPURL, err)
	}
	return a.Unmap(), nil
}

func networkGlobalAddr(ifs []events.NetInterface) netip.Addr {
	for _, i := range ifs {
		for _, a := range i.Addresses {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				continue
			}
			if ip := p.Addr(); ip.IsGlobalUnicast() && !ip.IsPrivate() && !networkCGNAT.Contains(ip) {
				return ip
			}
		}
	}
	return netip.Addr{}
}

// networkCGNAT is 100.64.0.0/10 (RFC 6598), Tailscale's addresses among them.
var networkCGNAT = netip.MustParsePrefix("100.64.0.0/10")

// networkGeoRecord is the part of a GeoLite2/GeoIP2 City, Country or ASN
// record that is reported.
type networkGeoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	City struct {
		Names map[string]string `maxminddb:"names"`
	} `maxminddb:"city"`
	ASN   uint   `maxminddb:"autonomous_system_number"`
	ASOrg string `maxminddb:"autonomous_system_organization"`
}

// locate looks ip up in the GeoIP database, reopening it when the file
// changed (geoipupdate replaces it).
func (n *Network) locate(ip netip.Addr, p *events.PublicAddress) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	st, err := os.Stat(n.opts.GeoIPDB)
	if err != nil {
		return fmt.Errorf("geoip: %w", err)
	}
	if n.geo == nil || !st.ModTime().Equal(n.geoMod) {
		if n.geo != nil {
			_ = n.geo.Close()
			n.geo = nil
		}
		r, err := maxminddb.Open(n.opts.GeoIPDB)
		if err != nil {
			return fmt.Errorf("geoip: open %s: %w", n.opts.GeoIPDB, err)
		}
		n.geo, n.geoMod = r, st.ModTime()
	}
	var rec networkGeoRecord
	if err := n.geo.Lookup(ip).Decode(&rec); err != nil {
		return fmt.Errorf("geoip: look up %s: %w", ip, err)
	}
	p.Country, p.City, p.ASN, p.ASOrg = rec.Country.ISOCode, rec.City.Names["en"], rec.ASN, rec.ASOrg
	return nil
}

// Close releases the GeoIP database.
func (n *Network) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.geo != nil {
		err := n.geo.Close()
		n.geo = nil
		return err
	}
	return nil
}
