package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// The mix one real host sends in an hour, from the producers' default
// intervals: a heartbeat every 30 s, systemd every minute, three file
// systems and the network every 5 minutes, two SMART devices and the
// profile hourly, a few fail2ban bans, and six bursts of ten logins. The
// generator plays this hour's 295 events at one slot per second (about
// 12x faster than real), each agent in its own shuffled order; a burst
// sends its ten logins at once and then rests for ten slots.
type slot struct {
	kind, producer, object string
	burst                  int // > 0: a burst of this many logins
}

const burstSize = 10

func hourOfEvents() []slot {
	var s []slot
	add := func(n int, sl slot) {
		for range n {
			s = append(s, sl)
		}
	}
	add(120, slot{kind: "heartbeat", producer: "heartbeat"})
	add(60, slot{kind: "systemd", producer: "systemd"})
	for _, m := range []string{"/", "/var", "/nix"} {
		add(12, slot{kind: "fs", producer: "fs", object: m})
	}
	add(12, slot{kind: "network", producer: "network"})
	for _, d := range []string{"/dev/sda", "/dev/sdb"} {
		add(1, slot{kind: "smart", producer: "smart", object: d})
	}
	add(1, slot{kind: "profile", producer: "profile"})
	add(4, slot{kind: "fail2ban", producer: "fail2ban"})
	add(6, slot{kind: "login", producer: "login", burst: burstSize})
	return s
}

// examples holds each kind's example data (schemas/examples), which the
// generator varies per event, and the schemas it must satisfy.
type examples struct {
	data    map[string]map[string]any
	schemas *schemas.Set
}

func loadExamples(dir string) (examples, error) {
	set, err := schemas.Load()
	if err != nil {
		return examples{}, err
	}
	ex := examples{data: map[string]map[string]any{}, schemas: set}
	for _, sl := range hourOfEvents() {
		if _, ok := ex.data[sl.kind]; ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, sl.kind+".v1.json"))
		if err != nil {
			return examples{}, fmt.Errorf("read example event: %w", err)
		}
		var doc struct {
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return examples{}, fmt.Errorf("example %s: %w", sl.kind, err)
		}
		ex.data[sl.kind] = doc.Data
	}
	return ex, nil
}

// eventID carries the host and its sequence number, so the check can tell
// a lost event from a doubled one.
func eventID(host string, seq uint64) string { return fmt.Sprintf("fb-%s-%d", host, seq) }

func parseEventID(id string) (host string, seq uint64, ok bool) {
	rest, ok := strings.CutPrefix(id, "fb-")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(rest[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return rest[:i], n, true
}

// build makes host's event number seq for slot sl.
func (ex examples) build(host string, seq uint64, sl slot, now time.Time, r *rand.Rand) (events.Event, error) {
	k, ok := events.Lookup(sl.kind)
	if !ok {
		return events.Event{}, fmt.Errorf("unknown kind %q", sl.kind)
	}
	d := make(map[string]any, len(ex.data[sl.kind])+1)
	for key, v := range ex.data[sl.kind] {
		d[key] = v
	}
	switch sl.kind {
	case "heartbeat":
		d["counter"] = seq
		d["instance"] = "fleetbench"
		d["load1"] = float64(r.IntN(400)) / 100
	case "login":
		d["logged_at"] = now.UTC().Format(time.RFC3339)
		d["pid"] = 1000 + r.IntN(60000)
		d["port"] = 1024 + r.IntN(60000)
		d["log_host"] = host
	case "fs":
		d["mount_point"] = sl.object
	case "smart":
		d["device"] = sl.object
	case "profile":
		d["hostname"] = host
	}
	opts := []events.Option{events.WithID(eventID(host, seq))}
	if sl.object != "" {
		opts = append(opts, events.WithSubject(sl.object))
	}
	return events.New(k, host, sl.producer, now, d, opts...)
}
