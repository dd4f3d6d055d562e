package producers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Config is the agent's configuration file: which producers run, how often,
// and with which options. Example:
//
//	{"producers": {
//	  "login":   {"file": "/var/log/auth.log"},
//	  "profile": {"interval": "6h"},
//	  "smart":   {"enabled": false}}}
type Config struct {
	// Producers holds the settings of the producers the file names;
	// producers it does not name keep their defaults.
	Producers map[string]ProducerConfig
}

// ProducerConfig is one producer's entry in the config file. "enabled" and
// "interval" are common to every producer; every other key is the
// producer's own option, handed to its Spec.New.
type ProducerConfig struct {
	// Enabled, when set, overrides Spec.DefaultEnabled.
	Enabled *bool
	// Interval, when non-zero, overrides the producer's default interval.
	Interval time.Duration
	// Options are the producer's own keys, as a JSON object (or nil).
	Options json.RawMessage
}

// Built is a producer ready to run.
type Built struct {
	Name string
	// Collector is set for scheduled producers, Streamer for streaming ones.
	Collector Collector
	Streamer  Streamer
	// Interval is how often the agent calls Collect (0 for streamers).
	Interval time.Duration
}

// configIntervalSetter is implemented by producers whose configured
// interval means something else than the Collect schedule (profile:
// the refresh period, while it checks for changes more often).
type configIntervalSetter interface {
	SetInterval(time.Duration)
}

// LoadConfig parses the agent's config file strictly: an unknown top-level
// key, an unknown producer, a non-boolean "enabled" or a bad "interval" is
// an error naming it. Producer options are checked by Build, which hands
// them to the producer.
func LoadConfig(b []byte) (Config, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&top); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config: unexpected data after the top-level object")
	}
	cfg := Config{Producers: map[string]ProducerConfig{}}
	for key := range top {
		if key != "producers" {
			return Config{}, fmt.Errorf("config: unknown key %q (known: producers)", key)
		}
	}
	raw, ok := top["producers"]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return cfg, nil
	}
	var prods map[string]json.RawMessage
	if err := json.Unmarshal(raw, &prods); err != nil {
		return Config{}, fmt.Errorf("config: producers: %w", err)
	}
	names := make([]string, 0, len(prods))
	for n := range prods {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := Lookup(name); !ok {
			return Config{}, fmt.Errorf("config: unknown producer %q (known: %s)", name, strings.Join(Names(), ", "))
		}
		pc, err := configParseProducer(prods[name])
		if err != nil {
			return Config{}, fmt.Errorf("config: producers.%s: %w", name, err)
		}
		cfg.Producers[name] = pc
	}
	return cfg, nil
}

// configParseProducer takes "enabled" and "interval" out of a producer's
// object and keeps the rest as its options.
func configParseProducer(raw json.RawMessage) (ProducerConfig, error) {
	var pc ProducerConfig
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return pc, fmt.Errorf("want an object: %w", err)
	}
	if v, ok := m["enabled"]; ok {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return pc, fmt.Errorf("enabled: want true or false, got %s", v)
		}
		pc.Enabled = &b
		delete(m, "enabled")
	}
	if v, ok := m["interval"]; ok {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return pc, fmt.Errorf("interval: want a duration string such as \"5m\", got %s", v)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return pc, fmt.Errorf("interval: %w", err)
		}
		if d <= 0 {
			return pc, fmt.Errorf("interval: %s is not positive", s)
		}
		pc.Interval = d
		delete(m, "interval")
	}
	if len(m) > 0 {
		b, err := json.Marshal(m)
		if err != nil {
			return pc, err
		}
		pc.Options = b
	}
	return pc, nil
}

// Build makes every enabled producer (by default those whose Spec is
// DefaultEnabled), in the order of All. An option a producer does not know,
// or an interval given to a streaming producer, is an error naming it.
func (c Config) Build(info Info) ([]Built, error) {
	var out []Built
	for _, spec := range All() {
		pc := c.Producers[spec.Name]
		enabled := spec.DefaultEnabled
		if pc.Enabled != nil {
			enabled = *pc.Enabled
		}
		if !enabled {
			continue
		}
		p, err := spec.New(pc.Options, info)
		if err != nil {
			return nil, fmt.Errorf("producer %s: %w", spec.Name, err)
		}
		b := Built{Name: spec.Name}
		switch p := p.(type) {
		case Collector:
			b.Collector = p
			b.Interval = p.Interval()
			if pc.Interval > 0 {
				if s, ok := p.(configIntervalSetter); ok {
					s.SetInterval(pc.Interval)
					b.Interval = p.Interval()
				} else {
					b.Interval = pc.Interval
				}
			}
		case Streamer:
			if pc.Interval > 0 {
				return nil, fmt.Errorf("producer %s: interval: a streaming producer runs continuously and takes no interval", spec.Name)
			}
			b.Streamer = p
		default:
			return nil, fmt.Errorf("producer %s: New returned %T, neither a Collector nor a Streamer", spec.Name, p)
		}
		out = append(out, b)
	}
	return out, nil
}

// EnableOnly turns on exactly the named producers and every other one
// off; no names leaves the configuration as it is.
func (c *Config) EnableOnly(names []string) {
	if len(names) == 0 {
		return
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	if c.Producers == nil {
		c.Producers = map[string]ProducerConfig{}
	}
	for _, s := range All() {
		pc := c.Producers[s.Name]
		on := want[s.Name]
		pc.Enabled = &on
		c.Producers[s.Name] = pc
	}
}
