// Package alerter turns the fleet's events into alerts. Rules are data: a
// rule names the event kind it watches, a condition per severity level, a
// resolve condition (hysteresis), a for duration and a summary template.
// The Engine is a pure fold over events and clock ticks: it returns the
// alert events to publish and never does I/O or reads the clock itself.
package alerter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/pinkiefleet/pinkie/events"
)

// Rule is one alerting rule.
type Rule struct {
	// Name identifies the rule; it is part of the alert's subject
	// (pinkie.alert.<host>.<name>), so it is lower-case dotted words.
	Name string `json:"name"`
	Doc  string `json:"doc,omitempty"`
	// Kind is the event kind watched ("fs", "smart"), or one of the
	// derived records: "deploy" (the host's latest deploy phases).
	Kind string `json:"kind"`
	// Levels are the conditions, most severe first. The alert's severity
	// is the first level that holds.
	Levels []Level `json:"levels,omitempty"`
	// For is how long a condition must hold before the alert fires.
	For Duration `json:"for,omitempty"`
	// Each names a list field of the event: the rule is evaluated per
	// element (object = the element's ObjectField) and an element that
	// disappears resolves its alert.
	Each        string `json:"each,omitempty"`
	ObjectField string `json:"object_field,omitempty"`
	// Absent fires when no event of Kind arrived for this long (host
	// silent, no successful deploy). It needs no Levels; Severity sets the
	// severity.
	Absent Duration `json:"absent,omitempty"`
	// AbsentAfter, for absent rules, names a kind prefix whose first event
	// starts the clock when Kind never arrived (e.g. "deploy.": only hosts
	// that deploy with pinkie can miss a deploy).
	AbsentAfter string `json:"absent_after,omitempty"`
	// Severity is the severity of an absent or one-shot rule.
	Severity string `json:"severity,omitempty"`
	// OneShot rules alert once per matching event and never resolve
	// (a login, a ban).
	OneShot bool `json:"one_shot,omitempty"`
	// Tick re-evaluates the rule on every clock tick, for conditions on
	// values that change with time (bans in the last 10 minutes).
	Tick bool `json:"tick,omitempty"`
	// Summary is a text/template over the event's data fields plus host,
	// object, kind, severity and the derived fields.
	Summary string            `json:"summary"`
	Labels  map[string]string `json:"labels,omitempty"`
	// RepeatInterval overrides the alerter's repeat interval.
	RepeatInterval Duration `json:"repeat_interval,omitempty"`

	levels  []compiledLevel
	summary *template.Template
}

// Level is one severity level of a rule.
type Level struct {
	Severity string `json:"severity"`
	// When is the firing condition, an expr-lang expression over the
	// event's fields (e.g. "used_percent > 85 && !read_only").
	When string `json:"when"`
	// Resolve is the condition that ends the alert once firing; empty
	// means "not When". A resolve condition stricter than not-When gives
	// hysteresis: a value hovering at the threshold does not flap.
	Resolve string `json:"resolve,omitempty"`
}

type compiledLevel struct {
	severity      string
	when, resolve *vm.Program
}

// Duration is a time.Duration written as "5m", "24h" or "35d" in JSON.
type Duration time.Duration

// ParseDuration accepts Go durations plus a "d" (24h) unit.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days float64
		if _, err := fmt.Sscanf(n, "%g", &days); err != nil || days < 0 {
			return 0, fmt.Errorf("duration %q: want e.g. 30s, 5m, 24h or 35d", s)
		}
		return time.Duration(days * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("duration %q: want e.g. 30s, 5m, 24h or 35d", s)
	}
	return d, nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"5m\" or \"35d\"")
	}
	v, err := ParseDuration(s)
	*d = Duration(v)
	return err
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

var ruleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$`)

// compile checks a rule and compiles its expressions and template.
func (r *Rule) compile() error {
	if !ruleNameRE.MatchString(r.Name) {
		return fmt.Errorf("rule name %q: use lower-case words joined by dots (fs.usage)", r.Name)
	}
	if r.Kind == "" {
		return fmt.Errorf("rule %s: kind is required (the event kind it watches)", r.Name)
	}
	if _, ok := events.Lookup(r.Kind); !ok && r.Kind != "deploy" && !strings.HasPrefix(r.Kind, "deploy.") {
		return fmt.Errorf("rule %s: unknown event kind %q", r.Name, r.Kind)
	}
	if r.Summary == "" {
		return fmt.Errorf("rule %s: summary is required", r.Name)
	}
	t, err := template.New(r.Name).Option("missingkey=zero").Funcs(templateFuncs).Parse(r.Summary)
	if err != nil {
		return fmt.Errorf("rule %s: summary: %w", r.Name, err)
	}
	r.summary = t
	if r.Absent > 0 {
		if len(r.Levels) > 0 || r.Each != "" || r.OneShot {
			return fmt.Errorf("rule %s: an absent rule has no levels, each or one_shot", r.Name)
		}
		if events.SeverityRank(r.Severity) > 2 {
			return fmt.Errorf("rule %s: severity %q: want critical, warning or info", r.Name, r.Severity)
		}
		return nil
	}
	if r.OneShot && len(r.Levels) == 0 {
		return fmt.Errorf("rule %s: a one-shot rule needs a level with its condition", r.Name)
	}
	if len(r.Levels) == 0 {
		return fmt.Errorf("rule %s: levels are required (or absent)", r.Name)
	}
	r.levels = nil
	for i, l := range r.Levels {
		if events.SeverityRank(l.Severity) > 2 {
			return fmt.Errorf("rule %s: level %d: severity %q: want critical, warning or info", r.Name, i+1, l.Severity)
		}
		if i > 0 && events.SeverityRank(l.Severity) <= events.SeverityRank(r.Levels[i-1].Severity) {
			return fmt.Errorf("rule %s: levels must be ordered most severe first", r.Name)
		}
		cl := compiledLevel{severity: l.Severity}
		if cl.when, err = compileCond(l.When); err != nil {
			return fmt.Errorf("rule %s: level %s: when: %w", r.Name, l.Severity, err)
		}
		if l.Resolve != "" {
			if cl.resolve, err = compileCond(l.Resolve); err != nil {
				return fmt.Errorf("rule %s: level %s: resolve: %w", r.Name, l.Severity, err)
			}
		}
		r.levels = append(r.levels, cl)
	}
	if r.Each != "" && r.ObjectField == "" {
		r.ObjectField = "name"
	}
	return nil
}

func compileCond(src string) (*vm.Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("empty condition")
	}
	return expr.Compile(src, expr.AsBool(), expr.AllowUndefinedVariables())
}

// evalCond runs a condition; an error (a field missing or of another
// type) counts as false.
func evalCond(p *vm.Program, env map[string]any) bool {
	out, err := expr.Run(p, env)
	if err != nil {
		return false
	}
	b, _ := out.(bool)
	return b
}

func (r *Rule) render(env map[string]any) string {
	var b bytes.Buffer
	if err := r.summary.Execute(&b, env); err != nil {
		return fmt.Sprintf("%s: %s on %v (summary template failed: %v)", r.Name, env["object"], env["host"], err)
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(b.String(), "<no value>", "?")), " ")
}

var templateFuncs = template.FuncMap{
	"bytes": func(v any) string { return humanBytes(toFloat(v)) },
	"pct":   func(v any) string { return fmt.Sprintf("%.0f%%", toFloat(v)) },
	"hours": func(v any) string {
		h := toFloat(v)
		if h >= 48 {
			return fmt.Sprintf("%.0f days", h/24)
		}
		if h < 1 {
			return fmt.Sprintf("%.0f min", h*60)
		}
		return fmt.Sprintf("%.1f h", h)
	},
	"join": func(v any, sep string) string {
		list, _ := v.([]any)
		parts := make([]string, 0, len(list))
		for _, x := range list {
			parts = append(parts, fmt.Sprint(x))
		}
		return strings.Join(parts, sep)
	},
	"dur": func(v any) string {
		return time.Duration(toFloat(v) * float64(time.Second)).Round(time.Second).String()
	},
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return math.NaN()
}

func humanBytes(f float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for math.Abs(f) >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", f)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// BuiltinRules are the rules every hub runs unless the configuration
// disables or replaces them (by name).
func BuiltinRules() []Rule {
	crit, warn, info := events.SeverityCritical, events.SeverityWarning, events.SeverityInfo
	return []Rule{
		{Name: "smart.verdict", Kind: "smart", Doc: "a drive's SMART verdict is failing (critical) or warning",
			Levels:  []Level{{Severity: crit, When: `verdict == "failing"`}, {Severity: warn, When: `verdict == "warning"`, Resolve: `verdict == "ok"`}},
			Summary: `{{.host}}: drive {{.device}}{{with .model}} ({{.}}){{end}} is {{.verdict}}{{with .reasons}}: {{join . "; "}}{{end}}`},
		{Name: "zfs.state", Kind: "zfs", Doc: "a ZFS pool is not ONLINE",
			Levels:  []Level{{Severity: crit, When: `state != "ONLINE"`}},
			Summary: `{{.host}}: ZFS pool {{.pool}} is {{.state}}{{with .status}}: {{.}}{{end}}`},
		{Name: "zfs.errors", Kind: "zfs", Doc: "a ZFS vdev reports read, write or checksum errors",
			Levels:  []Level{{Severity: warn, When: `vdev_errors > 0`}},
			Summary: `{{.host}}: ZFS pool {{.pool}} has {{.vdev_errors}} vdev errors{{with .data_errors}} ({{.}}){{end}}`},
		{Name: "zfs.scrub", Kind: "zfs", Doc: "a ZFS pool's last scrub is older than 35 days, or it was never scrubbed",
			Levels:  []Level{{Severity: warn, When: `scrub_age_days > 35`, Resolve: `scrub_age_days < 30`}},
			Summary: `{{.host}}: ZFS pool {{.pool}} {{if .never_scrubbed}}was never scrubbed{{else}}was last scrubbed {{printf "%.0f" .scrub_age_days}} days ago{{end}}`},
		{Name: "btrfs.errors", Kind: "btrfs", Doc: "a btrfs device error counter rose above its baseline",
			Levels:  []Level{{Severity: crit, When: `errors_above_baseline > 0`}},
			Summary: `{{.host}}: btrfs {{with .label}}{{.}} {{end}}({{.fsid}}) has {{.errors_above_baseline}} new device errors{{with .reasons}}: {{join . "; "}}{{end}}`},
		{Name: "mdraid.degraded", Kind: "mdraid", Doc: "an md array is degraded",
			Levels:  []Level{{Severity: crit, When: `degraded_disks > 0 && !container`}},
			Summary: `{{.host}}: RAID {{.device}} ({{.level}}) is degraded: {{.active_disks}} of {{.required_disks}} disks active`},
		{Name: "mdraid.failed", Kind: "mdraid", Doc: "an md array has a failed member",
			Levels:  []Level{{Severity: crit, When: `failed_disks > 0`}},
			Summary: `{{.host}}: RAID {{.device}} has {{.failed_disks}} failed member(s)`},
		{Name: "mdraid.inactive", Kind: "mdraid", Doc: "an md array is inactive",
			Levels:  []Level{{Severity: crit, When: `state == "inactive" && !container`}},
			Summary: `{{.host}}: RAID {{.device}} is inactive`},
		{Name: "fs.usage", Kind: "fs", Doc: "a filesystem is above 85 % (warning) or 95 % (critical); resolves below 80 % / 92 %",
			Levels: []Level{
				{Severity: crit, When: `!read_only && used_percent > 95`, Resolve: `used_percent < 92`},
				{Severity: warn, When: `!read_only && used_percent > 85`, Resolve: `used_percent < 80`}},
			Summary: `{{.host}}: {{.mount_point}} is {{pct .used_percent}} full ({{bytes .available_bytes}} free of {{bytes .size_bytes}})`},
		{Name: "fs.fill", Kind: "fs", Doc: "a filesystem is predicted full within 4 h (critical) or 24 h (warning), from a linear fit over the last 6 h",
			Levels: []Level{
				{Severity: crit, When: `!read_only && predicted_full_hours < 4`, Resolve: `predicted_full_hours > 6`},
				{Severity: warn, When: `!read_only && predicted_full_hours < 24`, Resolve: `predicted_full_hours > 36`}},
			Summary: `{{.host}}: {{.mount_point}} will be full in about {{hours .predicted_full_hours}} (growing {{bytes .growth_bytes_per_hour}}/h, {{bytes .available_bytes}} free)`},
		{Name: "login", Kind: "login", OneShot: true, ObjectField: "user", Doc: "a successful login",
			Levels:  []Level{{Severity: info, When: `true`}},
			Summary: `{{.host}}: {{.user}} logged in via {{.service}}{{with .method}} ({{.}}){{end}}{{with .remote_ip}} from {{.}}{{end}}`},
		{Name: "fail2ban.ban", Kind: "fail2ban", OneShot: true, ObjectField: "ip", Doc: "fail2ban banned an address",
			Levels:  []Level{{Severity: info, When: `action == "ban"`}},
			Summary: `{{.host}}: fail2ban banned {{.ip}} in jail {{.jail}}`},
		{Name: "fail2ban.burst", Kind: "fail2ban", Tick: true, Doc: "10 or more bans within 10 minutes; resolves below 5",
			Levels:  []Level{{Severity: warn, When: `bans_in_window >= 10`, Resolve: `bans_in_window < 5`}},
			Summary: `{{.host}}: fail2ban banned {{.bans_in_window}} addresses in the last 10 minutes`},
		{Name: "systemd.failed", Kind: "systemd", Each: "failed", ObjectField: "name", Doc: "a systemd unit failed",
			Levels:  []Level{{Severity: warn, When: `true`}},
			Summary: `{{.host}}: unit {{.name}} failed{{with .description}} ({{.}}){{end}}: {{.active_state}}{{with .sub_state}}/{{.}}{{end}}`},
		{Name: "service.down", Kind: "systemd", Each: "declared", ObjectField: "name",
			Doc: "a service the fleet declares for the host (pinkie fleet sync) is failed (critical), inactive or missing (warning); resolves when it is active",
			Levels: []Level{
				{Severity: crit, When: `state == "failed"`},
				{Severity: warn, When: `state in ["inactive", "missing", "deactivating"]`, Resolve: `state in ["active", "reloading", "unwatched"]`}},
			Summary: `{{.host}}: declared service {{.name}} is {{.state}}{{with .sub_state}} ({{.}}){{end}}`},
		{Name: "http.down", Kind: "httpcheck", For: Duration(5 * time.Minute), Doc: "a declared domain answers 400 or above, or not at all, for 5 minutes",
			Levels:  []Level{{Severity: crit, When: `!ok`}},
			Summary: `{{.host}}: {{.url}} {{if .status_code}}answers {{.status_code}}{{else}}does not answer{{with .error}}: {{.}}{{end}}{{end}}`},
		{Name: "tls.expiry", Kind: "httpcheck", Doc: "a declared domain's TLS certificate expires within 14 days (warning) or 3 days (critical)",
			Levels: []Level{
				{Severity: crit, When: `tls_days_left != nil && tls_days_left < 3`, Resolve: `tls_days_left == nil || tls_days_left > 5`},
				{Severity: warn, When: `tls_days_left != nil && tls_days_left < 14`, Resolve: `tls_days_left == nil || tls_days_left > 20`}},
			Summary: `{{.host}}: the TLS certificate of {{.url}} expires in {{printf "%.1f" .tls_days_left}} days ({{.tls_not_after}})`},
		{Name: "guest.down", Kind: "guest", Doc: "a container or MicroVM is not running",
			Levels:  []Level{{Severity: warn, When: `!healthy`}},
			Summary: `{{.host}}: {{.type}} {{.name}} is down ({{.active_state}}{{with .sub_state}}/{{.}}{{end}})`},
		{Name: "guest.restarting", Kind: "guest", Doc: "a container or MicroVM restarted 3 times or more within an hour (a restart loop); resolves after an hour without restarts",
			Levels:  []Level{{Severity: warn, When: `restarts_in_hour >= 3`, Resolve: `restarts_in_hour == 0`}},
			Summary: `{{.host}}: {{.type}} {{.name}} restarted {{.restarts_in_hour}} times in the last hour ({{.active_state}}{{with .sub_state}}/{{.}}{{end}}, {{.restarts}} restarts in all)`},
		{Name: "guest.memory", Kind: "guest", Doc: "a container or MicroVM uses more than 90 % of its memory limit (cgroup memory.max); resolves below 85 %",
			Levels:  []Level{{Severity: warn, When: `memory_percent > 90`, Resolve: `memory_percent < 85`}},
			Summary: `{{.host}}: {{.type}} {{.name}} uses {{pct .memory_percent}} of its memory limit ({{bytes .memory_bytes}} of {{bytes .memory_max_bytes}})`},
		{Name: "guest.disk", Kind: "guest", Doc: "the filesystem holding a container's or MicroVM's state directory (its dataset or quota, where it has one) is above 90 % (warning) or 95 % (critical); resolves below 85 % / 92 %",
			Levels: []Level{
				{Severity: crit, When: `disk_percent > 95`, Resolve: `disk_percent < 92`},
				{Severity: warn, When: `disk_percent > 90`, Resolve: `disk_percent < 85`}},
			Summary: `{{.host}}: {{.type}} {{.name}}'s disk ({{.state_dir}}) is {{pct .disk_percent}} full, {{bytes .disk_free_bytes}} free; the guest holds {{bytes .disk_bytes}}`},
		{Name: "ingest.throttled", Kind: "ingest.budget", Doc: "the host sent more than its ingest budget and the hub paused its source; resolves when it is within budget again",
			Levels:  []Level{{Severity: warn, When: `throttled`}},
			Summary: `{{.host}}: sends more than its ingest budget{{with .reason}} ({{.}}){{end}}; the hub paused its source, its events wait in its OUTBOX`},
		{Name: "host.silent", Kind: "heartbeat", Absent: Duration(5 * time.Minute), Severity: crit, Doc: "no heartbeat from a host for 5 minutes",
			Summary: `{{.host}}: no heartbeat for {{dur .silent_seconds}} (last at {{.last_seen}})`},
		{Name: "deploy.failed", Kind: "deploy", Doc: "the host's latest deploy failed, failed to build or was rolled back; resolves on a successful activation",
			Levels:  []Level{{Severity: crit, When: `terminal in ["failed", "build.failed", "rolledback"]`, Resolve: `terminal == "activated"`}},
			Summary: `{{.host}}: deploy {{.terminal}}{{with .revision}} of {{.}}{{end}}{{with .reason}}: {{.}}{{end}}`},
		{Name: "deploy.stale", Kind: "deploy.activated", Absent: Duration(30 * 24 * time.Hour), AbsentAfter: "deploy.", Severity: warn,
			Doc:     "no successful deploy for 30 days (absent: in the alerts config)",
			Summary: `{{.host}}: no successful deploy for {{printf "%.0f" .silent_days}} days`},
	}
}

