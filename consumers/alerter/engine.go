package alerter

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/pinkiefleet/pinkie/events"
)

// Producer is the producer name in the source of alert events:
// pinkie://<host>/alerter.
const Producer = "alerter"

// Options tune the engine.
type Options struct {
	// RepeatInterval is how often a firing alert is published again
	// (default 24h).
	RepeatInterval time.Duration
	// FitWindow is how far back growth is fitted (default 6h).
	FitWindow time.Duration
	// BanWindow is the fail2ban burst window (default 10m).
	BanWindow time.Duration
}

// Input is one stored message: its stream, sequence, subject, payload and
// the time the hub stored it.
type Input struct {
	Stream  string
	Seq     uint64
	Subject string
	Data    []byte
	At      time.Time
}

// Output is an alert event to publish on Subject (with Nats-Msg-Id =
// Event.ID(), deterministic, so a replay after a crash is deduplicated).
type Output struct {
	Subject string
	Event   events.Event
	Alert   events.Alert
}

// Engine evaluates rules over events. It is a pure fold: state changes
// only through Apply and Tick, whose time comes from the caller.
type Engine struct {
	rules    []*Rule
	byKind   map[string][]*Rule
	absent   []*Rule
	ticking  []*Rule
	opts     Options
	hosts    map[string]*hostState
	silences map[string]*Silence
	dirty    map[string]bool
	kFiring  events.Kind
	kResolve events.Kind
}

// hostState is everything the engine remembers about one host. It is
// persisted as one value, with the stream sequences it reflects.
type hostState struct {
	// Seq is the last sequence applied to this host, per stream: a replay
	// after a crash skips what the saved state already holds.
	Seq map[string]uint64 `json:"seq"`
	// Seen is when an event of each kind last arrived; First when the
	// first did.
	Seen  map[string]time.Time `json:"seen"`
	First map[string]time.Time `json:"first"`
	// Records are the latest data of kinds that rules re-evaluate on
	// ticks, and the derived deploy record.
	Records map[string]*record     `json:"records,omitempty"`
	Series  map[string][]point     `json:"series,omitempty"`
	Bans    []time.Time            `json:"bans,omitempty"`
	Alerts  map[string]*AlertState `json:"alerts"`
	// Declared are the units the fleet declaration says the host runs
	// (nil: not declared).
	Declared []string `json:"declared,omitempty"`
}

type record struct {
	Kind   string          `json:"kind"`
	Object string          `json:"object,omitempty"`
	Time   time.Time       `json:"time"`
	Data   json.RawMessage `json:"data"`
}

type point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// AlertState is one alert the engine tracks: pending (its condition holds
// but not yet for the rule's duration) or firing.
type AlertState struct {
	Rule         string            `json:"rule"`
	Object       string            `json:"object,omitempty"`
	Level        int               `json:"level"`
	Severity     string            `json:"severity"`
	PendingSince *time.Time        `json:"pending_since,omitempty"`
	Firing       bool              `json:"firing"`
	StartsAt     time.Time         `json:"starts_at,omitzero"`
	Repeat       int               `json:"repeat,omitempty"`
	Summary      string            `json:"summary"`
	Labels       map[string]string `json:"labels,omitempty"`
	Silenced     bool              `json:"silenced,omitempty"`
	SilencedBy   []string          `json:"silenced_by,omitempty"`
}

// Silence is an active silence.
type Silence struct {
	ID       string            `json:"id"`
	Matchers map[string]string `json:"matchers"`
	StartsAt time.Time         `json:"starts_at"`
	EndsAt   time.Time         `json:"ends_at"`
}

// Matches reports whether a silence covers an alert with these labels at
// time now.
func (s *Silence) Matches(labels map[string]string, now time.Time) bool {
	if now.Before(s.StartsAt) || !now.Before(s.EndsAt) {
		return false
	}
	return MatchLabels(s.Matchers, labels)
}

