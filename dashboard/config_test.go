package dashboard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	short, long := filepath.Join(dir, "short"), filepath.Join(dir, "long")
	if err := os.WriteFile(short, []byte("too short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(long, []byte(strings.Repeat("k", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("defaults", func(t *testing.T) {
		s, err := LoadConfig(nil, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		if s.SessionTTL != 12*time.Hour || s.WarnAfter != 7*24*time.Hour || s.FailAfter != 30*24*time.Hour || s.Expires != 24*time.Hour || len(s.SessionKey) < 32 || s.OIDC != nil {
			t.Errorf("defaults: %+v", s)
		}
	})
	t.Run("set", func(t *testing.T) {
		s, err := LoadConfig([]byte(`{"public_url":"https://dash.example/","warn_after":"2d","session_key_file":"`+long+`",
			"oidc":{"issuer":"https://id.example","client_id":"pinkie","reader_groups":["ops"]}}`), 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		if s.PublicURL != "https://dash.example" || s.WarnAfter != 48*time.Hour || string(s.SessionKey) != strings.Repeat("k", 40) || s.OIDC == nil || s.OIDC.ClientID != "pinkie" {
			t.Errorf("set: %+v", s)
		}
	})
	for _, tc := range []struct{ name, raw, want string }{
		{"unknown key", `{"titel":"x"}`, `unknown field "titel"`},
		{"bad duration", `{"fail_after":"soon"}`, `fail_after: want a duration such as 12h or 7d, got "soon"`},
		{"short key", `{"session_key_file":"` + short + `"}`, "session_key_file " + short + ": want at least 32 bytes"},
		{"no groups", `{"oidc":{"issuer":"https://id.example","client_id":"pinkie"}}`, "oidc: name operator_groups and/or reader_groups, or nobody may sign in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LoadConfig([]byte(tc.raw), 1<<16); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
	if s, err := LoadConfig([]byte(`{"disabled":true,"fail_after":"soon"}`), 1<<16); err != nil || !s.Config.Disabled {
		t.Errorf("disabled: %+v %v, want disabled and not read further", s, err)
	}
}