// Config is the hub configuration's "alerts" section.
type Config struct {
	// RepeatInterval is how often a firing alert is published again
	// (default 24h).
	RepeatInterval Duration `json:"repeat_interval,omitempty"`
	// Disable lists built-in rules to turn off.
	Disable []string `json:"disable,omitempty"`
	// Rules are user rules; one named like a built-in replaces it.
	Rules []Rule `json:"rules,omitempty"`
	// DeployStaleAfter and HostSilentAfter tune the built-in absent rules.
	DeployStaleAfter Duration `json:"deploy_stale_after,omitempty"`
	HostSilentAfter  Duration `json:"host_silent_after,omitempty"`
	// Path and Postgres thresholds enable the growth and size rules.
	// postgres.size is on without them: DefaultPostgresMaxBytes for every
	// database ("disable": ["postgres.size"] turns it off).
	Path     *GrowthLimits `json:"path,omitempty"`
	Postgres *GrowthLimits `json:"postgres,omitempty"`
	// BanBurst is the fail2ban burst window (default 10m).
	BanBurstWindow Duration `json:"ban_burst_window,omitempty"`
	// EvaluationInterval is how often clock-driven rules are evaluated
	// (default 5s); StartupGrace delays them after the hub starts
	// (default 1m), so hosts whose events queued while the hub was down
	// are not reported silent.
	EvaluationInterval Duration  `json:"evaluation_interval,omitempty"`
	StartupGrace       *Duration `json:"startup_grace,omitempty"`
}

