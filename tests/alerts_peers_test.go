package tests

// Peers of the alert tests: an in-process agent (the real agent code) to
// publish producer events, an ntfy server checking the documented publish
// format, a Matrix homeserver stand-in checking every request against the
// client-server API, and a real mailpit.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// inprocAgent starts the real agent code in the test process, connected
// to the fleet's hub with host's key, so a test can publish any producer
// event the way a producer does.
func (f *fleet) inprocAgent(host string) *streams.Agent {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := streams.StartAgent(ctx, streams.AgentOptions{Host: host, HubURLs: []string{f.leafURL()}, NkeyFile: streams.HostSeedFile(f.auth, host),
		DataDir: f.t.TempDir(), ReconnectInterval: 200 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(a.Close)
	return a
}

// publishOn publishes a producer event of kind about object from agent a.
func publishOn(t *testing.T, a *streams.Agent, kind, object string, at time.Time, data any) events.Event {
	t.Helper()
	k, ok := events.Lookup(kind)
	if !ok {
		t.Fatalf("unknown kind %s", kind)
	}
	var opts []events.Option
	if object != "" {
		opts = append(opts, events.WithSubject(object))
	}
	e, err := events.New(k, a.Host(), kind, at, data, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Publish(ctx, e, object); err != nil {
		t.Fatal(err)
	}
	return e
}

// writeHubConfig writes a hub configuration file.
func writeHubConfig(t *testing.T, cfg map[string]any) string {
	t.Helper()
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "hub.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func secretFile(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ntfyServer checks each request against ntfy's documented JSON publish
// (https://docs.ntfy.sh/publish/#publish-as-json): POST to the root URL,
// Content-Type application/json, Authorization: Bearer <token>, a body
// with topic, title, message, priority (1-5), tags and click only. ntfy
// itself is not served here, so this stands in for it.
type ntfyServer struct {
	t     *testing.T
	srv   *httptest.Server
	token string
	topic string

	mu       sync.Mutex
	down     bool
	refused  int
	messages []ntfyMessage
	arrived  []time.Time
}

type ntfyMessage struct {
	Topic    string   `json:"topic"`
	Title    string   `json:"title"`
	Message  string   `json:"message"`
	Priority int      `json:"priority"`
	Tags     []string `json:"tags"`
	Click    string   `json:"click"`
}

func newNtfyServer(t *testing.T) *ntfyServer {
	n := &ntfyServer{t: t, token: "tk_testtoken123", topic: "pinkie-alerts"}
	n.srv = httptest.NewServer(http.HandlerFunc(n.handle))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *ntfyServer) handle(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(r.Body)
	fail := func(format string, a ...any) {
		n.t.Errorf("ntfy: "+format, a...)
		http.Error(w, fmt.Sprintf(format, a...), http.StatusBadRequest)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		fail("%s %s: want POST /", r.Method, r.URL.Path)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		fail("Content-Type %q", ct)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+n.token {
		fail("Authorization %q", got)
		return
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		fail("body is not JSON: %v", err)
		return
	}
	for k := range raw {
		switch k {
		case "topic", "title", "message", "priority", "tags", "click":
		default:
			fail("unknown field %q in %s", k, body)
			return
		}
	}
	var m ntfyMessage
	_ = json.Unmarshal(body, &m)
	if m.Topic != n.topic || m.Message == "" || m.Title == "" || m.Priority < 1 || m.Priority > 5 || len(m.Tags) == 0 {
		fail("bad message %s", body)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down {
		n.refused++
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	n.messages = append(n.messages, m)
	n.arrived = append(n.arrived, now)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":"%d","time":%d,"event":"message","topic":%q}`, len(n.messages), now.Unix(), m.Topic)
}

func (n *ntfyServer) setDown(down bool) {
	n.mu.Lock()
	n.down = down
	n.mu.Unlock()
}

func (n *ntfyServer) got() []ntfyMessage {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]ntfyMessage(nil), n.messages...)
}

// waitNtfy waits until a message contains s and returns it.
func (n *ntfyServer) wait(s string, within time.Duration) ntfyMessage {
	n.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, m := range n.got() {
			if strings.Contains(m.Title+"\n"+m.Message, s) {
				return m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("ntfy got no message containing %q within %s; got %+v", s, within, n.got())
	return ntfyMessage{}
}

// matrixServer stands in for a homeserver's client-server API and checks
// every request: only PUT /_matrix/client/v3/rooms/{room}/send/m.room.message/{txnId}
// with the access token, a JSON m.notice with body, format
// org.matrix.custom.html and formatted_body. Like a homeserver, it answers
// a repeated txnId with the first event id and stores nothing twice
// (https://spec.matrix.org/v1.11/client-server-api/#transaction-identifiers).
type matrixServer struct {
	t     *testing.T
	srv   *httptest.Server
	token string
	room  string

	mu       sync.Mutex
	requests []string // txnIds as requested, repeats included
	room_    []matrixEvent
	byTxn    map[string]string
	down     bool
	// hang, when set, receives the txnId of the next request, which is
	// then stored but never answered (until the test ends).
	hang chan string
}

type matrixEvent struct {
	TxnID, Body, HTML string
}

func newMatrixServer(t *testing.T) *matrixServer {
	m := &matrixServer{t: t, token: "syt_bot_token", room: "!alerts:pinkie.test", byTxn: map[string]string{}}
	m.srv = httptest.NewServer(http.HandlerFunc(m.handle))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *matrixServer) handle(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, format string, a ...any) {
		m.t.Errorf("matrix: "+format, a...)
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"errcode":"M_UNRECOGNIZED","error":%q}`, fmt.Sprintf(format, a...))
	}
	prefix := "/_matrix/client/v3/rooms/"
	p := r.URL.EscapedPath()
	if r.Method != http.MethodPut || !strings.HasPrefix(p, prefix) {
		fail(400, "%s %s: want PUT %s{room}/send/m.room.message/{txnId}", r.Method, p, prefix)
		return
	}
	parts := strings.Split(strings.TrimPrefix(p, prefix), "/")
	if len(parts) != 4 || parts[1] != "send" || parts[2] != "m.room.message" || parts[3] == "" {
		fail(400, "path %s", p)
		return
	}
	room, _ := url.PathUnescape(parts[0])
	txn, _ := url.PathUnescape(parts[3])
	if room != m.room {
		fail(403, "room %q, want %q", room, m.room)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+m.token {
		fail(401, "Authorization %q", got)
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		fail(400, "body: %v", err)
		return
	}
	if body["msgtype"] != "m.notice" || body["format"] != "org.matrix.custom.html" || body["body"] == "" || body["formatted_body"] == "" || len(body) != 4 {
		fail(400, "content %v", body)
		return
	}
	m.mu.Lock()
	m.requests = append(m.requests, txn)
	if m.down {
		m.mu.Unlock()
		w.WriteHeader(502)
		return
	}
	id, seen := m.byTxn[txn]
	if !seen {
		id = fmt.Sprintf("$ev%d", len(m.room_)+1)
		m.byTxn[txn] = id
		m.room_ = append(m.room_, matrixEvent{TxnID: txn, Body: body["body"].(string), HTML: body["formatted_body"].(string)})
	}
	hang := m.hang
	m.hang = nil
	m.mu.Unlock()
	if hang != nil {
		hang <- txn
		<-r.Context().Done() // never answer: the client is killed meanwhile
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"event_id":%q}`, id)
}

func (m *matrixServer) events() []matrixEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]matrixEvent(nil), m.room_...)
}

func (m *matrixServer) txnRequests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.requests...)
}

