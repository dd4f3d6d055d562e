package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/producers"
)

// pgCluster is a throwaway PostgreSQL cluster of the real server binaries:
// its own data directory and unix socket directory, run as the postgres
// OS user, no TCP.
type pgCluster struct {
	bin, data, sock string
	port            int
	uid, gid        uint32
}

// pgBinDir finds the directory of PostgreSQL's server binaries (initdb,
// pg_ctl, psql), or skips.
func pgBinDir(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(r), "initdb")); err == nil {
				return filepath.Dir(r)
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	t.Skip("PostgreSQL's server binaries are not installed (apt-get install -y postgresql)")
	return ""
}

// startPGCluster runs initdb and pg_ctl start as the postgres OS user, with
// pg_hba.conf and pg_ident.conf as given; the cluster is stopped at the
// end of the test.
func startPGCluster(t *testing.T, hba, ident string) *pgCluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the server runs as the postgres user, and the module maps root")
	}
	bin := pgBinDir(t)
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("no postgres OS user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Below /tmp, not t.TempDir(): the postgres user must reach it.
	dir, err := os.MkdirTemp("", "pinkie-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &pgCluster{bin: bin, data: filepath.Join(dir, "data"), sock: filepath.Join(dir, "sock"), port: 5432, uid: uint32(uid), gid: uint32(gid)}
	for _, d := range []string{dir, c.data, c.sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := c.asPostgres(t, "initdb", "-D", c.data, "-U", "postgres", "--auth-local=peer", "--auth-host=reject"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.writeAuth(t, hba, ident)
	if out, err := c.asPostgres(t, "pg_ctl", "-D", c.data, "-w", "-t", "30", "-l", filepath.Join(dir, "server.log"),
		"-o", fmt.Sprintf("-k %s -p %d -c listen_addresses=''", c.sock, c.port), "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		if out, err := c.asPostgres(t, "pg_ctl", "-D", c.data, "-w", "-m", "immediate", "stop"); err != nil {
			t.Errorf("pg_ctl stop: %v\n%s", err, out)
		}
	})
	return c
}

// writeAuth writes pg_hba.conf and pg_ident.conf (a running server reads
// them again on reload).
func (c *pgCluster) writeAuth(t *testing.T, hba, ident string) {
	t.Helper()
	for name, text := range map[string]string{"pg_hba.conf": hba, "pg_ident.conf": ident} {
		p := filepath.Join(c.data, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, int(c.uid), int(c.gid)); err != nil {
			t.Fatal(err)
		}
	}
}

// asPostgres runs one of PostgreSQL's programs as the postgres OS user,
// with the cluster's socket as PGHOST.
func (c *pgCluster) asPostgres(t *testing.T, prog string, args ...string) (string, error) {
	t.Helper()
	return c.asPostgresStdin(t, "", filepath.Join(c.bin, prog), args...)
}

func (c *pgCluster) asPostgresStdin(t *testing.T, stdin, prog string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid}}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + c.bin + ":/usr/bin:/bin", "PGHOST=" + c.sock, "PGPORT=" + strconv.Itoa(c.port), "HOME=/tmp", "LC_ALL=C"}
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// psql runs SQL as the postgres superuser.
func (c *pgCluster) psql(t *testing.T, sql string) string {
	t.Helper()
	out, err := c.asPostgres(t, "psql", "-v", "ON_ERROR_STOP=1", "-tA", "-d", "postgres", "-c", sql)
	if err != nil {
		t.Fatalf("psql %s: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(out)
}

// nixosDefaultHBA is what nixpkgs' postgresql module appends (mkAfter) to
// services.postgresql.authentication: peer on the socket, passwords on
// loopback.
const nixosDefaultHBA = "local all all peer\nhost all all 127.0.0.1/32 md5\nhost all all ::1/128 md5\n"

// TestNixPostgresAccessRealServer: the agent module with
// services.postgresql.enable, evaluated under the real module system, gives
// a real PostgreSQL what it needs for the agent to read it. Its pg_hba and
// pg_ident lines go to a throwaway cluster (after them, NixOS's default
// lines), the role is created as postgresql-setup does for ensureUsers and
// granted by the module's own grant script (run as postgres, as its unit
// does), and `pinkie collect postgres` with the config file the module
// renders (its socket directory moved to the test's) reads the database
// sizes as root over peer authentication, with no password. Then, with
// the module's lines gone (access off), the real producer is refused and
// says so with one warning over several cycles, and nothing at error.
func TestNixPostgresAccessRealServer(t *testing.T) {
	got := nixEvalAgentModule(t, `{ services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/goliath.nk"; };
	  services.postgresql.enable = true; }`)
	if len(got.Failed) > 0 || got.Grant == nil || len(got.PG.Users) != 1 {
		t.Fatalf("the module set up no PostgreSQL access: failed %q, grant %v, users %+v", got.Failed, got.Grant, got.PG.Users)
	}
	c := startPGCluster(t, got.PG.Authentication+nixosDefaultHBA, got.PG.IdentMap)

	// ensureUsers, as nixpkgs' postgresql-setup creates them.
	for _, u := range got.PG.Users {
		if c.psql(t, fmt.Sprintf("SELECT 1 FROM pg_roles WHERE rolname = '%s'", u.Name)) != "1" {
			c.psql(t, fmt.Sprintf(`CREATE USER "%s"`, u.Name))
		}
		for clause, on := range u.EnsureClauses {
			switch on {
			case true:
				c.psql(t, fmt.Sprintf(`ALTER ROLE "%s" %s`, u.Name, strings.ToUpper(clause)))
			case false:
				c.psql(t, fmt.Sprintf(`ALTER ROLE "%s" NO%s`, u.Name, strings.ToUpper(clause)))
			}
		}
	}
	// The grant unit: its script, as its User, with psql on its path.
	if out, err := c.asPostgresStdin(t, *got.Grant, "/bin/sh", "-e"); err != nil {
		t.Fatalf("the module's grant script: %v\n%s\n%s", err, out, *got.Grant)
	}
	role := got.PG.Users[0].Name
	if m := c.psql(t, fmt.Sprintf("SELECT pg_has_role('%s', 'pg_monitor', 'MEMBER')", role)); m != "t" {
		t.Fatalf("after the grant script, %s is a member of pg_monitor: %s", role, m)
	}
	c.psql(t, "CREATE DATABASE shop")
	c.psql(t, "CREATE ROLE app LOGIN")

	// The module's config file, pointed at the test's socket directory.
	var cfg map[string]map[string]map[string]any
	if err := json.Unmarshal(got.AgentConfig, &cfg); err != nil {
		t.Fatalf("the rendered agent config: %v\n%s", err, got.AgentConfig)
	}
	dsn, _ := cfg["producers"]["postgres"]["dsn"].(string)
	if !strings.Contains(dsn, "host=/run/postgresql ") {
		t.Fatalf("the module's dsn %q does not use NixOS's socket directory", dsn)
	}
	testDSN := strings.Replace(dsn, "host=/run/postgresql ", fmt.Sprintf("host=%s port=%d ", c.sock, c.port), 1)
	writeConfig := func(dsn string) string {
		cfg["producers"]["postgres"]["dsn"] = dsn
		b, _ := json.Marshal(cfg)
		f := filepath.Join(t.TempDir(), "pinkie-agent.json")
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	cfgFile := writeConfig(testDSN)

	cmd := exec.Command(pinkieBin, "collect", "postgres", "--config", cfgFile, "--json", "--name", "goliath")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("pinkie collect postgres as root with the module's dsn %q: %v\n%s", testDSN, err, stderr.String())
	}
	sizes := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var e struct {
			Type string `json:"type"`
			Data struct {
				Database  string  `json:"database"`
				SizeBytes float64 `json:"size_bytes"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		sizes[e.Data.Database] = e.Data.SizeBytes
	}
	for _, db := range []string{"postgres", "shop"} {
		if sizes[db] <= 0 {
			t.Errorf("database %s: size %v; the producer read %v\n%s", db, sizes[db], sizes, stdout.String())
		}
	}

	// Access off: the host's pg_hba and pg_ident without pinkie's lines.
	c.writeAuth(t, nixosDefaultHBA, "")
	if out, err := c.asPostgres(t, "pg_ctl", "-D", c.data, "reload"); err != nil {
		t.Fatalf("pg_ctl reload: %v\n%s", err, out)
	}
	warns, errs := runPostgresProducer(t, cfgFile, 3)
	if len(errs) > 0 {
		t.Errorf("logged at error: %q", errs)
	}
	if len(warns) != 1 {
		t.Fatalf("%d warnings over 3 cycles, want 1: %q", len(warns), warns)
	}
	for _, want := range []string{`Peer authentication failed for user "` + role + `"`, "services.pinkie.agent.postgres.access"} {
		if !strings.Contains(warns[0], want) {
			t.Errorf("the warning does not say %s: %s", want, warns[0])
		}
	}
}

// runPostgresProducer runs the agent's producer runner (producers.Run) over
// the postgres producer that the agent config file builds, for cycles
// collections, and returns what it logged at warning and at error.
func runPostgresProducer(t *testing.T, cfgFile string, cycles int) (warns, errs []string) {
	t.Helper()
	raw, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := producers.LoadConfig(raw)
	if err != nil {
		t.Fatalf("load %s: %v", cfgFile, err)
	}
	built, err := cfg.Build(producers.Info{Instance: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var pg []producers.Built
	collected := make(chan error, cycles+10)
	for _, b := range built {
		if b.Name == "postgres" {
			b.Collector = cycleCollector{Collector: b.Collector, collected: collected}
			b.Interval = 10 * time.Millisecond
			pg = append(pg, b)
		}
	}
	if len(pg) != 1 {
		t.Fatalf("the config builds %d postgres producers", len(pg))
	}
	var logs syncBuffer
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		producers.Run(ctx, producers.Env{Host: "goliath", Root: os.DirFS("/"), Now: time.Now, Log: slog.New(slog.NewJSONHandler(&logs, nil))}, pg, nil)
		close(done)
	}()
	for i := 0; i < cycles; i++ {
		select {
		case err := <-collected:
			if !errors.Is(err, producers.ErrNoAccess) {
				t.Errorf("cycle %d: err = %v, want ErrNoAccess", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("cycle %d did not run within 30s", i)
		}
	}
	stop()
	<-done
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var r struct{ Level, Msg, Err string }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		switch r.Level {
		case "WARN":
			warns = append(warns, r.Msg+": "+r.Err)
		case "ERROR":
			errs = append(errs, r.Msg+": "+r.Err)
		}
	}
	return warns, errs
}

// cycleCollector tells collected after each Collect.
type cycleCollector struct {
	producers.Collector
	collected chan error
}

func (c cycleCollector) Collect(ctx context.Context, env producers.Env) ([]producers.Observation, error) {
	obs, err := c.Collector.Collect(ctx, env)
	c.collected <- err
	return obs, err
}
