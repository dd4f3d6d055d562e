package tests

// Matrix against a real homeserver: dendrite v0.13.8 on the local
// PostgreSQL (scripts/test installs both and starts PostgreSQL).

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/streams"
)

type dendrite struct {
	t           *testing.T
	url         string
	token, room string
}

func goBin(t *testing.T, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Skipf("%s is not installed (scripts/test installs it: %s)", name, install)
	return ""
}

// startDendrite runs a real dendrite with its own database, registers a
// bot through the shared-secret admin API and creates a room.
func startDendrite(t *testing.T) *dendrite {
	t.Helper()
	const install = "go install github.com/matrix-org/dendrite/cmd/{dendrite,generate-config,generate-keys}@v0.13.8"
	bin := goBin(t, "dendrite", install)
	genCfg := goBin(t, "generate-config", install)
	genKeys := goBin(t, "generate-keys", install)
	if _, err := exec.LookPath("createdb"); err != nil {
		t.Skip("PostgreSQL client tools are not installed (scripts/test installs and starts PostgreSQL)")
	}
	db := fmt.Sprintf("pinkie_dendrite_%d", time.Now().UnixNano())
	if out, err := exec.Command("createdb", "-h", "/var/run/postgresql", db).CombinedOutput(); err != nil {
		t.Skipf("cannot create a PostgreSQL database for dendrite (is PostgreSQL running, with a role for this user? scripts/test sets it up): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("dropdb", "-h", "/var/run/postgresql", "--if-exists", db).Run() })
	dir := t.TempDir()
	if out, err := exec.Command(genKeys, "--private-key", filepath.Join(dir, "matrix_key.pem")).CombinedOutput(); err != nil {
		t.Fatalf("generate-keys: %v\n%s", err, out)
	}
	cfgOut, err := exec.Command(genCfg, "-server", "localhost", "-db", "postgres:///"+db+"?host=/var/run/postgresql&sslmode=disable").Output()
	if err != nil {
		t.Fatalf("generate-config: %v", err)
	}
	cfg := string(cfgOut)
	for _, r := range [][2]string{
		{`registration_shared_secret: ""`, `registration_shared_secret: "pinkie-test-secret"`},
		{"rate_limiting:\n    enabled: true", "rate_limiting:\n    enabled: false"},
		{"disable_federation: false", "disable_federation: true"},
		{"in_memory: false", "in_memory: true"},
		{"private_key: matrix_key.pem", "private_key: " + filepath.Join(dir, "matrix_key.pem")},
		{"storage_path: ./", "storage_path: " + dir},
		{"base_path: media", "base_path: " + filepath.Join(dir, "media")},
	} {
		if !strings.Contains(cfg, r[0]) {
			t.Fatalf("dendrite's generated config has no %q", r[0])
		}
		cfg = strings.Replace(cfg, r[0], r[1], 1)
	}
	cfgFile := filepath.Join(dir, "dendrite.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cmd := exec.Command(bin, "--config", cfgFile, "--http-bind-address", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Dir = dir
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	d := &dendrite{t: t, url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get(d.url + "/_matrix/client/versions"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dendrite did not start:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Shared-secret registration (the Synapse admin API dendrite serves).
	var nonce struct{ Nonce string }
	d.call("GET", "/_synapse/admin/v1/register", "", nil, &nonce)
	mac := hmac.New(sha1.New, []byte("pinkie-test-secret"))
	mac.Write([]byte(nonce.Nonce + "\x00pinkiebot\x00bot-password-1\x00notadmin"))
	var reg struct {
		AccessToken string `json:"access_token"`
	}
	d.call("POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": nonce.Nonce, "username": "pinkiebot", "password": "bot-password-1", "admin": false, "mac": hex.EncodeToString(mac.Sum(nil))}, &reg)
	d.token = reg.AccessToken
	var room struct {
		RoomID string `json:"room_id"`
	}
	d.call("POST", "/_matrix/client/v3/createRoom", d.token, map[string]any{"name": "fleet alerts"}, &room)
	d.room = room.RoomID
	return d
}

func (d *dendrite) call(method, path, token string, body, out any) {
	d.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, d.url+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		d.t.Fatalf("dendrite %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			d.t.Fatalf("dendrite %s %s: %v: %s", method, path, err, b)
		}
	}
}

type roomMessage struct {
	Type    string `json:"type"`
	EventID string `json:"event_id"`
	Content struct {
		MsgType       string `json:"msgtype"`
		Body          string `json:"body"`
		Format        string `json:"format"`
		FormattedBody string `json:"formatted_body"`
	} `json:"content"`
}

// messages reads the room's m.room.message events, oldest first.
func (d *dendrite) messages() []roomMessage {
	var r struct {
		Chunk []roomMessage `json:"chunk"`
	}
	d.call("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(d.room)+"/messages?dir=b&limit=500", d.token, nil, &r)
	var out []roomMessage
	for i := len(r.Chunk) - 1; i >= 0; i-- {
		if r.Chunk[i].Type == "m.room.message" {
			out = append(out, r.Chunk[i])
		}
	}
	return out
}

func (d *dendrite) wait(s string, within time.Duration) roomMessage {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, m := range d.messages() {
			if strings.Contains(m.Content.Body, s) {
				return m
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.t.Fatalf("dendrite room has no message containing %q within %s: %+v", s, within, d.messages())
	return roomMessage{}
}

// holdingProxy forwards to the homeserver; the first send it sees is
// forwarded and answered by the homeserver, but the answer is held back
// from the hub (which is then killed).
type holdingProxy struct {
	mu    sync.Mutex
	txns  []string
	held  bool
	heldC chan string
}

func (p *holdingProxy) handler(target string) http.Handler {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		txn := r.URL.EscapedPath()[strings.LastIndex(r.URL.EscapedPath(), "/")+1:]
		p.mu.Lock()
		p.txns = append(p.txns, txn)
		hold := !p.held
		p.held = true
		p.mu.Unlock()
		if !hold {
			rp.ServeHTTP(w, r)
			return
		}
		rec := &discardWriter{h: http.Header{}}
		rp.ServeHTTP(rec, r) // the homeserver stores the message…
		p.heldC <- txn       // …but the hub never hears back
		<-r.Context().Done()
	})
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// TestMatrixRealHomeserver: alerts reach a real dendrite room as m.notice
// with an HTML body; the hub is killed (SIGKILL) after the homeserver
// stored a message but before the hub got the answer; after a restart the
// notifier retries with the same txnId and the room holds each message
// once.
func TestMatrixRealHomeserver(t *testing.T) {
	d := startDendrite(t)
	proxy := &holdingProxy{heldC: make(chan string, 1)}
	ps := newHTTPServer(t, proxy.handler(d.url))
	f := newFleet(t, "goliath")
	cfg := writeHubConfig(t, map[string]any{"notify": map[string]any{"group_wait": "0s", "channels": map[string]any{
		"ops": map[string]any{"type": "matrix", "homeserver": ps, "room_id": d.room, "access_token_file": secretFile(t, d.token)},
	}}})
	hub := f.startHub("--config", cfg)
	ag := f.inprocAgent("goliath")
	publishOn(t, ag, "login", "", time.Now(), loginEvent("alice", time.Now()))
	var txn string
	select {
	case txn = <-proxy.heldC:
	case <-time.After(30 * time.Second):
		t.Fatal("no Matrix request arrived")
	}
	hub.kill()
	publishOn(t, ag, "login", "", time.Now(), loginEvent("bob", time.Now()))
	f.startHub("--config", cfg)
	c := f.client()
	waitCount(t, c.JS, streams.AlertLogStream, "pinkie.notify.ops.delivered", 2, 30*time.Second)
	msgs := d.messages()
	var alice, bob int
	for _, m := range msgs {
		if m.Content.MsgType != "m.notice" || m.Content.Format != "org.matrix.custom.html" || !strings.Contains(m.Content.FormattedBody, "<b>INFO</b>") {
			t.Errorf("room message %+v", m)
		}
		alice += strings.Count(m.Content.Body, "alice logged in")
		bob += strings.Count(m.Content.Body, "bob logged in")
	}
	if alice != 1 || bob != 1 {
		t.Errorf("room holds alice's login %d times and bob's %d times, want once each: %+v", alice, bob, msgs)
	}
	proxy.mu.Lock()
	reqs := append([]string(nil), proxy.txns...)
	proxy.mu.Unlock()
	if countContaining(reqs, txn) < 2 {
		t.Errorf("txnId %s was not retried after the restart: %v", txn, reqs)
	}
}

func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h}
	port := freePort(t)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}