// MatchLabels reports whether every matcher's pattern (path.Match) matches
// its label.
func MatchLabels(matchers, labels map[string]string) bool {
	for k, pat := range matchers {
		v, ok := labels[k]
		if !ok {
			return false
		}
		if m, err := path.Match(pat, v); err != nil || !m {
			return false
		}
	}
	return true
}

// NewEngine builds an engine over compiled rules (Config.Rules).
func NewEngine(rules []Rule, o Options) *Engine {
	if o.RepeatInterval <= 0 {
		o.RepeatInterval = 24 * time.Hour
	}
	if o.FitWindow <= 0 {
		o.FitWindow = 6 * time.Hour
	}
	if o.BanWindow <= 0 {
		o.BanWindow = 10 * time.Minute
	}
	e := &Engine{byKind: map[string][]*Rule{}, opts: o, hosts: map[string]*hostState{}, silences: map[string]*Silence{}, dirty: map[string]bool{}}
	e.kFiring, _ = events.Lookup("alert.firing")
	e.kResolve, _ = events.Lookup("alert.resolved")
	for i := range rules {
		r := &rules[i]
		e.rules = append(e.rules, r)
		if r.Absent > 0 {
			e.absent = append(e.absent, r)
			continue
		}
		e.byKind[r.Kind] = append(e.byKind[r.Kind], r)
		if r.Tick {
			e.ticking = append(e.ticking, r)
		}
	}
	return e
}

func (e *Engine) host(name string) *hostState {
	hs := e.hosts[name]
	if hs == nil {
		hs = &hostState{Seq: map[string]uint64{}, Seen: map[string]time.Time{}, First: map[string]time.Time{}, Alerts: map[string]*AlertState{}}
		e.hosts[name] = hs
	}
	return hs
}

// parsed is an input understood as an event of a host.
type parsed struct {
	host, kind, object string
	ev                 event.Event
	data               map[string]any
}

func parseInput(in Input) (parsed, bool) {
	var p parsed
	if err := json.Unmarshal(in.Data, &p.ev); err != nil {
		return p, false
	}
	var ok bool
	p.kind, ok = events.KindName(p.ev.Type())
	if !ok {
		return p, false
	}
	host, _, ok := events.HostFromSubject(in.Subject)
	if !ok && !strings.HasPrefix(p.kind, "silence.") && p.kind != fleetKind {
		return p, false
	}
	p.host = host
	p.object = p.ev.Subject()
	if err := json.Unmarshal(p.ev.Data(), &p.data); err != nil {
		return p, false
	}
	return p, true
}

// Apply folds one stored message into the state and returns the alert
// events it causes.
func (e *Engine) Apply(in Input) []Output {
	p, ok := parseInput(in)
	if !ok {
		return nil
	}
	now := in.At
	switch p.kind {
	case "silence.added", "silence.removed":
		return e.applySilence(p, now)
	case "alert.firing", "alert.resolved", "notify.delivery":
		return nil
	case fleetKind:
		return e.applyFleet(p, in)
	}
	if strings.HasPrefix(p.kind, "deploy.") {
		// A builder reports phases of another host's deploy under its own
		// subject; the alert is about the target named in the data.
		if h, ok := p.data["host"].(string); ok && events.ValidHost(h) == nil {
			p.host = h
		}
	}
	hs := e.host(p.host)
	if in.Stream != "" {
		if hs.Seq[in.Stream] >= in.Seq && in.Seq > 0 {
			return nil
		}
		hs.Seq[in.Stream] = in.Seq
	}
	e.dirty[p.host] = true
	hs.Seen[p.kind] = now
	if _, ok := hs.First[p.kind]; !ok {
		hs.First[p.kind] = now
	}
	if strings.HasPrefix(p.kind, "deploy.") {
		if _, ok := hs.First["deploy."]; !ok {
			hs.First["deploy."] = now
		}
	}
	var out []Output
	// An event of an absent rule's kind ends that alert.
	for _, r := range e.absent {
		if r.Kind != p.kind {
			continue
		}
		if st := hs.Alerts[alertKey(r.Name, "")]; st != nil && st.Firing {
			env := e.absentEnv(p.host, hs, r, now)
			st.Summary = r.render(env)
			out = append(out, e.resolve(p.host, hs, r, st, now, p.ev.ID(), p.ev.Type())...)
		}
	}
	env := e.derive(p, hs, now)
	for _, r := range e.byKind[p.kind] {
		out = append(out, e.evalRule(p.host, hs, r, p.object, env, now, p.ev.ID(), p.ev.Type())...)
	}
	if strings.HasPrefix(p.kind, "deploy.") {
		denv := e.deployRecord(p, hs)
		for _, r := range e.byKind["deploy"] {
			out = append(out, e.evalRule(p.host, hs, r, "", denv, now, p.ev.ID(), p.ev.Type())...)
		}
	}
	out = append(out, e.repeats(p.host, hs, now)...)
	return out
}

