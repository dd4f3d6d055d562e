package producers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os/user"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/events"
)

// Postgres reports every PostgreSQL database's size (pg_database_size),
// its transaction id age and its largest relations
// (pg_total_relation_size: with indexes and TOAST). By default it connects
// over the local socket in /var/run/postgresql as the postgres user (peer
// authentication: the agent runs as, or is mapped to, postgres); a DSN and
// a password file are configurable. The password is read from the file at
// every collection, never kept in the options or logged.
type Postgres struct {
	every time.Duration
	opts  postgresOptions
}

type postgresOptions struct {
	// DSN is a libpq connection string or URL (default: the local socket
	// as postgres).
	DSN string `json:"dsn"`
	// PasswordFile holds the password (one line), if one is needed.
	PasswordFile string `json:"password_file"`
	// Top is how many of the largest relations to report per database.
	Top int `json:"top"`
	// Databases limits the report to these databases (default: every
	// database that accepts connections, templates left out).
	Databases []string `json:"databases"`
}

const postgresDefaultDSN = "host=/var/run/postgresql user=postgres dbname=postgres sslmode=disable"

// Transaction id age thresholds: PostgreSQL refuses writes about 2^31
// transactions after the last freeze; autovacuum normally keeps the age
// under autovacuum_freeze_max_age (200 million).
const (
	postgresXIDWarn = 1_000_000_000
	postgresXIDFail = 1_600_000_000
)

func postgresSpec() Spec {
	return Spec{Name: "postgres", Doc: "PostgreSQL database sizes and largest relations (pgx) with a verdict", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) {
			return NewPostgres(raw)
		}}
}

// NewPostgres builds the postgres producer from its options.
func NewPostgres(raw json.RawMessage) (*Postgres, error) {
	o := postgresOptions{Top: 10}
	if err := DecodeOptions(raw, &o); err != nil {
		return nil, err
	}
	if o.Top < 0 || o.Top > 1000 {
		return nil, fmt.Errorf("options: top %d is out of range 0-1000", o.Top)
	}
	if o.DSN != "" {
		if _, err := pgx.ParseConfig(o.DSN); err != nil {
			return nil, fmt.Errorf("options: dsn: %w", err)
		}
	}
	return &Postgres{every: time.Hour, opts: o}, nil
}

func (p *Postgres) Name() string            { return "postgres" }
func (p *Postgres) Interval() time.Duration { return p.every }

