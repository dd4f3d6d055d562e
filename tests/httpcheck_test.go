package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// TestHTTPCheckFromRealAgent: a real agent checks a real TLS server on
// 127.0.0.1 whose certificate expires in two days (trusted through the
// producer's ca_file) and a URL that answers 503; the hub validates the
// httpcheck events and fires tls.expiry (critical) for the first.
func TestHTTPCheckFromRealAgent(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "shop"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(48 * time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("shop")) })
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	defer srv.Close()

	config := filepath.Join(t.TempDir(), "agent.json")
	writeFile(t, config, fmt.Sprintf(`{"producers": {"httpcheck": {"urls": [%q, %q], "ca_file": %q}}}`, srv.URL+"/", srv.URL+"/broken", ca))
	f := newFleet(t, "goliath")
	f.startHub()
	f.startAgent("goliath", t.TempDir(), "", "--config", config, "--producers", "heartbeat,httpcheck")
	rd := []string{"--server", f.natsURL(), "--nkey", streams.ReaderSeedFile(f.auth)}

	deadline := time.Now().Add(60 * time.Second)
	var as []events.Alert
	var out string
	for {
		out, _ = runPinkie(t, append([]string{"alerts", "--json"}, rd...)...)
		as = nil
		_ = json.NewDecoder(strings.NewReader(out)).Decode(&as)
		found := false
		for _, a := range as {
			found = found || a.Rule == "tls.expiry"
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tls.expiry alert within 60s:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, a := range as {
		// (Both URLs are served with the certificate: both are named.)
		if a.Rule == "tls.expiry" && (a.Severity != events.SeverityCritical || !strings.Contains(a.Summary, "expires in 2.0 days") || !strings.HasPrefix(a.Object, srv.URL+"/")) {
			t.Errorf("tls.expiry: %+v", a)
		}
	}
	// The events are at the hub, valid, with the status codes.
	c := f.client()
	ms := readAll(t, c.JS, streams.HostsStream, "pinkie.host.goliath.httpcheck.>", 2)
	codes := map[string]int{}
	for _, m := range ms {
		var d events.HTTPCheck
		if err := m.event.DataAs(&d); err != nil {
			t.Fatal(err)
		}
		codes[d.URL] = d.StatusCode
	}
	if codes[srv.URL+"/"] != 200 || codes[srv.URL+"/broken"] != 503 {
		t.Errorf("status codes at the hub: %v", codes)
	}
}