// terminal deploy phases.
var deployTerminal = map[string]bool{"activated": true, "failed": true, "build.failed": true, "rolledback": true}

// deployRecord keeps the host's latest deploy phase and the data of its
// latest terminal phase.
func (e *Engine) deployRecord(p parsed, hs *hostState) map[string]any {
	phase := strings.TrimPrefix(p.kind, "deploy.")
	env := map[string]any{}
	if r := hs.Records["deploy"]; r != nil {
		_ = json.Unmarshal(r.Data, &env)
	}
	env["phase"] = phase
	if deployTerminal[phase] {
		for k, v := range p.data {
			env[k] = v
		}
		env["terminal"] = phase
		env["phase"] = phase
		if phase == "activated" {
			delete(env, "reason")
			delete(env, "log")
		}
	}
	b, _ := json.Marshal(env)
	if hs.Records == nil {
		hs.Records = map[string]*record{}
	}
	hs.Records["deploy"] = &record{Kind: "deploy", Time: p.ev.Time(), Data: b}
	env["host"] = p.host
	env["object"] = ""
	env["kind"] = "deploy"
	return env
}

func alertKey(rule, object string) string { return rule + "|" + object }

// evalRule evaluates one rule against an event's environment.
func (e *Engine) evalRule(host string, hs *hostState, r *Rule, object string, env map[string]any, now time.Time, causeID, causeType string) []Output {
	if r.Each != "" {
		return e.evalEach(host, hs, r, env, now, causeID, causeType)
	}
	if r.OneShot {
		return e.oneShot(host, r, object, env, now, causeID, causeType)
	}
	return e.evalObject(host, hs, r, object, env, now, causeID, causeType)
}

func (e *Engine) evalEach(host string, hs *hostState, r *Rule, env map[string]any, now time.Time, causeID, causeType string) []Output {
	var out []Output
	present := map[string]bool{}
	list, _ := env[r.Each].([]any)
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			continue
		}
		elEnv := make(map[string]any, len(env)+len(m))
		for k, v := range env {
			elEnv[k] = v
		}
		for k, v := range m {
			elEnv[k] = v
		}
		obj := fmt.Sprint(m[r.ObjectField])
		elEnv["object"] = obj
		present[obj] = true
		out = append(out, e.evalObject(host, hs, r, obj, elEnv, now, causeID, causeType)...)
	}
	// Elements no longer listed: their condition is gone.
	keys := make([]string, 0)
	for k, st := range hs.Alerts {
		if st.Rule == r.Name && !present[st.Object] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		st := hs.Alerts[k]
		if !st.Firing {
			delete(hs.Alerts, k)
			continue
		}
		st.Summary = strings.TrimSpace(st.Summary)
		out = append(out, e.resolve(host, hs, r, st, now, causeID, causeType)...)
	}
	return out
}