// GrowthLimits are the size and growth thresholds of watched paths or
// databases; zero disables a check.
type GrowthLimits struct {
	MaxBytes float64 `json:"max_bytes,omitempty"`
	// Databases are per-database size limits (postgres only), overriding
	// MaxBytes for the databases named; 0 exempts a database.
	Databases         map[string]float64 `json:"databases,omitempty"`
	MaxGrowthPerHour  float64            `json:"max_growth_bytes_per_hour,omitempty"`
	MaxGrowthPerDay   float64            `json:"max_growth_bytes_per_day,omitempty"`
	SeverityOverLimit string             `json:"severity,omitempty"`
}

// Options are the engine options the configuration sets.
func (c Config) Options() Options {
	return Options{RepeatInterval: c.RepeatInterval.D(), BanWindow: c.BanBurstWindow.D()}
}

// DefaultPostgresMaxBytes is postgres.size's limit for a database when the
// configuration names none: 50 GiB.
const DefaultPostgresMaxBytes = 50 << 30

// postgresSizeRule is postgres.size: each database against its own limit
// (g.Databases) or the default one.
func postgresSizeRule(g GrowthLimits, sev string) Rule {
	def := g.MaxBytes
	if def <= 0 {
		def = DefaultPostgresMaxBytes
	}
	names := make([]string, 0, len(g.Databases))
	for n := range g.Databases {
		names = append(names, n)
	}
	sort.Strings(names)
	// limit is a nested conditional over the named databases, in the
	// rule language and in the summary's template.
	limit, text := fmt.Sprintf("%g", def), humanBytes(def)
	for i := len(names) - 1; i >= 0; i-- {
		n, l := names[i], g.Databases[names[i]]
		limit = fmt.Sprintf("(database == %s ? %g : %s)", strconv.Quote(n), l, limit)
		text = fmt.Sprintf("{{if eq .database %s}}%s{{else}}%s{{end}}", strconv.Quote(n), humanBytes(l), text)
	}
	return Rule{Name: "postgres.size", Kind: "postgres",
		Doc: fmt.Sprintf("a PostgreSQL database is above its size limit (alerts.postgres.databases per database, else max_bytes, default %s)", humanBytes(DefaultPostgresMaxBytes)),
		Levels: []Level{{Severity: sev, When: fmt.Sprintf("%s > 0 && size_bytes > %s", limit, limit),
			Resolve: fmt.Sprintf("%s <= 0 || size_bytes < %s * 0.95", limit, limit)}},
		Summary: `{{.host}}: PostgreSQL database {{.database}} is {{bytes .size_bytes}} (limit ` + text + `)`}
}

