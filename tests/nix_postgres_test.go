package tests

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// nixAgentModuleApply picks, from the agent module evaluated under the
// real module system (nixModuleEvalApply, with services.postgresql's
// options as nixpkgs declares them: identMap and authentication are lines,
// ensureUsers a list of submodules, so merges with the host's own settings
// and their priorities are the real ones), what the PostgreSQL and
// declared-services tests read.
const nixAgentModuleApply = `c: let svc = c.systemd.services; in {
  failed = c.failed;
  pg = { inherit (c.services.postgresql) identMap authentication; users = c.services.postgresql.ensureUsers; };
  grant = svc.pinkie-postgres-access.script or null;
  grantUser = svc.pinkie-postgres-access.serviceConfig.User or null;
  agentExec = svc.pinkie-agent.serviceConfig.ExecStart or "";
  producers = c.services.pinkie.agent.producers;
  agentConfig = c.agentConfig;
}`

type nixAgentEvaluated struct {
	Failed []string `json:"failed"`
	PG     struct {
		IdentMap       string `json:"identMap"`
		Authentication string `json:"authentication"`
		Users          []struct {
			Name          string         `json:"name"`
			EnsureClauses map[string]any `json:"ensureClauses"`
		} `json:"users"`
	} `json:"pg"`
	Grant     *string                   `json:"grant"`
	GrantUser *string                   `json:"grantUser"`
	AgentExec string                    `json:"agentExec"`
	Producers map[string]map[string]any `json:"producers"`
	// The agent's config file as the module renders it.
	AgentConfig json.RawMessage `json:"agentConfig"`
}

func nixEvalAgentModule(t *testing.T, set string) nixAgentEvaluated {
	t.Helper()
	var got nixAgentEvaluated
	nixModuleEvalApply(t, "./nixos/agent.nix", set, nixAgentModuleApply, &got, false)
	return got
}

// TestNixAgentPostgresAccess evaluates services.pinkie.agent with
// services.postgresql under nixpkgs' real module system: with PostgreSQL on,
// the agent's system user is mapped to a role of its own (ident map, a
// peer line before the host's own pg_hba lines, ensureUsers, a unit that
// grants pg_monitor) and the producer connects as that role; the host's
// own identMap and authentication lines merge with pinkie's; without
// PostgreSQL nothing is set; bad roles are refused.
func TestNixAgentPostgresAccess(t *testing.T) {
	const agent = `services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/goliath.nk";`
	tests := []struct {
		name, set   string
		failed      []string
		mapLine     string // in identMap
		hbaFirst    string // pg_hba's first line
		hbaHas      string
		role        string // ensureUsers, and the grant
		dsn         string // the producer's
		noPostgres  bool
		grantAbsent bool
	}{
		{name: "postgresql on, agent deploys (root)", set: `{ ` + agent + ` }; services.postgresql.enable = true; }`,
			mapLine: "pinkie root pinkie", hbaFirst: "local all pinkie peer map=pinkie", role: "pinkie",
			dsn: "host=/run/postgresql user=pinkie dbname=postgres sslmode=disable"},
		{name: "monitoring only (DynamicUser), own role, host's own pg_hba and map kept",
			set: `{ ` + agent + ` deploy.enable = false; postgres.role = "monitor"; }; services.postgresql = { enable = true;
			  identMap = "app alice app\n"; authentication = "local app app peer map=app\n"; }; }`,
			mapLine: "pinkie pinkie-agent monitor", hbaFirst: "local all monitor peer map=pinkie", hbaHas: "local app app peer map=app", role: "monitor",
			dsn: "host=/run/postgresql user=monitor dbname=postgres sslmode=disable"},
		{name: "the host's own dsn wins", set: `{ ` + agent + ` producers.postgres.dsn = "host=/srv/pg user=x"; }; services.postgresql.enable = true; }`,
			mapLine: "pinkie root pinkie", hbaFirst: "local all pinkie peer map=pinkie", role: "pinkie", dsn: "host=/srv/pg user=x"},
		{name: "no postgresql: nothing set", set: `{ ` + agent + ` }; }`, noPostgres: true, grantAbsent: true},
		{name: "access off", set: `{ ` + agent + ` postgres.access = false; }; services.postgresql.enable = true; }`, noPostgres: true, grantAbsent: true},
		{name: "bad role", set: `{ ` + agent + ` postgres.role = "Robert'); DROP"; }; services.postgresql.enable = true; }`,
			failed: []string{`services.pinkie.agent.postgres.role = \"Robert'); DROP\" is not a plain PostgreSQL role name`}},
		{name: "superuser role", set: `{ ` + agent + ` postgres.role = "postgres"; }; services.postgresql.enable = true; }`,
			failed: []string{"give the agent a role of its own"}},
		{name: "access without a server", set: `{ ` + agent + ` postgres.access = true; }; }`,
			failed: []string{"services.postgresql.enable is not"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := nixEvalAgentModule(t, tc.set)
			failed, _ := json.Marshal(got.Failed)
			for _, w := range tc.failed {
				if !strings.Contains(string(failed), w) {
					t.Errorf("failed assertions:\n  %s\nwant one containing %s", strings.Join(got.Failed, "\n  "), w)
				}
			}
			if len(tc.failed) > 0 {
				return
			}
			if len(got.Failed) > 0 {
				t.Fatalf("failed assertions:\n  %s", strings.Join(got.Failed, "\n  "))
			}
			if tc.noPostgres {
				if got.PG.IdentMap != "" || got.PG.Authentication != "" || len(got.PG.Users) > 0 || got.Producers["postgres"]["dsn"] != nil {
					t.Errorf("PostgreSQL settings without access: %+v, producers %v", got.PG, got.Producers)
				}
				if got.Grant != nil {
					t.Errorf("a grant unit without access")
				}
				return
			}
			if !strings.Contains(got.PG.IdentMap, tc.mapLine) {
				t.Errorf("identMap = %q, want a line %q", got.PG.IdentMap, tc.mapLine)
			}
			if first, _, _ := strings.Cut(got.PG.Authentication, "\n"); strings.TrimSpace(first) != tc.hbaFirst {
				t.Errorf("authentication starts %q, want %q (pg_hba.conf takes the first match):\n%s", first, tc.hbaFirst, got.PG.Authentication)
			}
			if tc.hbaHas != "" && !strings.Contains(got.PG.Authentication, tc.hbaHas) {
				t.Errorf("authentication lost the host's own line %q:\n%s", tc.hbaHas, got.PG.Authentication)
			}
			if len(got.PG.Users) != 1 || got.PG.Users[0].Name != tc.role || got.PG.Users[0].EnsureClauses["login"] != true {
				t.Errorf("ensureUsers = %+v, want %s with login", got.PG.Users, tc.role)
			}
			if got.Grant == nil || !strings.Contains(*got.Grant, `GRANT pg_monitor TO "`+tc.role+`"`) || got.GrantUser == nil || *got.GrantUser != "postgres" {
				t.Errorf("grant unit: script %v user %v, want GRANT pg_monitor TO %q as postgres", got.Grant, got.GrantUser, tc.role)
			}
			if dsn, _ := got.Producers["postgres"]["dsn"].(string); dsn != tc.dsn {
				t.Errorf("producer dsn = %q, want %q", dsn, tc.dsn)
			}
		})
	}
}

