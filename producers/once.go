package producers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Collected is one observation of a producer run once (pinkie collect).
type Collected struct {
	Producer string
	Obs      Observation
}

// RunOnce runs one producer once: a collector's Collect, or a streamer
// until its source is read (at most a minute).
func RunOnce(ctx context.Context, env Env, b Built) ([]Collected, error) {
	var out []Collected
	if b.Collector != nil {
		obs, err := b.Collector.Collect(ctx, env)
		for _, o := range obs {
			out = append(out, Collected{b.Name, o})
		}
		return out, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := b.Streamer.Stream(ctx, env, func(_ context.Context, o Observation) error {
		out = append(out, Collected{b.Name, o})
		return nil
	})
	return out, err
}

// ErrFromOneStreamer is BuildOnce given a saved log when not exactly one
// producer, a streaming one, is named.
var ErrFromOneStreamer = errors.New("a saved log feeds one streaming producer: name it (login or fail2ban)")

// BuildOnce builds the producers to run once (pinkie collect): those named
// (none: those on by default), each streaming one set to read its source
// to its end and stop. from, when set, is the saved log (an absolute path)
// that the one named producer, a streaming one, reads instead of its
// source. It changes c's producer options.
func (c Config) BuildOnce(names []string, from string, info Info) ([]Built, error) {
	c.EnableOnly(names)
	built, err := c.Build(info)
	if err != nil {
		return nil, err
	}
	if c.Producers == nil {
		c.Producers = map[string]ProducerConfig{}
	}
	var streamers []string
	for _, b := range built {
		if b.Streamer != nil {
			streamers = append(streamers, b.Name)
			c.Producers[b.Name] = c.Producers[b.Name].WithOption("follow", false)
		}
	}
	if from != "" {
		if len(streamers) != 1 || len(names) != 1 {
			return nil, ErrFromOneStreamer
		}
		c.Producers[streamers[0]] = c.Producers[streamers[0]].WithOption("file", from)
	}
	if len(streamers) == 0 {
		return built, nil
	}
	return c.Build(info)
}

// WithOption returns the producer's configuration with key set in its
// options.
func (pc ProducerConfig) WithOption(key string, v any) ProducerConfig {
	m := map[string]any{}
	if len(pc.Options) > 0 {
		_ = json.Unmarshal(pc.Options, &m)
	}
	m[key] = v
	pc.Options, _ = json.Marshal(m)
	return pc
}

// Verdict reads the verdict and its reasons that storage observations
// carry in their data ("" when there is none).
func Verdict(data any) (string, []string) {
	var m map[string]any
	if b, err := json.Marshal(data); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	v, _ := m["verdict"].(string)
	var reasons []string
	if l, ok := m["reasons"].([]any); ok {
		for _, r := range l {
			reasons = append(reasons, fmt.Sprint(r))
		}
	}
	return v, reasons
}
