package streams

import (
	"strings"
	"testing"
)

func TestParseRoutesAndClusterSize(t *testing.T) {
	tests := []struct {
		name    string
		own     string
		routes  []string
		size    int
		wantErr string
	}{
		{name: "three listed, own among them", own: "127.0.0.1:6222",
			routes: []string{"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"}, size: 3},
		{name: "two others, own not listed", own: "127.0.0.1:6222",
			routes: []string{"nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"}, size: 3},
		{name: "duplicates count once", own: "127.0.0.1:6222",
			routes: []string{"nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6223"}, size: 2},
		{name: "wildcard listener finds itself by its addresses", own: "0.0.0.0:6222",
			routes: []string{"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223"}, size: 2},
		{name: "no port", own: "127.0.0.1:6222", routes: []string{"nats-route://hub1"}, wantErr: "want nats-route://HOST:PORT"},
		{name: "wrong scheme", own: "127.0.0.1:6222", routes: []string{"http://hub1:6222"}, wantErr: `unknown scheme "http"`},
		{name: "credential in the URL", own: "127.0.0.1:6222", routes: []string{"nats-route://u:p@hub1:6222"}, wantErr: "leave the credential out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			us, err := parseRoutes(tt.routes, "secretsecretsecret")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseRoutes(%q) = %v, want an error with %q", tt.routes, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range us {
				if p, _ := u.User.Password(); u.User.Username() != RouteUser || p != "secretsecretsecret" {
					t.Errorf("route %s lacks the route credential", u.Redacted())
				}
			}
			if got := clusterSize(tt.own, us); got != tt.size {
				t.Errorf("clusterSize = %d, want %d", got, tt.size)
			}
		})
	}
}

func TestClusterSecretMadeOnce(t *testing.T) {
	dir := t.TempDir()
	a, err := loadClusterSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadClusterSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || len(a) < 32 {
		t.Fatalf("route password changed or too short: %q then %q", a, b)
	}
}