// TestNixAgentWatchesDeclaredServices: under the real module system the
// agent's systemd producer watches the services the host declares (the
// well-known ones it enables and pinkie.fleet.services) and its httpcheck
// producer checks the domains it serves; a host's own lists win.
func TestNixAgentWatchesDeclaredServices(t *testing.T) {
	const agent = `services.pinkie.agent = { enable = true; hubs = [ "nats-leaf://hub.lan:7422" ]; nkeyFile = "/run/agenix/goliath.nk";`
	tests := []struct {
		name, set string
		units     []any
		urls      []any
	}{
		{"declared services and domains", `{ ` + agent + ` }; services.postgresql.enable = true; pinkie.fleet.services = [ "shop" "backup.timer" ];
			services.nginx = { enable = true; virtualHosts."shop.example.org" = { forceSSL = true; locations."/".proxyPass = "http://10.233.1.2:8080"; }; virtualHosts."_" = { }; }; }`,
			[]any{"backup.timer", "nginx.service", "pinkie-agent.service", "postgresql.service", "shop.service"}, []any{"https://shop.example.org"}},
		{"the host's own lists win", `{ ` + agent + ` producers.systemd.units = [ "mine.service" ]; producers.httpcheck.urls = [ "http://127.0.0.1:8080/health" ]; };
			pinkie.fleet.services = [ "shop" ]; services.nginx = { enable = true; virtualHosts."a.example.org" = { }; }; }`,
			[]any{"mine.service"}, []any{"http://127.0.0.1:8080/health"}},
		{"nothing declared", `{ ` + agent + ` }; }`, []any{"pinkie-agent.service"}, []any{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := nixEvalAgentModule(t, tc.set)
			if len(got.Failed) > 0 {
				t.Fatalf("failed assertions:\n  %s", strings.Join(got.Failed, "\n  "))
			}
			if fmt.Sprint(got.Producers["systemd"]["units"]) != fmt.Sprint(tc.units) {
				t.Errorf("systemd units = %v, want %v", got.Producers["systemd"]["units"], tc.units)
			}
			if fmt.Sprint(got.Producers["httpcheck"]["urls"]) != fmt.Sprint(tc.urls) {
				t.Errorf("httpcheck urls = %v, want %v", got.Producers["httpcheck"]["urls"], tc.urls)
			}
		})
	}
}
