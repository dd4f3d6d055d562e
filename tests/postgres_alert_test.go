package tests

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/streams"
)

// TestPostgresSizeAlertRealDatabase: a real agent reads a real PostgreSQL
// database that is over its own limit (alerts.postgres.databases) while
// the default limit holds the rest; the hub fires postgres.size for that
// database only, naming its limit, and /metrics/fleet shows the database's
// size as the agent reported it and the alert firing.
func TestPostgresSizeAlertRealDatabase(t *testing.T) {
	const dsn = "host=/var/run/postgresql user=root dbname=postgres sslmode=disable"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Skipf("no PostgreSQL with a root role here (scripts/test starts one and creates it): %v", err)
	}
	defer admin.Close(context.Background())
	db := fmt.Sprintf("pinkie_alert_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
	})
	conn, err := pgx.Connect(ctx, strings.Replace(dsn, "dbname=postgres", "dbname="+db, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TABLE blob (id int, body text)",
		"INSERT INTO blob SELECT g, md5(g::text) || repeat('x', 500) FROM generate_series(1, 20000) g"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close(ctx)
	var size int64
	if err := admin.QueryRow(ctx, "SELECT pg_database_size($1)", db).Scan(&size); err != nil {
		t.Fatal(err)
	}
	const limit = 4 << 20 // 4 MiB: the new database (~17 MiB) is over it, postgres (~7 MiB) under the default
	if size <= limit {
		t.Fatalf("the test database is only %d bytes", size)
	}

	f := newFleet(t, "goliath")
	hubConfig := filepath.Join(t.TempDir(), "hub.json")
	writeFile(t, hubConfig, fmt.Sprintf(`{"alerts": {"startup_grace": "0s", "postgres": {"max_bytes": 1073741824, "databases": {%q: %d}}}}`, db, limit))
	f.startHub("--config", hubConfig)
	agentConfig := filepath.Join(t.TempDir(), "agent.json")
	writeFile(t, agentConfig, fmt.Sprintf(`{"producers": {"postgres": {"dsn": %q, "databases": ["postgres", %q], "top": 2}}}`, dsn, db))
	f.startAgent("goliath", t.TempDir(), "", "--producers", "postgres", "--config", agentConfig)
	c := f.client()

	var fired []storedEvent
	deadline := time.Now().Add(60 * time.Second)
	for len(fired) == 0 {
		fired = readStream(t, c.JS, streams.AlertsStream, "pinkie.alert.goliath.postgres.size")
		if time.Now().After(deadline) {
			t.Fatalf("no postgres.size alert in 60s; HOSTS has %d postgres events", len(readStream(t, c.JS, streams.HostsStream, "pinkie.host.goliath.postgres.>")))
		}
		if len(fired) == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	var a events.Alert
	if err := fired[0].event.DataAs(&a); err != nil {
		t.Fatal(err)
	}
	if a.Object != db || a.Status != "firing" || !strings.Contains(a.Summary, "(limit 4.0 MiB)") {
		t.Errorf("alert %+v, want postgres.size firing for %s naming its 4 MiB limit", a, db)
	}
	// The postgres database, under the default limit, does not fire.
	waitAlerter(t, c, 30*time.Second)
	for _, e := range readStream(t, c.JS, streams.AlertsStream, "pinkie.alert.goliath.postgres.size") {
		var x events.Alert
		if e.event.DataAs(&x) == nil && x.Object != db {
			t.Errorf("postgres.size fired for %s: %s", x.Object, x.Summary)
		}
	}
	// What the agent reported is what /metrics/fleet shows.
	var reported events.Postgres
	for _, e := range readStream(t, c.JS, streams.HostsStream, "pinkie.host.goliath.postgres.>") {
		var p events.Postgres
		if e.event.DataAs(&p) == nil && p.Database == db {
			reported = p
		}
	}
	if reported.SizeBytes < size*9/10 || reported.SizeBytes > size*11/10 {
		t.Errorf("the agent reported %d bytes for %s, pg_database_size says %d", reported.SizeBytes, db, size)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, body := fetchFleetMetrics(t, f.httpURL()+"/metrics/fleet")
		mfs := map[string]bool{}
		if code == http.StatusOK {
			m := parseExposition(t, body)
			got, ok := sample(m, "pinkie_postgres_database_size_bytes", map[string]string{"host": "goliath", "database": db})
			mfs["size"] = ok && got == float64(reported.SizeBytes)
			firing, ok := sample(m, "pinkie_alert_firing", map[string]string{"host": "goliath", "rule": "postgres.size", "object": db})
			mfs["alert"] = ok && firing == 1
		}
		if mfs["size"] && mfs["alert"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics/fleet lacks %s's size %d or its firing alert (%v):\n%s", db, reported.SizeBytes, mfs, grepLines(body, "postgres"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
