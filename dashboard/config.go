package dashboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/bounded"
	"github.com/pinkiefleet/pinkie/fleetview"
)

// Config is the "dashboard" section of the hub's --config.
type Config struct {
	// Disabled turns the dashboard off (HTTP keeps /metrics, /healthz).
	Disabled bool   `json:"disabled,omitempty"`
	Title    string `json:"title,omitempty"`
	// PublicURL is where users reach the dashboard (OIDC redirect URL,
	// the local login link).
	PublicURL string `json:"public_url,omitempty"`
	// LoopbackReaders lets loopback clients read without signing in.
	LoopbackReaders bool `json:"loopback_readers,omitempty"`
	// SecureCookies marks cookies Secure (HTTPS in front of the hub).
	SecureCookies  bool   `json:"secure_cookies,omitempty"`
	SessionKeyFile string `json:"session_key_file,omitempty"`
	SessionTTL     string `json:"session_ttl,omitempty"`
	WarnAfter      string `json:"warn_after,omitempty"`
	FailAfter      string `json:"fail_after,omitempty"`
	// Flake is the fleet's flake: deploys can be started from the
	// dashboard only when it is set.
	Flake  string `json:"flake,omitempty"`
	PushTo string `json:"push_to,omitempty"`
	// Expires: a host that has not started a deploy after this long skips
	// it (default 24h).
	Expires string      `json:"expires,omitempty"`
	OIDC    *OIDCConfig `json:"oidc,omitempty"`
}

// OIDCConfig is the identity provider of Config.
type OIDCConfig struct {
	Issuer           string   `json:"issuer"`
	ClientID         string   `json:"client_id"`
	ClientSecretFile string   `json:"client_secret_file,omitempty"`
	Scopes           []string `json:"scopes,omitempty"`
	GroupsClaim      string   `json:"groups_claim,omitempty"`
	OperatorGroups   []string `json:"operator_groups"`
	ReaderGroups     []string `json:"reader_groups,omitempty"`
}

// Settings is a Config read and checked: its durations parsed (with
// their defaults), its key and secret files read.
type Settings struct {
	Config Config
	// PublicURL is Config's without a trailing slash ("" when not set).
	PublicURL                        string
	SessionKey                       []byte
	SessionTTL, WarnAfter, FailAfter time.Duration
	Expires                          time.Duration
	// OIDC is the identity provider, but for its RedirectURL (which
	// depends on where the hub listens); nil for none.
	OIDC *OIDCOptions
}

// LoadConfig decodes the dashboard section raw strictly and checks it,
// reading its session key and client secret files (each at most
// maxSecret bytes). A disabled dashboard is read no further.
func LoadConfig(raw json.RawMessage, maxSecret int64) (Settings, error) {
	var s Settings
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s.Config); err != nil {
			return s, err
		}
	}
	c := s.Config
	if c.Disabled {
		return s, nil
	}
	dur := func(name, v string, def time.Duration) (time.Duration, error) {
		if v == "" {
			return def, nil
		}
		d, err := fleetview.ParseAge(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("%s: want a duration such as 12h or 7d, got %q", name, v)
		}
		return d, nil
	}
	var err error
	if s.SessionTTL, err = dur("session_ttl", c.SessionTTL, 12*time.Hour); err != nil {
		return s, err
	}
	if s.WarnAfter, err = dur("warn_after", c.WarnAfter, 7*24*time.Hour); err != nil {
		return s, err
	}
	if s.FailAfter, err = dur("fail_after", c.FailAfter, 30*24*time.Hour); err != nil {
		return s, err
	}
	if s.Expires, err = dur("expires", c.Expires, 24*time.Hour); err != nil {
		return s, err
	}
	s.SessionKey = NewSessionKey()
	if c.SessionKeyFile != "" {
		b, err := bounded.ReadPath(c.SessionKeyFile, maxSecret)
		if err != nil {
			return s, fmt.Errorf("session_key_file: %w", err)
		}
		if s.SessionKey = bytes.TrimSpace(b); len(s.SessionKey) < 32 {
			return s, fmt.Errorf("session_key_file %s: want at least 32 bytes", c.SessionKeyFile)
		}
	}
	s.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if o := c.OIDC; o != nil {
		secret := ""
		if o.ClientSecretFile != "" {
			b, err := bounded.ReadPath(o.ClientSecretFile, maxSecret)
			if err != nil {
				return s, fmt.Errorf("oidc.client_secret_file: %w", err)
			}
			secret = strings.TrimSpace(string(b))
		}
		if len(o.OperatorGroups) == 0 && len(o.ReaderGroups) == 0 {
			return s, errors.New("oidc: name operator_groups and/or reader_groups, or nobody may sign in")
		}
		s.OIDC = &OIDCOptions{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret,
			Scopes: o.Scopes, GroupsClaim: o.GroupsClaim, OperatorGroups: o.OperatorGroups, ReaderGroups: o.ReaderGroups}
	}
	return s, nil
}
