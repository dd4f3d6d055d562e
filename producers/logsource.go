package producers

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/pinkiefleet/pinkie/producers/logfollow"
)

// The options of the producers that follow a log (login, fail2ban); the
// following itself is package logfollow.

// LogSourceOptions are the options of every producer that follows a log
// (login, fail2ban): where to read and how.
type LogSourceOptions struct {
	// File is the log file to follow (the producer's default when empty
	// and there is no journal).
	File string `json:"file,omitempty"`
	// Journal reads the journal with journalctl.
	Journal bool `json:"journal,omitempty"`
	// Poll is how often a file is checked for growth ("1s").
	Poll string `json:"poll,omitempty"`
	// Follow false reads to the end of the log and stops (pinkie collect).
	Follow *bool `json:"follow,omitempty"`
	// FromStart reads the log from its start the first time (no saved
	// position); by default a new follower starts at the log's end.
	FromStart bool `json:"from_start,omitempty"`
}

// decodeLogSourceOptions decodes and checks a log producer's options.
func decodeLogSourceOptions(raw json.RawMessage) (LogSourceOptions, error) {
	var o LogSourceOptions
	if err := DecodeOptions(raw, &o); err != nil {
		return o, err
	}
	if o.File != "" && o.Journal {
		return o, fmt.Errorf("options: file and journal exclude each other")
	}
	if o.Poll != "" {
		if d, err := time.ParseDuration(o.Poll); err != nil || d <= 0 {
			return o, fmt.Errorf("options: poll: want a positive duration, got %q", o.Poll)
		}
	}
	return o, nil
}

// source resolves where to read on this host (defaults, journal or file).
func (o LogSourceOptions) source(env Env, defaults, matches []string, preferFile bool) (logfollow.Options, bool) {
	lo, ok := logfollow.Source(followEnv(env), o.File, o.Journal, o.Poll, o.Follow, defaults, matches, preferFile)
	lo.FromStart = o.FromStart
	return lo, ok
}

// followEnv is what the log follower may use of a producer's Env.
func followEnv(env Env) logfollow.Env {
	return logfollow.Env{Root: env.Root, Run: env.Run, State: env.State, Log: env.Log}
}
