package producers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// HTTPCheck requests the URLs of the host's declared domains (the NixOS
// module lists its nginx and caddy virtual hosts) and reports the status
// code, the duration and, over TLS, the days until the certificate
// expires. Redirects are not followed: a 301 to the HTTPS site is an
// answer.
type HTTPCheck struct {
	every  time.Duration
	urls   []string
	client *http.Client
}

type httpCheckOptions struct {
	// URLs are the addresses to request (http:// or https://).
	URLs []string `json:"urls"`
	// Timeout bounds one request ("10s").
	Timeout string `json:"timeout"`
	// CAFile adds a PEM bundle to the system's roots (an internal CA).
	CAFile string `json:"ca_file"`
}

// httpCheckMaxBody is how much of a response body is read (and dropped).
const httpCheckMaxBody = 64 << 10

func httpCheckSpec() Spec {
	return Spec{Name: "httpcheck", Doc: "HTTP(S) checks of the declared domains: status, duration, TLS certificate expiry", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) {
			o := httpCheckOptions{Timeout: "10s"}
			if err := DecodeOptions(raw, &o); err != nil {
				return nil, err
			}
			timeout, err := time.ParseDuration(o.Timeout)
			if err != nil || timeout <= 0 {
				return nil, fmt.Errorf("options: timeout %q is not a positive duration", o.Timeout)
			}
			tc := &tls.Config{MinVersion: tls.VersionTLS12}
			if o.CAFile != "" {
				pool, err := x509.SystemCertPool()
				if err != nil {
					pool = x509.NewCertPool()
				}
				b, err := bounded.ReadFile(os.DirFS("/"), trimSlash(o.CAFile), 1<<20)
				if err != nil {
					return nil, fmt.Errorf("options: ca_file: %w", err)
				}
				if !pool.AppendCertsFromPEM(b) {
					return nil, fmt.Errorf("options: ca_file %s holds no PEM certificate", o.CAFile)
				}
				tc.RootCAs = pool
			}
			client := &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc, Proxy: nil, DisableKeepAlives: true}}
			return NewHTTPCheck(o.URLs, client)
		}}
}

func trimSlash(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	return p
}

// NewHTTPCheck checks urls with client (redirects are never followed).
func NewHTTPCheck(urls []string, client *http.Client) (*HTTPCheck, error) {
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("options: urls: %q is not an http:// or https:// URL", u)
		}
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &HTTPCheck{every: 5 * time.Minute, urls: urls, client: &c}, nil
}

func (h *HTTPCheck) Name() string            { return "httpcheck" }
func (h *HTTPCheck) Interval() time.Duration { return h.every }

func (h *HTTPCheck) Collect(ctx context.Context, env Env) ([]Observation, error) {
	if len(h.urls) == 0 {
		return nil, ErrNotApplicable
	}
	obs := make([]Observation, 0, len(h.urls))
	for _, u := range h.urls {
		d := h.check(ctx, env.Now, u)
		obs = append(obs, Observation{Kind: "httpcheck", Object: u, Data: d})
	}
	return obs, nil
}

// check makes one GET request.
func (h *HTTPCheck) check(ctx context.Context, now func() time.Time, u string) events.HTTPCheck {
	d := events.HTTPCheck{URL: u}
	start := now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	req.Header.Set("User-Agent", "pinkie-httpcheck")
	resp, err := h.client.Do(req)
	d.DurationMS = math.Round(float64(now().Sub(start).Microseconds())/10) / 100
	if err != nil {
		d.Error = httpCheckError(err)
		return d
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, httpCheckMaxBody))
	d.StatusCode, d.OK = resp.StatusCode, resp.StatusCode < 400
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		na := resp.TLS.PeerCertificates[0].NotAfter.UTC()
		days := math.Round(na.Sub(now()).Hours()/24*10) / 10
		d.TLSNotAfter, d.TLSDaysLeft = &na, &days
	}
	return d
}

// httpCheckError says why a request got no response, without the
// request's method and URL (the event names the URL).
func httpCheckError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}