func (m *matrixServer) wait(s string, within time.Duration) matrixEvent {
	m.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, e := range m.events() {
			if strings.Contains(e.Body, s) {
				return e
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	m.t.Fatalf("matrix room has no message containing %q within %s: %+v", s, within, m.events())
	return matrixEvent{}
}

// mailpit runs a real mailpit with STARTTLS required (a certificate made
// here) and any SMTP login accepted; messages are read back through its
// HTTP API.
type mailpit struct {
	t                  *testing.T
	smtpPort, httpPort int
	caFile             string
}

func mailpitBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "mailpit")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Skip("mailpit is not installed (scripts/test installs it: go install github.com/axllent/mailpit@v1.33.1)")
	return ""
}

func startMailpit(t *testing.T) *mailpit {
	t.Helper()
	bin := mailpitBin(t)
	dir := t.TempDir()
	certFile, keyFile := selfSignedCert(t, dir, "127.0.0.1")
	mp := &mailpit{t: t, smtpPort: freePort(t), httpPort: freePort(t), caFile: certFile}
	cmd := exec.Command(bin, "--smtp", fmt.Sprintf("127.0.0.1:%d", mp.smtpPort), "--listen", fmt.Sprintf("127.0.0.1:%d", mp.httpPort),
		"--database", filepath.Join(dir, "mailpit.db"), "--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile,
		"--smtp-require-starttls", "--smtp-auth-accept-any", "--smtp-disable-rdns", "--quiet")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", mp.smtpPort)); err == nil {
			c.Close()
			if resp, err := http.Get(mp.api("/api/v1/messages")); err == nil {
				resp.Body.Close()
				return mp
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("mailpit did not start:\n%s", out.String())
	return nil
}

func (mp *mailpit) api(p string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", mp.httpPort, p) }

type mailSummary struct {
	ID      string `json:"ID"`
	Subject string `json:"Subject"`
	To      []struct {
		Address string `json:"Address"`
	} `json:"To"`
}

func (mp *mailpit) messages() []mailSummary {
	resp, err := http.Get(mp.api("/api/v1/messages"))
	if err != nil {
		mp.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Messages []mailSummary `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		mp.t.Fatal(err)
	}
	return r.Messages
}

type mailMessage struct {
	Subject   string `json:"Subject"`
	MessageID string `json:"MessageID"`
	Text      string `json:"Text"`
	HTML      string `json:"HTML"`
}

func (mp *mailpit) message(id string) mailMessage {
	resp, err := http.Get(mp.api("/api/v1/message/" + id))
	if err != nil {
		mp.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m mailMessage
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		mp.t.Fatal(err)
	}
	return m
}

func (mp *mailpit) wait(subject string, within time.Duration) mailMessage {
	mp.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, s := range mp.messages() {
			if strings.Contains(s.Subject, subject) {
				return mp.message(s.ID)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var subjects []string
	for _, s := range mp.messages() {
		subjects = append(subjects, s.Subject)
	}
	sort.Strings(subjects)
	mp.t.Fatalf("mailpit has no message with subject %q within %s; subjects: %q", subject, within, subjects)
	return mailMessage{}
}

// selfSignedCert writes a certificate and key for host into dir.
func selfSignedCert(t *testing.T, dir, host string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(host)}, DNSNames: []string{"localhost"}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// natsSub runs the real nats CLI subscribed to subject until it printed
// count messages, and returns a function that waits for its output.
func natsSub(t *testing.T, f *fleet, subject string, count int) func(within time.Duration) string {
	t.Helper()
	bin := natsCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, "--server", f.natsURL(), "--nkey", f.operator(), "sub", subject, "--count", fmt.Sprint(count))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "Subscribing on "+subject) {
		if time.Now().After(deadline) {
			t.Fatalf("nats sub did not start:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func(within time.Duration) string {
		t.Helper()
		select {
		case <-done:
		case <-time.After(within):
			t.Fatalf("nats sub %s did not get %d messages within %s:\n%s", subject, count, within, out.String())
		}
		return out.String()
	}
}