func (e *Engine) oneShot(host string, r *Rule, object string, env map[string]any, now time.Time, causeID, causeType string) []Output {
	if !evalCond(r.levels[0].when, env) {
		return nil
	}
	if r.ObjectField != "" {
		if v, ok := env[r.ObjectField]; ok {
			object = fmt.Sprint(v)
		}
	}
	env["object"] = object
	env["severity"] = r.levels[0].severity
	st := &AlertState{Rule: r.Name, Object: object, Severity: r.levels[0].severity, Summary: r.render(env), Labels: r.Labels, StartsAt: now}
	a := e.alert(host, r, st, "firing", "event", now)
	a.OneShot = true
	id := events.DeterministicID("alert", a.Fingerprint, "event", causeID)
	return e.output(a, id, now, causeID, causeType)
}

// levelFor returns the level that holds, with hysteresis: a level at or
// below the current one stays until its resolve condition holds.
func levelFor(r *Rule, cur int, env map[string]any) int {
	for i, l := range r.levels {
		if evalCond(l.when, env) {
			return i
		}
		if cur >= 0 && i >= cur && l.resolve != nil && !evalCond(l.resolve, env) {
			return i
		}
	}
	return -1
}

func (e *Engine) evalObject(host string, hs *hostState, r *Rule, object string, env map[string]any, now time.Time, causeID, causeType string) []Output {
	key := alertKey(r.Name, object)
	st := hs.Alerts[key]
	cur := -1
	if st != nil {
		cur = st.Level
	}
	target := levelFor(r, cur, env)
	if target < 0 {
		if st == nil {
			return nil
		}
		if !st.Firing {
			delete(hs.Alerts, key)
			return nil
		}
		env["severity"] = st.Severity
		st.Summary = r.render(env)
		return e.resolve(host, hs, r, st, now, causeID, causeType)
	}
	env["severity"] = r.levels[target].severity
	summary := r.render(env)
	if st == nil {
		since := now
		st = &AlertState{Rule: r.Name, Object: object, Level: target, Severity: r.levels[target].severity, PendingSince: &since, Labels: r.Labels}
		hs.Alerts[key] = st
	}
	st.Summary = summary
	if !st.Firing {
		st.Level, st.Severity = target, r.levels[target].severity
		if now.Sub(*st.PendingSince) >= r.For.D() {
			return e.fire(host, r, st, st.PendingSince.Add(r.For.D()), now, causeID, causeType)
		}
		return nil
	}
	if target != st.Level {
		reason := "escalated"
		if target > st.Level {
			reason = "deescalated"
		}
		st.Level, st.Severity = target, r.levels[target].severity
		a := e.alert(host, r, st, "firing", reason, now)
		id := events.DeterministicID("alert", a.Fingerprint, st.StartsAt.UTC().Format(time.RFC3339Nano), reason, st.Severity, causeID)
		return e.output(a, id, now, causeID, causeType)
	}
	return nil
}

func (e *Engine) fire(host string, r *Rule, st *AlertState, startsAt, now time.Time, causeID, causeType string) []Output {
	st.Firing, st.StartsAt, st.Repeat, st.PendingSince = true, startsAt, 0, nil
	e.updateSilenced(host, st, now)
	a := e.alert(host, r, st, "firing", "started", now)
	id := events.DeterministicID("alert", a.Fingerprint, startsAt.UTC().Format(time.RFC3339Nano), "started")
	return e.output(a, id, now, causeID, causeType)
}

func (e *Engine) resolve(host string, hs *hostState, r *Rule, st *AlertState, now time.Time, causeID, causeType string) []Output {
	delete(hs.Alerts, alertKey(st.Rule, st.Object))
	e.updateSilenced(host, st, now)
	a := e.alert(host, r, st, "resolved", "resolved", now)
	end := now.UTC()
	a.EndsAt = &end
	id := events.DeterministicID("alert", a.Fingerprint, st.StartsAt.UTC().Format(time.RFC3339Nano), "resolved")
	return e.output(a, id, now, causeID, causeType)
}

// Labels are what silences and routes match: host, rule, object,
// severity, kind and the rule's labels.
func Labels(host, rule, object, severity, kind string, extra map[string]string) map[string]string {
	l := map[string]string{"host": host, "rule": rule, "object": object, "severity": severity, "kind": kind}
	for k, v := range extra {
		if _, ok := l[k]; !ok {
			l[k] = v
		}
	}
	return l
}