// ParseConfig decodes the "alerts" section strictly: an unknown key is an
// error naming it.
func ParseConfig(raw []byte) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("alerts: %w", err)
	}
	return c, nil
}

// Compile returns the rule set of a configuration: built-ins less the
// disabled ones, replaced or extended by user rules, all compiled.
func (c Config) Compile() ([]Rule, error) {
	byName := map[string]Rule{}
	for _, r := range BuiltinRules() {
		switch {
		case r.Name == "deploy.stale" && c.DeployStaleAfter > 0:
			r.Absent = c.DeployStaleAfter
		case r.Name == "host.silent" && c.HostSilentAfter > 0:
			r.Absent = c.HostSilentAfter
		}
		byName[r.Name] = r
	}
	pg := c.Postgres
	if pg == nil {
		pg = &GrowthLimits{}
	}
	for kind, g := range map[string]*GrowthLimits{"path": c.Path, "postgres": pg} {
		if g == nil {
			continue
		}
		sev := g.SeverityOverLimit
		if sev == "" {
			sev = events.SeverityWarning
		}
		field := "path"
		if kind == "postgres" {
			field = "database"
		}
		for n, l := range g.Databases {
			if kind != "postgres" {
				return nil, errors.New("alerts: path: databases is for postgres only")
			}
			if l < 0 || math.IsNaN(l) || math.IsInf(l, 0) {
				return nil, fmt.Errorf("alerts: postgres: databases: %q: want a size in bytes (0: no limit), got %g", n, l)
			}
		}
		switch {
		case kind == "postgres":
			byName["postgres.size"] = postgresSizeRule(*g, sev)
		case g.MaxBytes > 0:
			byName[kind+".size"] = Rule{Name: kind + ".size", Kind: kind, Doc: "a watched " + kind + " is above its size limit",
				Levels:  []Level{{Severity: sev, When: fmt.Sprintf("size_bytes > %g", g.MaxBytes), Resolve: fmt.Sprintf("size_bytes < %g", g.MaxBytes*0.95)}},
				Summary: fmt.Sprintf(`{{.host}}: %s {{.%s}} is {{bytes .size_bytes}} (limit %s)`, kind, field, humanBytes(g.MaxBytes))}
		}
		perHour := g.MaxGrowthPerHour
		if g.MaxGrowthPerDay > 0 && (perHour == 0 || g.MaxGrowthPerDay/24 < perHour) {
			perHour = g.MaxGrowthPerDay / 24
		}
		if perHour > 0 {
			byName[kind+".growth"] = Rule{Name: kind + ".growth", Kind: kind, Doc: "a watched " + kind + " grows faster than its limit (linear fit over 6 h)",
				Levels:  []Level{{Severity: sev, When: fmt.Sprintf("growth_bytes_per_hour > %g", perHour), Resolve: fmt.Sprintf("growth_bytes_per_hour < %g", perHour*0.8)}},
				Summary: fmt.Sprintf(`{{.host}}: %s {{.%s}} grows {{bytes .growth_bytes_per_hour}}/h (limit %s/h), now {{bytes .size_bytes}}`, kind, field, humanBytes(perHour))}
		}
	}
	for _, name := range c.Disable {
		if _, ok := byName[name]; !ok {
			return nil, fmt.Errorf("alerts: disable: no rule named %q", name)
		}
		delete(byName, name)
	}
	for _, r := range c.Rules {
		byName[r.Name] = r
	}
	out := make([]Rule, 0, len(byName))
	for _, r := range byName {
		if err := r.compile(); err != nil {
			return nil, fmt.Errorf("alerts: %w", err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
