package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

// writeTestPKI makes a CA and a certificate for 127.0.0.1 signed by it.
func writeTestPKI(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pinkie test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}} // client too: cluster routes are mutual TLS
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "hub.pem"), filepath.Join(dir, "hub.key")
	for f, b := range map[string]*pem.Block{caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// TestTLS: a hub with --tls-cert speaks TLS only on its client and leaf
// listeners; an agent and the CLI that trust its CA work, plain ones and
// untrusting ones are refused.
func TestTLS(t *testing.T) {
	ca, cert, key := writeTestPKI(t)
	f := newFleet(t, "goliath")
	f.startHub("--tls-cert", cert, "--tls-key", key)
	tlsURL := fmt.Sprintf("tls://127.0.0.1:%d", f.natsPort)
	leafURL := fmt.Sprintf("tls://127.0.0.1:%d", f.leafPort)

	ag := f.startAgent("goliath", t.TempDir(), leafURL, "--tls-ca", ca, "--producers", "heartbeat", "--heartbeat", "100ms", "--heartbeat-limit", "3")
	ag.waitFor("hub connected", 30*time.Second)
	ctx := context.Background()
	c, err := streams.Connect(ctx, tlsURL, f.operator(), "tls test", streams.WithTLSCA(ca))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitCount(t, c.JS, streams.HostsStream, "pinkie.host.goliath.heartbeat", 3, 30*time.Second)

	out, code := runPinkie(t, "pub", "--server", tlsURL, "--nkey", f.operator(), "--tls-ca", ca, "deploy.requested", "host=goliath")
	if code != 0 {
		t.Fatalf("pub over TLS: exit %d\n%s", code, out)
	}
	// Without TLS, or without trusting the CA: refused, exit 2.
	for _, tt := range []struct{ name, url, ca string }{
		{"plain", f.natsURL(), ""},
		{"untrusted", tlsURL, ""},
	} {
		args := []string{"pub", "--server", tt.url, "--nkey", f.operator(), "--timeout", "5s", "deploy.requested", "host=goliath"}
		out, code := runPinkie(t, args...)
		if code != 2 || !strings.Contains(out, "cannot connect to the hub") {
			t.Errorf("%s client: exit %d\n%s", tt.name, code, out)
		}
	}
	untrusting := f.startAgent("goliath", t.TempDir(), leafURL, "--producers", "heartbeat", "--heartbeat", "100ms")
	untrusting.waitFor("hub not reachable yet", 30*time.Second)
	if untrusting.count("hub connected") != 0 {
		t.Errorf("an agent that does not trust the hub's CA connected:\n%s", untrusting.out.String())
	}
}
