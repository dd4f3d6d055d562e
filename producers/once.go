package producers

import (
	"context"
	"encoding/json"
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
