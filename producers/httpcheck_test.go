package producers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// httpCheckCert is a self-signed certificate for 127.0.0.1 that expires
// after validFor.
func httpCheckCert(t *testing.T, validFor time.Duration) (tls.Certificate, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pinkie test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestHTTPCheck runs the checks against real HTTP and TLS servers on
// 127.0.0.1: status codes, an unfollowed redirect, the certificate's days
// left, a refused connection and an untrusted certificate.
func TestHTTPCheck(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("hello")) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/down", http.StatusMovedPermanently)
	})
	tlsCert, cert, _ := httpCheckCert(t, 10*24*time.Hour)
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{tlsCert}}
	srv.StartTLS()
	defer srv.Close()
	plain := httptest.NewServer(mux)
	defer plain.Close()
	closed := httptest.NewServer(mux)
	refused := closed.URL
	closed.Close()

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	trusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	env := Env{Now: time.Now}
	wantDays := time.Until(cert.NotAfter).Hours() / 24

	tests := []struct {
		name     string
		url      string
		client   *http.Client
		ok       bool
		status   int
		tls      bool
		errorHas string
	}{
		{"https 200 with the certificate's days left", srv.URL + "/", trusting, true, 200, true, ""},
		{"https 503", srv.URL + "/down", trusting, false, 503, true, ""},
		{"a redirect is an answer, not followed", srv.URL + "/moved", trusting, true, 301, true, ""},
		{"plain http", plain.URL + "/", trusting, true, 200, false, ""},
		{"refused", refused + "/", trusting, false, 0, false, "refused"},
		{"untrusted certificate", srv.URL + "/", &http.Client{Timeout: 5 * time.Second}, false, 0, false, "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := NewHTTPCheck([]string{tc.url}, tc.client)
			if err != nil {
				t.Fatal(err)
			}
			obs, err := h.Collect(context.Background(), env)
			if err != nil || len(obs) != 1 || obs[0].Kind != "httpcheck" || obs[0].Object != tc.url {
				t.Fatalf("Collect: %v %+v", err, obs)
			}
			d := obs[0].Data.(events.HTTPCheck)
			if d.URL != tc.url || d.OK != tc.ok || d.StatusCode != tc.status || (d.TLSDaysLeft != nil) != tc.tls || !strings.Contains(d.Error, tc.errorHas) || d.DurationMS <= 0 {
				t.Errorf("check %+v", d)
			}
			if tc.tls {
				if got := *d.TLSDaysLeft; got < wantDays-0.2 || got > wantDays+0.1 || !d.TLSNotAfter.Equal(cert.NotAfter.UTC()) {
					t.Errorf("TLS days left %v (not after %v), want %.1f (%v)", got, d.TLSNotAfter, wantDays, cert.NotAfter)
				}
			}
		})
	}
}

func TestHTTPCheckOptions(t *testing.T) {
	_, _, pemBytes := httpCheckCert(t, time.Hour)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "x.txt")
	_ = os.WriteFile(notPEM, []byte("hello"), 0o600)
	spec := httpCheckSpec()
	for _, tc := range []struct{ name, raw, errHas string }{
		{"urls and a CA", `{"urls": ["https://shop.example.org", "http://10.0.0.5:8080/health"], "ca_file": "` + ca + `"}`, ""},
		{"no urls: not applicable", `{}`, ""},
		{"not a URL", `{"urls": ["shop.example.org"]}`, `"shop.example.org" is not an http:// or https:// URL`},
		{"ftp", `{"urls": ["ftp://x"]}`, "not an http"},
		{"bad timeout", `{"timeout": "soon"}`, `timeout "soon"`},
		{"CA file without a certificate", `{"ca_file": "` + notPEM + `"}`, "holds no PEM certificate"},
		{"unknown option", `{"url": "x"}`, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := spec.New(json.RawMessage(tc.raw), Info{})
			if tc.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.raw == `{}` {
					if _, err := p.(*HTTPCheck).Collect(context.Background(), Env{Now: time.Now}); !errors.Is(err, ErrNotApplicable) {
						t.Errorf("no urls: %v, want ErrNotApplicable", err)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("err = %v, want one containing %q", err, tc.errHas)
			}
		})
	}
}