func (e *Engine) ruleKind(name string) string {
	for _, r := range e.rules {
		if r.Name == name {
			return r.Kind
		}
	}
	return ""
}

func (e *Engine) updateSilenced(host string, st *AlertState, now time.Time) {
	labels := Labels(host, st.Rule, st.Object, st.Severity, e.ruleKind(st.Rule), st.Labels)
	var by []string
	for _, s := range e.silences {
		if s.Matches(labels, now) {
			by = append(by, s.ID)
		}
	}
	sort.Strings(by)
	st.Silenced, st.SilencedBy = len(by) > 0, by
}

// Fingerprint identifies an alert: (host, rule, object).
func Fingerprint(host, rule, object string) string {
	h := sha256.Sum256([]byte(host + "\x00" + rule + "\x00" + object))
	return hex.EncodeToString(h[:8])
}

func (e *Engine) alert(host string, r *Rule, st *AlertState, status, reason string, now time.Time) events.Alert {
	a := events.Alert{
		Host: host, Rule: r.Name, Object: st.Object, Severity: st.Severity, Summary: st.Summary,
		Status: status, Reason: reason, StartsAt: st.StartsAt.UTC(), Repeat: st.Repeat,
		Silenced: st.Silenced, SilencedBy: st.SilencedBy, Fingerprint: Fingerprint(host, r.Name, st.Object),
	}
	if len(r.Labels) > 0 || r.Kind != "" {
		a.Labels = map[string]string{"kind": r.Kind}
		for k, v := range r.Labels {
			a.Labels[k] = v
		}
	}
	return a
}

func (e *Engine) output(a events.Alert, id string, now time.Time, causeID, causeType string) []Output {
	a.CauseEventID, a.CauseType = causeID, causeType
	k := e.kFiring
	if a.Status == "resolved" {
		k = e.kResolve
	}
	opts := []events.Option{events.WithID(id)}
	if a.Object != "" {
		opts = append(opts, events.WithSubject(a.Object))
	}
	ev, err := events.New(k, a.Host, Producer, now, a, opts...)
	if err != nil {
		return nil
	}
	return []Output{{Subject: events.AlertSubject(a.Host, a.Rule), Event: ev, Alert: a}}
}

// Tick advances the clock: absent rules, pending alerts whose for
// duration passed, rules on time-dependent values, repeats and silence
// expiry.
func (e *Engine) Tick(now time.Time) []Output {
	var out []Output
	expired := false
	for _, id := range sortedKeys(e.silences) {
		if s := e.silences[id]; !now.Before(s.EndsAt) {
			delete(e.silences, id)
			expired = true
			// Publish the expiry, so the alerts projection forgets it.
			k, _ := events.Lookup("silence.removed")
			ev, err := events.New(k, "hub", Producer, now, events.SilenceRemoved{ID: id, RemovedBy: "expired"},
				events.WithID(events.DeterministicID("silence", id, "expired")))
			if err == nil {
				out = append(out, Output{Subject: events.SilenceRemovedSubject(id), Event: ev})
			}
		}
	}
	if expired {
		e.dirty[silencesKey] = true
	}
	hosts := make([]string, 0, len(e.hosts))
	for h := range e.hosts {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		hs := e.hosts[h]
		before := len(out)
		out = append(out, e.tickAbsent(h, hs, now)...)
		out = append(out, e.tickPending(h, hs, now)...)
		out = append(out, e.tickRules(h, hs, now)...)
		out = append(out, e.repeats(h, hs, now)...)
		if expired {
			out = append(out, e.resilence(h, hs, now)...)
		}
		if len(out) > before {
			e.dirty[h] = true
		}
	}
	return out
}

