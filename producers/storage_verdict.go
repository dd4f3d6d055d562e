package producers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"sync"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// Shared by the storage producers (smart, zfs, btrfs, mdraid, fs, path,
// postgres): the verdict with its reasons, the publish gate that keeps
// unchanged observations to one an hour, and deterministic event ids.

// storageJudgement collects the reasons of a verdict; the verdict is the
// worst level any reason was given at.
type storageJudgement struct {
	verdict string
	reasons []string
}

func (j *storageJudgement) warn(format string, args ...any) {
	if j.verdict != events.VerdictFailing {
		j.verdict = events.VerdictWarning
	}
	j.reasons = append(j.reasons, fmt.Sprintf(format, args...))
}

func (j *storageJudgement) fail(format string, args ...any) {
	j.verdict = events.VerdictFailing
	j.reasons = append(j.reasons, fmt.Sprintf(format, args...))
}

// result is the verdict (ok when nothing was said) and its reasons.
func (j *storageJudgement) result() (string, []string) {
	if j.verdict == "" {
		return events.VerdictOK, nil
	}
	return j.verdict, j.reasons
}

// storageGate decides which observations a collector publishes: an
// object's observation goes out when its key (the facts that matter,
// without the ones that drift every minute such as temperature) changed,
// or when `every` has passed since it last went out. It lives in the
// collector: after an agent restart everything is published once, which is
// what a restarted agent should do anyway.
type storageGate struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]storageGateEntry
}

type storageGateEntry struct {
	key string
	at  time.Time
}

func newStorageGate(every time.Duration) *storageGate {
	return &storageGate{every: every, last: map[string]storageGateEntry{}}
}

// due reports whether object's observation with key should be published
// at now, and if so records it as published.
func (g *storageGate) due(object, key string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	prev, ok := g.last[object]
	if ok && prev.key == key && now.Sub(prev.at) < g.every && !now.Before(prev.at) {
		return false
	}
	g.last[object] = storageGateEntry{key: key, at: now}
	return true
}

// storageKey hashes the JSON of v into a short key.
func storageKey(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "unencodable:" + err.Error()
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// storageEventID is the deterministic event id of an observation: the
// same data about the same object from the same host gives the same id,
// so a repeated send is dropped by Nats-Msg-Id deduplication.
func storageEventID(host, producer, object string, data any) string {
	return events.DeterministicID(host, producer, object, storageKey(data))
}

// storageCommandMissing reports whether err says a command is not
// installed (so the producer is not applicable rather than broken).
func storageCommandMissing(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist)
}