// config is the connection configuration for database db ("" keeps the
// DSN's).
func (p *Postgres) config(db string) (*pgx.ConnConfig, error) {
	dsn := p.opts.DSN
	if dsn == "" {
		dsn = postgresDefaultDSN
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres dsn: %w", err)
	}
	if p.opts.PasswordFile != "" {
		b, err := bounded.ReadPath(p.opts.PasswordFile, maxSmallFile)
		if err != nil {
			return nil, fmt.Errorf("postgres password file: %w", err)
		}
		cfg.Password = strings.TrimRight(string(b), "\r\n")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if db != "" {
		cfg.Database = db
	}
	return cfg, nil
}

func (p *Postgres) Collect(ctx context.Context, env Env) ([]Observation, error) {
	if p.opts.DSN == "" {
		// The default is the local server: no socket directory, no server.
		_, err1 := fs.Stat(env.Root, "var/run/postgresql")
		_, err2 := fs.Stat(env.Root, "run/postgresql")
		if errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist) {
			return nil, ErrNotApplicable
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cfg, err := p.config("")
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		if denied := postgresDenied(err, cfg.User); denied != nil {
			return nil, denied
		}
		return nil, fmt.Errorf("postgres connect: %w", err)
	}
	defer conn.Close(context.Background())
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return nil, fmt.Errorf("postgres server_version: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT datname, pg_database_size(oid), age(datfrozenxid)
		FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname`)
	if err != nil {
		return nil, fmt.Errorf("postgres list databases: %w", err)
	}
	var dbs []events.Postgres
	for rows.Next() {
		d := events.Postgres{ServerVersion: version, Relations: []events.PostgresRelation{}}
		var xid int32
		if err := rows.Scan(&d.Database, &d.SizeBytes, &xid); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres list databases: %w", err)
		}
		d.XIDAge = int64(xid)
		dbs = append(dbs, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres list databases: %w", err)
	}
	want, missing := map[string]bool{}, map[string]bool{}
	for _, n := range p.opts.Databases {
		want[n], missing[n] = true, true
	}
	var obs []Observation
	var errs []error
	for _, d := range dbs {
		if len(want) > 0 && !want[d.Database] {
			continue
		}
		delete(missing, d.Database)
		if p.opts.Top > 0 {
			rels, err := p.relations(ctx, d.Database)
			if err != nil {
				errs = append(errs, err)
			}
			d.Relations = append(d.Relations, rels...)
		}
		d.Verdict, d.Reasons = JudgePostgres(d)
		obs = append(obs, Observation{Kind: "postgres", Object: d.Database, Data: d, ID: storageEventID(env.Host, "postgres", d.Database, d)})
	}
	for n := range missing {
		errs = append(errs, fmt.Errorf("postgres: database %s not found (or it does not accept connections)", n))
	}
	return obs, errors.Join(errs...)
}

// postgresDenied turns a refused login (SQLSTATE class 28: peer or
// password authentication failed, no such role) into ErrNoAccess with the
// ways to grant it; nil for other errors. The message is the same at every
// collection, so the agent says it once.
func postgresDenied(err error, role string) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !strings.HasPrefix(pe.Code, "28") {
		return nil
	}
	osUser := "the agent's user"
	if u, uerr := user.Current(); uerr == nil {
		osUser = u.Username
	}
	return fmt.Errorf("%w: PostgreSQL refused the agent (%s) as role %q: %s (SQLSTATE %s). "+
		"On NixOS, services.pinkie.agent.postgres.access (on with services.postgresql.enable) maps the agent to a read-only role of its own; "+
		"elsewhere create one and let peer authentication take it, e.g. sudo -u postgres psql -c 'CREATE ROLE %s LOGIN IN ROLE pg_monitor', "+
		"then set the postgres producer's dsn to \"host=/var/run/postgresql user=%s dbname=postgres\"; "+
		"or give it a dsn and password_file; or turn it off (\"postgres\": {\"enabled\": false})",
		ErrNoAccess, osUser, role, pe.Message, pe.Code, osUser, osUser)
}

// relations lists the largest tables and materialized views of one
// database, with their indexes and TOAST.
func (p *Postgres) relations(ctx context.Context, db string) ([]events.PostgresRelation, error) {
	cfg, err := p.config(db)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres connect to %s: %w", db, err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname, c.relkind::text, pg_total_relation_size(c.oid)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
		ORDER BY 4 DESC, 1, 2 LIMIT $1`, p.opts.Top)
	if err != nil {
		return nil, fmt.Errorf("postgres %s relations: %w", db, err)
	}
	defer rows.Close()
	var out []events.PostgresRelation
	for rows.Next() {
		var r events.PostgresRelation
		var kind string
		if err := rows.Scan(&r.Schema, &r.Name, &kind, &r.TotalBytes); err != nil {
			return out, fmt.Errorf("postgres %s relations: %w", db, err)
		}
		r.Kind = map[string]string{"r": "table", "m": "materialized_view", "p": "partitioned_table"}[kind]
		if r.Kind == "" {
			r.Kind = "other"
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("postgres %s relations: %w", db, err)
	}
	return out, nil
}

// JudgePostgres is the verdict over one database: sizes are facts (alert
// rules predict growth), the transaction id age is judged: a warning from
// 1 billion (autovacuum is not freezing it), failing from 1.6 billion
// (PostgreSQL stops accepting writes near 2.1 billion).
func JudgePostgres(d events.Postgres) (string, []string) {
	var j storageJudgement
	switch {
	case d.XIDAge >= postgresXIDFail:
		j.fail("transaction id age is %d: PostgreSQL stops writes near 2147483647; VACUUM FREEZE the database now", d.XIDAge)
	case d.XIDAge >= postgresXIDWarn:
		j.warn("transaction id age is %d: autovacuum is not keeping up with freezing (warning from %d)", d.XIDAge, postgresXIDWarn)
	}
	return j.result()
}