func (e *Engine) absentEnv(host string, hs *hostState, r *Rule, now time.Time) map[string]any {
	last, ok := hs.Seen[r.Kind]
	if !ok {
		last = hs.First[r.AbsentAfter]
	}
	silent := now.Sub(last)
	return map[string]any{"host": host, "object": "", "kind": r.Kind, "severity": r.Severity,
		"last_seen": last.UTC().Format(time.RFC3339), "silent_seconds": silent.Seconds(), "silent_days": silent.Hours() / 24}
}

func (e *Engine) tickAbsent(host string, hs *hostState, now time.Time) []Output {
	var out []Output
	for _, r := range e.absent {
		last, ok := hs.Seen[r.Kind]
		if !ok {
			if r.AbsentAfter == "" {
				continue
			}
			if last, ok = hs.First[r.AbsentAfter]; !ok {
				continue
			}
		}
		key := alertKey(r.Name, "")
		if hs.Alerts[key] != nil {
			continue
		}
		deadline := last.Add(r.Absent.D())
		if now.Before(deadline) {
			continue
		}
		st := &AlertState{Rule: r.Name, Level: 0, Severity: r.Severity, Labels: r.Labels}
		st.Summary = r.render(e.absentEnv(host, hs, r, now))
		hs.Alerts[key] = st
		out = append(out, e.fire(host, r, st, deadline, now, "", "")...)
	}
	return out
}

