package producers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pinkiefleet/pinkie/events"
)

// postgresTestConn connects to a real PostgreSQL for the tests: the DSN in
// PINKIE_TEST_PG_DSN, else the local socket as postgres, else the local
// socket as the OS user (root, with a "root" role). It skips with the
// reasons when none works.
func postgresTestConn(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the PostgreSQL test")
	}
	candidates := []string{
		"host=/var/run/postgresql user=postgres dbname=postgres sslmode=disable",
		"host=/var/run/postgresql dbname=postgres sslmode=disable",
	}
	if dsn := os.Getenv("PINKIE_TEST_PG_DSN"); dsn != "" {
		candidates = []string{dsn}
	}
	var why []string
	for _, dsn := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		cancel()
		if err == nil {
			t.Cleanup(func() { conn.Close(context.Background()) })
			return dsn, conn
		}
		why = append(why, fmt.Sprintf("%q: %v", dsn, err))
	}
	t.Skipf("no PostgreSQL reachable (start one: apt-get install -y postgresql; pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start; as root also su postgres -c 'createuser -s root', or set PINKIE_TEST_PG_DSN): %s", strings.Join(why, "; "))
	return "", nil
}

func postgresExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestPostgresReal(t *testing.T) {
	dsn, admin := postgresTestConn(t)
	ctx := context.Background()
	for _, db := range []string{"pinkie_test_small", "pinkie_test_big"} {
		postgresExec(t, admin, "DROP DATABASE IF EXISTS "+db)
		postgresExec(t, admin, "CREATE DATABASE "+db)
		t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") })
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = "pinkie_test_big"
	big, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	postgresExec(t, big, "CREATE TABLE events_log AS SELECT g AS id, repeat(md5(g::text), 16) AS body FROM generate_series(1, 20000) g")
	postgresExec(t, big, "CREATE INDEX ON events_log (id)")
	postgresExec(t, big, "CREATE TABLE tiny (x int)")
	postgresExec(t, big, "INSERT INTO tiny VALUES (1)")
	postgresExec(t, big, "CREATE MATERIALIZED VIEW summary AS SELECT id % 100 AS k, count(*) FROM events_log GROUP BY 1")
	var logBytes int64
	if err := big.QueryRow(ctx, "SELECT pg_total_relation_size('events_log')").Scan(&logBytes); err != nil {
		t.Fatal(err)
	}
	big.Close(ctx)
	// The first connection to a database writes its relation cache file
	// (pg_internal.init), growing it: connect once before measuring.
	cfg.Database = "pinkie_test_small"
	small, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	small.Close(ctx)

	spec, ok := Lookup("postgres")
	if !ok || !spec.DefaultEnabled {
		t.Fatal("postgres not in All() or not on by default")
	}
	raw, _ := json.Marshal(map[string]any{"dsn": dsn, "top": 2, "databases": []string{"pinkie_test_small", "pinkie_test_big"}})
	c, err := spec.New(raw, Info{})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := c.(*Postgres).Collect(ctx, Env{Host: "h", Root: fstest.MapFS{}, Now: time.Now})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	got := map[string]events.Postgres{}
	for _, o := range obs {
		got[o.Object] = o.Data.(events.Postgres)
		if o.Kind != "postgres" || o.ID == "" {
			t.Errorf("observation %+v", o)
		}
	}
	if len(got) != 2 {
		t.Fatalf("databases reported: %v", got)
	}
	for name, d := range got {
		var size int64
		if err := admin.QueryRow(ctx, "SELECT pg_database_size($1)", name).Scan(&size); err != nil {
			t.Fatal(err)
		}
		if d.SizeBytes != size {
			t.Errorf("%s: size %d, pg_database_size %d", name, d.SizeBytes, size)
		}
		if d.Verdict != "ok" || d.ServerVersion == "" || d.XIDAge <= 0 {
			t.Errorf("%s: %+v", name, d)
		}
	}
	b, s := got["pinkie_test_big"], got["pinkie_test_small"]
	if b.SizeBytes-s.SizeBytes < logBytes/2 {
		t.Errorf("big %d is not %d bytes bigger than small %d", b.SizeBytes, logBytes, s.SizeBytes)
	}
	if len(b.Relations) != 2 || b.Relations[0] != (events.PostgresRelation{Schema: "public", Name: "events_log", Kind: "table", TotalBytes: logBytes}) ||
		b.Relations[1].Name != "summary" || b.Relations[1].Kind != "materialized_view" {
		t.Errorf("largest relations: %+v", b.Relations)
	}
	if len(s.Relations) != 0 {
		t.Errorf("empty database relations: %+v", s.Relations)
	}

	// A database that is not there.
	raw, _ = json.Marshal(map[string]any{"dsn": dsn, "databases": []string{"pinkie_test_nope"}})
	p, _ := NewPostgres(raw)
	if _, err := p.Collect(ctx, Env{Root: fstest.MapFS{}, Now: time.Now}); err == nil || !strings.Contains(err.Error(), "pinkie_test_nope not found") {
		t.Errorf("missing database: %v", err)
	}
}

// TestPostgresPasswordFile connects over TCP with a password read from
// password_file (needs a superuser connection to create the role, and
// password authentication on 127.0.0.1, as Debian's pg_hba.conf has).
func TestPostgresPasswordFile(t *testing.T) {
	_, admin := postgresTestConn(t)
	ctx := context.Background()
	var super bool
	if err := admin.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || !super {
		t.Skipf("needs a superuser connection to create a role (%v)", err)
	}
	pw := fmt.Sprintf("pw-%d", time.Now().UnixNano())
	postgresExec(t, admin, "DROP ROLE IF EXISTS pinkie_test_pw")
	postgresExec(t, admin, "CREATE ROLE pinkie_test_pw LOGIN PASSWORD '"+pw+"'")
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS pinkie_test_pw") })
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(map[string]any{"dsn": "host=127.0.0.1 user=pinkie_test_pw dbname=postgres sslmode=disable", "password_file": file, "databases": []string{"postgres"}, "top": 1})
	p, err := NewPostgres(raw)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := p.Collect(ctx, Env{Root: fstest.MapFS{}, Now: time.Now})
	if err != nil {
		if strings.Contains(err.Error(), "connect") && !strings.Contains(err.Error(), "password") {
			t.Skipf("no password login on 127.0.0.1: %v", err)
		}
		t.Fatalf("Collect with password file: %v", err)
	}
	if len(obs) != 1 || obs[0].Object != "postgres" {
		t.Errorf("observations %+v", obs)
	}
	if err := os.WriteFile(file, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = p.Collect(ctx, Env{Root: fstest.MapFS{}, Now: time.Now})
	if !errors.Is(err, ErrNoAccess) || !strings.Contains(err.Error(), "password authentication failed") || strings.Contains(err.Error(), pw) {
		t.Errorf("wrong password: %v", err)
	}
}

func TestPostgresBadInput(t *testing.T) {
	ctx := context.Background()
	// Default DSN and no socket directory: no local server.
	p, err := NewPostgres(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Collect(ctx, Env{Root: fstest.MapFS{}, Now: time.Now}); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("no local server: %v", err)
	}
	for _, raw := range []string{`{"dsn":"host=/x port=notaport"}`, `{"top":-1}`, `{"user":"x"}`} {
		if _, err := NewPostgres(json.RawMessage(raw)); err == nil {
			t.Errorf("options %s accepted", raw)
		}
	}
	// A configured server that is not there: an error, not "not applicable".
	p, _ = NewPostgres(json.RawMessage(`{"dsn":"host=` + t.TempDir() + ` user=postgres connect_timeout=2"}`))
	if _, err := p.Collect(ctx, Env{Root: fstest.MapFS{}, Now: time.Now}); err == nil || errors.Is(err, ErrNotApplicable) || !strings.Contains(err.Error(), "postgres connect") {
		t.Errorf("no server: %v", err)
	}
	// A password file that cannot be read.
	p, _ = NewPostgres(json.RawMessage(`{"dsn":"host=127.0.0.1","password_file":"/nonexistent/pw"}`))
	if _, err := p.Collect(ctx, Env{Root: fstest.MapFS{}, Now: time.Now}); err == nil || !strings.Contains(err.Error(), "password file") {
		t.Errorf("unreadable password file: %v", err)
	}
}

func TestJudgePostgres(t *testing.T) {
	for _, tt := range []struct {
		age  int64
		want string
	}{{1000, "ok"}, {999_999_999, "ok"}, {1_000_000_000, "warning"}, {1_600_000_000, "failing"}} {
		if v, _ := JudgePostgres(events.Postgres{XIDAge: tt.age}); v != tt.want {
			t.Errorf("age %d: %s, want %s", tt.age, v, tt.want)
		}
	}
}

// countingCollector tells collected after each Collect.
type countingCollector struct {
	Collector
	collected chan error
}

func (c countingCollector) Collect(ctx context.Context, env Env) ([]Observation, error) {
	obs, err := c.Collector.Collect(ctx, env)
	c.collected <- err
	return obs, err
}

// logRecords keeps every record logged.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// TestPostgresPeerRefusedWarnsOnce: the default connection (the local
// socket as postgres) from an agent that is not postgres is refused by
// the real server's peer authentication, as on a fresh Debian or NixOS
// host; the producer says so once, at warning, with how to grant access,
// and logs nothing at error however many cycles run.
func TestPostgresPeerRefusedWarnsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the PostgreSQL test")
	}
	p, err := NewPostgres(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := p.config("")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	cancel()
	if err == nil {
		conn.Close(context.Background())
		t.Skip("this PostgreSQL lets the test's user in as postgres: nothing is refused")
	}
	if postgresDenied(err, cfg.User) == nil {
		t.Skipf("no PostgreSQL refusing the login here (%v)", err)
	}
	logs := &logRecords{}
	c := countingCollector{Collector: p, collected: make(chan error, 10)}
	built := []Built{{Name: "postgres", Collector: c, Interval: 10 * time.Millisecond}}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Run(rctx, Env{Host: "goliath", Root: os.DirFS("/"), Now: time.Now, Log: slog.New(logs)}, built, nil)
		close(done)
	}()
	for i := 0; i < 3; i++ {
		select {
		case err := <-c.collected:
			if !errors.Is(err, ErrNoAccess) {
				t.Errorf("cycle %d: err = %v, want ErrNoAccess", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("cycle %d did not run within 30s", i)
		}
	}
	stop()
	<-done
	logs.mu.Lock()
	defer logs.mu.Unlock()
	var warns []string
	for _, r := range logs.recs {
		var msg strings.Builder
		msg.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { msg.WriteString(" " + a.Value.String()); return true })
		switch {
		case r.Level >= slog.LevelError:
			t.Errorf("logged at error: %s", msg.String())
		case r.Level == slog.LevelWarn:
			warns = append(warns, msg.String())
		}
	}
	if len(warns) != 1 {
		t.Fatalf("%d warnings over 3 cycles, want 1: %q", len(warns), warns)
	}
	for _, want := range []string{"Peer authentication failed", "services.pinkie.agent.postgres.access", "CREATE ROLE", "pg_monitor", `"enabled": false`} {
		if !strings.Contains(warns[0], want) {
			t.Errorf("the warning does not say %q: %s", want, warns[0])
		}
	}
}