func (e *Engine) rule(name string) *Rule {
	for _, r := range e.rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (e *Engine) tickPending(host string, hs *hostState, now time.Time) []Output {
	var out []Output
	for _, k := range sortedKeys(hs.Alerts) {
		st := hs.Alerts[k]
		if st.Firing || st.PendingSince == nil {
			continue
		}
		r := e.rule(st.Rule)
		if r == nil {
			continue
		}
		if now.Sub(*st.PendingSince) >= r.For.D() {
			out = append(out, e.fire(host, r, st, st.PendingSince.Add(r.For.D()), now, "", "")...)
		}
	}
	return out
}

func (e *Engine) tickRules(host string, hs *hostState, now time.Time) []Output {
	var out []Output
	for _, r := range e.ticking {
		if r.Kind == "fail2ban" {
			env := map[string]any{"host": host, "object": "", "kind": r.Kind}
			if rec := hs.Records["fail2ban"]; rec != nil {
				_ = json.Unmarshal(rec.Data, &env)
				env["host"], env["object"], env["kind"] = host, "", r.Kind
			} else if len(hs.Bans) == 0 {
				continue
			}
			env["bans_in_window"] = e.bansInWindow(hs, now)
			out = append(out, e.evalRule(host, hs, r, "", env, now, "", "")...)
			continue
		}
		for _, k := range sortedKeys(hs.Records) {
			rec := hs.Records[k]
			if rec.Kind != r.Kind {
				continue
			}
			env := map[string]any{}
			_ = json.Unmarshal(rec.Data, &env)
			env["host"], env["object"], env["kind"] = host, rec.Object, rec.Kind
			out = append(out, e.evalRule(host, hs, r, rec.Object, env, now, "", "")...)
		}
	}
	return out
}

func (e *Engine) repeats(host string, hs *hostState, now time.Time) []Output {
	var out []Output
	for _, k := range sortedKeys(hs.Alerts) {
		st := hs.Alerts[k]
		if !st.Firing {
			continue
		}
		r := e.rule(st.Rule)
		if r == nil {
			continue
		}
		every := e.opts.RepeatInterval
		if r.RepeatInterval > 0 {
			every = r.RepeatInterval.D()
		}
		n := int(now.Sub(st.StartsAt) / every)
		if n <= st.Repeat {
			continue
		}
		st.Repeat = n
		e.dirty[host] = true
		e.updateSilenced(host, st, now)
		if st.Silenced {
			continue
		}
		a := e.alert(host, r, st, "firing", "repeat", now)
		id := events.DeterministicID("alert", a.Fingerprint, st.StartsAt.UTC().Format(time.RFC3339Nano), "repeat", fmt.Sprint(n))
		out = append(out, e.output(a, id, now, "", "")...)
	}
	return out
}

const silencesKey = "silences"

func (e *Engine) applySilence(p parsed, now time.Time) []Output {
	switch p.kind {
	case "silence.added":
		var s events.SilenceAdded
		if err := json.Unmarshal(p.ev.Data(), &s); err != nil || s.ID == "" {
			return nil
		}
		e.silences[s.ID] = &Silence{ID: s.ID, Matchers: s.Matchers, StartsAt: s.StartsAt, EndsAt: s.EndsAt}
	case "silence.removed":
		var s events.SilenceRemoved
		if err := json.Unmarshal(p.ev.Data(), &s); err != nil {
			return nil
		}
		if _, ok := e.silences[s.ID]; !ok {
			return nil
		}
		delete(e.silences, s.ID)
	}
	e.dirty[silencesKey] = true
	var out []Output
	for _, h := range sortedKeys(e.hosts) {
		out = append(out, e.resilence(h, e.hosts[h], now)...)
	}
	return out
}

// resilence re-checks which firing alerts are silenced; one whose silence
// ended while it still fires is published again (reason unsilenced).
func (e *Engine) resilence(host string, hs *hostState, now time.Time) []Output {
	var out []Output
	for _, k := range sortedKeys(hs.Alerts) {
		st := hs.Alerts[k]
		if !st.Firing {
			continue
		}
		was, wasBy := st.Silenced, st.SilencedBy
		e.updateSilenced(host, st, now)
		if was != st.Silenced || strings.Join(wasBy, ",") != strings.Join(st.SilencedBy, ",") {
			e.dirty[host] = true
		}
		if was && !st.Silenced {
			r := e.rule(st.Rule)
			if r == nil {
				continue
			}
			a := e.alert(host, r, st, "firing", "unsilenced", now)
			id := events.DeterministicID("alert", a.Fingerprint, st.StartsAt.UTC().Format(time.RFC3339Nano), "unsilenced", strings.Join(wasBy, ","))
			out = append(out, e.output(a, id, now, "", "")...)
		}
	}
	return out
}

// Active returns the alerts currently firing, sorted by host, rule,
// object: for tests and diagnostics.
func (e *Engine) Active() []events.Alert {
	var out []events.Alert
	for _, h := range sortedKeys(e.hosts) {
		hs := e.hosts[h]
		for _, k := range sortedKeys(hs.Alerts) {
			st := hs.Alerts[k]
			if !st.Firing {
				continue
			}
			r := e.rule(st.Rule)
			if r == nil {
				continue
			}
			out = append(out, e.alert(h, r, st, "firing", "", st.StartsAt))
		}
	}
	return out
}

// Flush returns the state changed since the last Flush, as key → JSON:
// "host.<host>" per host and "silences".
func (e *Engine) Flush() (map[string][]byte, error) {
	out := map[string][]byte{}
	for k := range e.dirty {
		var v any
		key := k
		if k == silencesKey {
			v = e.silences
		} else {
			v = e.hosts[k]
			key = "host." + k
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode alerter state %s: %w", key, err)
		}
		out[key] = b
	}
	clear(e.dirty)
	return out, nil
}

// Load restores one key of a Flush.
func (e *Engine) Load(key string, value []byte) error {
	if key == silencesKey {
		if err := json.Unmarshal(value, &e.silences); err != nil {
			return fmt.Errorf("alerter state %s: %w", key, err)
		}
		if e.silences == nil {
			e.silences = map[string]*Silence{}
		}
		return nil
	}
	host, ok := strings.CutPrefix(key, "host.")
	if !ok {
		return nil
	}
	hs := e.host(host)
	if err := json.Unmarshal(value, hs); err != nil {
		return fmt.Errorf("alerter state %s: %w", key, err)
	}
	for _, m := range []*map[string]time.Time{&hs.Seen, &hs.First} {
		if *m == nil {
			*m = map[string]time.Time{}
		}
	}
	if hs.Seq == nil {
		hs.Seq = map[string]uint64{}
	}
	if hs.Alerts == nil {
		hs.Alerts = map[string]*AlertState{}
	}
	return nil
}
