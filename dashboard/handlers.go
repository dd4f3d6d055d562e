package dashboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
	"github.com/pinkiefleet/pinkie/projections"
)

// httpError is an error the user caused or may act on: its message is
// shown on the page (or in the API's JSON) with its status.
type httpError struct {
	Status  int
	Message string
}

func (e httpError) Error() string { return e.Message }

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Session *Session
	// Topics are the live-update topics the page re-renders on.
	Topics string
	AsOf   time.Time
	Newest time.Time
	Data   any
	Flash  string
	Site   string
	// Terminal is the host page's web terminal, for operators.
	Terminal *terminalView
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Site = s.o.Title
	if p.AsOf.IsZero() {
		p.AsOf = s.o.Now()
	}
	if p.Session == nil {
		p.Session = s.o.Auth.session(r)
	}
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, p); err != nil {
		s.log.Error("dashboard: render", "template", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail answers an error: its message and status for an httpError, a
// generic 500 otherwise (the details go to the log, not the page).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he httpError
	if !errors.As(err, &he) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			he = httpError{http.StatusRequestEntityTooLarge, "the request is too large"}
		} else {
			s.log.Error("dashboard: request failed", "path", r.URL.Path, "err", err)
			he = httpError{http.StatusInternalServerError, "the hub could not answer this (see its log)"}
		}
	}
	if !wantsHTML(r) {
		writeJSON(w, he.Status, map[string]string{"error": he.Message})
		return
	}
	s.render(w, r, he.Status, "error.html", page{Title: http.StatusText(he.Status), Data: he})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// query reads a bounded query parameter.
func query(r *http.Request, key string, max int) (string, error) {
	v := r.URL.Query().Get(key)
	if len(v) > max {
		return "", httpError{http.StatusBadRequest, fmt.Sprintf("%s is too long (%d characters; at most %d)", key, len(v), max)}
	}
	return v, nil
}

func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request, sess *Session) error {
	tag, err := query(r, "tag", 64)
	if err != nil {
		return err
	}
	q, err := query(r, "q", 64)
	if err != nil {
		return err
	}
	ov, err := s.overview(r.Context())
	if err != nil {
		return err
	}
	total := len(ov.Hosts)
	ov.Hosts = filterRows(ov.Hosts, tag, q)
	s.render(w, r, http.StatusOK, "overview.html", page{Title: "Fleet", Nav: "fleet", Session: sess, Topics: "host:* alerts deploys fleet",
		AsOf: ov.AsOf, Newest: ov.Newest, Data: map[string]any{"O": ov, "Tag": tag, "Q": q, "Total": total}})
	return nil
}

func (s *Server) hostPage(w http.ResponseWriter, r *http.Request, sess *Session) error {
	name := r.PathValue("host")
	hd, err := s.hostDetail(r.Context(), name)
	if err != nil {
		return err
	}
	p := page{Title: name, Nav: "fleet", Session: sess, Topics: "host:" + name + " alerts deploys guests", Newest: hd.Newest, Data: hd}
	if s.o.Terminal != nil && sess.CanOperate() {
		p.Terminal = &terminalView{Host: name, Built: terminalBuilt()}
		if p.Terminal.Built {
			w.Header().Set("Content-Security-Policy", terminalCSP)
		}
	}
	s.render(w, r, http.StatusOK, "host.html", p)
	return nil
}

type alertsData struct {
	Alerts   []projections.ActiveAlert `json:"alerts"`
	Silences []fleetview.Silence       `json:"silences"`
	Recent   []events.Alert            `json:"recent"`
}

func (s *Server) alertsData(r *http.Request) (alertsData, time.Time, error) {
	now := s.o.Now()
	recs, err := s.o.Store.Bucket(r.Context(), events.BucketAlerts, "")
	if err != nil {
		return alertsData{}, now, err
	}
	alerts, silences, err := fleetview.Alerts(recs, now)
	if err != nil {
		return alertsData{}, now, err
	}
	if alerts == nil {
		alerts = []projections.ActiveAlert{}
	}
	d := alertsData{Alerts: alerts, Silences: fleetview.Silences(alerts, silences, now, false), Recent: []events.Alert{}}
	var newest time.Time
	for _, a := range alerts {
		if a.EventTime.After(newest) {
			newest = a.EventTime
		}
	}
	ms, err := s.o.Store.History(r.Context(), events.StreamAlerts, []string{events.AlertSubjects}, now.Add(-7*24*time.Hour), 50)
	if err != nil {
		return d, newest, err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		var a events.Alert
		if ms[i].Event.DataAs(&a) == nil {
			d.Recent = append(d.Recent, a)
		}
	}
	return d, newest, nil
}

func (s *Server) alertsPage(w http.ResponseWriter, r *http.Request, sess *Session) error {
	d, newest, err := s.alertsData(r)
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "alerts.html", page{Title: "Alerts", Nav: "alerts", Session: sess, Topics: "alerts", Newest: newest,
		Data: map[string]any{"D": d, "Prefill": r.URL.Query()}, Flash: r.URL.Query().Get("flash")})
	return nil
}

// DeployRow is one host's latest deploy (GET /api/deploys).
type DeployRow struct {
	Host    string    `json:"host"`
	Running bool      `json:"running"`
	Phase   string    `json:"phase"`
	Outcome string    `json:"outcome"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason,omitempty"`
	Goal    string    `json:"goal,omitempty"`
	BuildOn string    `json:"build_on,omitempty"`
	By      string    `json:"requested_by,omitempty"`
	// Steps are the phases seen for the latest request, in order.
	Steps []string `json:"steps"`
}

func (s *Server) deploys(r *http.Request) ([]DeployRow, time.Time, error) {
	lds, err := s.readLastDeploys(r.Context())
	if err != nil {
		return nil, time.Time{}, err
	}
	rows := []DeployRow{}
	var newest time.Time
	// The phases of recent requests (a day) come from one read of DEPLOY.
	recent := s.o.Now().Add(-24 * time.Hour)
	from := time.Time{}
	for _, rec := range lds {
		if at := rec.LastAttempt; at != nil && at.RequestedAt.After(recent) && (from.IsZero() || at.RequestedAt.Before(from)) {
			from = at.RequestedAt
		}
	}
	var phases []Stored
	if !from.IsZero() {
		var err error
		if phases, err = s.o.Store.History(r.Context(), events.StreamDeploy, []string{events.DeploySubjects}, from.Add(-time.Minute), 20000); err != nil {
			return nil, newest, err
		}
	}
	steps := map[string][]string{} // request id → phases
	for _, m := range phases {
		_, rest, _ := events.HostFromSubject(m.Subject)
		if rest == "requested" {
			steps[m.Event.ID()] = append(steps[m.Event.ID()], rest)
			continue
		}
		var p events.DeployPhase
		if m.Event.DataAs(&p) == nil {
			steps[p.RequestID] = append(steps[p.RequestID], rest)
		}
	}
	for _, h := range sortedKeys(lds) {
		rec := lds[h]
		if rec == nil || rec.LastAttempt == nil {
			continue
		}
		at := rec.LastAttempt
		row := DeployRow{Host: h, Running: at.Outcome == "in-progress", Phase: at.Phase, Outcome: at.Outcome, Since: at.RequestedAt,
			Reason: at.Reason, Goal: at.Goal, BuildOn: at.BuildOn, By: at.RequestedBy, Steps: steps[at.RequestID]}
		if row.Steps == nil {
			row.Steps = []string{}
		}
		if at.PhaseTime.After(newest) {
			newest = at.PhaseTime
		}
		rows = append(rows, row)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Running && !rows[j].Running })
	return rows, newest, nil
}

func (s *Server) deploysPage(w http.ResponseWriter, r *http.Request, sess *Session) error {
	rows, newest, err := s.deploys(r)
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "deploys.html", page{Title: "Deploys", Nav: "deploys", Session: sess, Topics: "deploys", Newest: newest,
		Data: map[string]any{"Rows": rows, "CanDeploy": s.o.Deployer != nil}, Flash: r.URL.Query().Get("flash")})
	return nil
}

// --- silences ---

var (
	silenceLabelRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	silenceIDRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

const silenceMaxFor = 90 * 24 * time.Hour

// SilenceRequest is POST /api/silences' body.
type SilenceRequest struct {
	Matchers map[string]string `json:"matchers"`
	// For is a duration: 30m, 2h, 3d.
	For     string `json:"for"`
	Comment string `json:"comment,omitempty"`
}

func parseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := time.ParseDuration(n + "h")
		return d * 24, err
	}
	return time.ParseDuration(s)
}

func (s *Server) createSilence(r *http.Request, sess *Session, req SilenceRequest) (events.SilenceAdded, error) {
	bad := func(f string, a ...any) error { return httpError{http.StatusBadRequest, fmt.Sprintf(f, a...)} }
	if len(req.Matchers) == 0 {
		return events.SilenceAdded{}, bad("give at least one matcher, e.g. host=goliath")
	}
	if len(req.Matchers) > 8 {
		return events.SilenceAdded{}, bad("at most 8 matchers")
	}
	for k, v := range req.Matchers {
		if !silenceLabelRE.MatchString(k) || len(k) > 32 {
			return events.SilenceAdded{}, bad("matcher label %q: use lower-case letters, digits and _ (host, rule, object, severity, kind)", k)
		}
		if v == "" || len(v) > 128 {
			return events.SilenceAdded{}, bad("matcher %s: give a pattern of 1 to 128 characters", k)
		}
		if _, err := path.Match(v, ""); err != nil {
			return events.SilenceAdded{}, bad("matcher %s=%q: bad pattern: %v", k, v, err)
		}
	}
	d, err := parseDuration(req.For)
	if err != nil || d <= 0 {
		return events.SilenceAdded{}, bad("duration %q: want a positive duration such as 30m, 2h or 3d", req.For)
	}
	if d > silenceMaxFor {
		return events.SilenceAdded{}, bad("a silence lasts at most 90 days")
	}
	if len(req.Comment) > 500 {
		return events.SilenceAdded{}, bad("the comment is too long (at most 500 characters)")
	}
	now := s.o.Now().UTC().Truncate(time.Second)
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	sa := events.SilenceAdded{ID: hex.EncodeToString(idb[:]), Matchers: req.Matchers, StartsAt: now, EndsAt: now.Add(d),
		Comment: req.Comment, CreatedBy: sess.Name + " (dashboard)"}
	return sa, s.publish(r, "silence.added", &sa, now)
}

func (s *Server) publish(r *http.Request, kind string, data any, now time.Time) error {
	k, ok := events.Lookup(kind)
	if !ok {
		return fmt.Errorf("no event kind %s", kind)
	}
	ev, err := events.New(k, "dashboard", "dashboard", now, data)
	if err != nil {
		return err
	}
	if err := s.o.Store.Publish(r.Context(), k.HubSubject(data), ev); err != nil {
		return fmt.Errorf("publish %s: %w", kind, err)
	}
	s.log.Info("dashboard: published", "event_type", k.Type(), "event_id", ev.ID())
	return nil
}

// existingSilence finds an active silence by id.
func (s *Server) existingSilence(r *http.Request, id string) (events.SilenceAdded, error) {
	if !silenceIDRE.MatchString(id) {
		return events.SilenceAdded{}, httpError{http.StatusBadRequest, fmt.Sprintf("%q is not a silence id", id)}
	}
	recs, err := s.o.Store.Bucket(r.Context(), events.BucketAlerts, projections.SilenceKey(id))
	if err != nil {
		return events.SilenceAdded{}, err
	}
	b, ok := recs[projections.SilenceKey(id)]
	if !ok {
		return events.SilenceAdded{}, notFound("no silence %s (it may have ended)", id)
	}
	var as projections.ActiveSilence
	if err := json.Unmarshal(b, &as); err != nil {
		return events.SilenceAdded{}, err
	}
	return as.SilenceAdded, nil
}

func (s *Server) expireSilence(r *http.Request, sess *Session, id string) error {
	if _, err := s.existingSilence(r, id); err != nil {
		return err
	}
	return s.publish(r, "silence.removed", &events.SilenceRemoved{ID: id, RemovedBy: sess.Name + " (dashboard)"}, s.o.Now().UTC())
}

func (s *Server) silenceCreateForm(w http.ResponseWriter, r *http.Request, sess *Session) error {
	m := map[string]string{}
	for _, k := range []string{"host", "rule", "object", "severity"} {
		if v := strings.TrimSpace(r.PostFormValue(k)); v != "" {
			m[k] = v
		}
	}
	sa, err := s.createSilence(r, sess, SilenceRequest{Matchers: m, For: r.PostFormValue("for"), Comment: r.PostFormValue("comment")})
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/alerts?flash="+urlq("silence "+sa.ID+" added until "+sa.EndsAt.Format(time.RFC3339)), http.StatusSeeOther)
	return nil
}

func (s *Server) silenceExtendForm(w http.ResponseWriter, r *http.Request, sess *Session) error {
	old, err := s.existingSilence(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	sa, err := s.createSilence(r, sess, SilenceRequest{Matchers: old.Matchers, For: r.PostFormValue("for"), Comment: old.Comment})
	if err != nil {
		return err
	}
	if err := s.expireSilence(r, sess, old.ID); err != nil {
		return err
	}
	http.Redirect(w, r, "/alerts?flash="+urlq("silence "+old.ID+" replaced by "+sa.ID+", until "+sa.EndsAt.Format(time.RFC3339)), http.StatusSeeOther)
	return nil
}

func (s *Server) silenceExpireForm(w http.ResponseWriter, r *http.Request, sess *Session) error {
	id := r.PathValue("id")
	if err := s.expireSilence(r, sess, id); err != nil {
		return err
	}
	http.Redirect(w, r, "/alerts?flash="+urlq("silence "+id+" expired"), http.StatusSeeOther)
	return nil
}

// --- deploys ---

var goals = []string{"switch", "boot", "test", "dry-activate"}

// deployStartTimeout bounds the local builds of a deploy started here.
const deployStartTimeout = 2 * time.Hour

func deployRequestOf(selector, goal, buildOn string) (DeployRequest, error) {
	bad := func(f string, a ...any) error { return httpError{http.StatusBadRequest, fmt.Sprintf(f, a...)} }
	if len(selector) > 256 {
		return DeployRequest{}, bad("the selector is too long (at most 256 characters)")
	}
	sels := strings.Fields(selector)
	if len(sels) == 0 {
		return DeployRequest{}, bad("name the hosts to deploy: a host, @tag, glob, @a&@b, !host or all")
	}
	for _, sel := range sels {
		if strings.ContainsAny(sel, "\"'`$;|<>(){}\\") {
			return DeployRequest{}, bad("selector %q: unexpected character; use host names, @tags, globs, &, ! and ,", sel)
		}
	}
	if goal != "" && !contains(goals, goal) {
		return DeployRequest{}, bad("goal %q: want switch, boot, test or dry-activate", goal)
	}
	if buildOn != "" && buildOn != "local" && buildOn != "target" && events.ValidHost(buildOn) != nil {
		return DeployRequest{}, bad("build location %q: want local, target or a builder host", buildOn)
	}
	return DeployRequest{Selectors: sels, Goal: goal, BuildOn: buildOn}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) deployer() (Deployer, error) {
	if s.o.Deployer == nil {
		return nil, httpError{http.StatusNotImplemented, "deploys are not configured on this hub (set dashboard.flake in its config)"}
	}
	return s.o.Deployer, nil
}

func (s *Server) planOrFail(r *http.Request, req DeployRequest) (fleetview.Deploy, error) {
	d, err := s.deployer()
	if err != nil {
		return fleetview.Deploy{}, err
	}
	plan, err := d.Plan(r.Context(), req)
	if errors.Is(err, ErrBadRequest) {
		return plan, httpError{http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrBadRequest.Error()+": ")}
	}
	return plan, err
}

func (s *Server) deployPlanForm(w http.ResponseWriter, r *http.Request, sess *Session) error {
	req, err := deployRequestOf(r.PostFormValue("selector"), r.PostFormValue("goal"), r.PostFormValue("build_on"))
	if err != nil {
		return err
	}
	plan, err := s.planOrFail(r, req)
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "plan.html", page{Title: "Deploy plan", Nav: "deploys", Session: sess,
		Data: map[string]any{"Plan": plan, "Selector": strings.Join(req.Selectors, " "), "Goal": req.Goal, "BuildOn": req.BuildOn}})
	return nil
}

func (s *Server) deployStartForm(w http.ResponseWriter, r *http.Request, sess *Session) error {
	req, err := deployRequestOf(r.PostFormValue("selector"), r.PostFormValue("goal"), r.PostFormValue("build_on"))
	if err != nil {
		return err
	}
	res, err := s.startDeploy(r, sess, req)
	if err != nil {
		return err
	}
	hosts := make([]string, 0, len(res.Hosts))
	for _, h := range res.Hosts {
		line := h.Host + " " + h.Outcome
		if h.Reason != "" {
			line += " (" + h.Reason + ")"
		}
		hosts = append(hosts, line)
	}
	http.Redirect(w, r, "/deploys?flash="+urlq("deploy sent: "+strings.Join(hosts, ", ")), http.StatusSeeOther)
	return nil
}

func (s *Server) startDeploy(r *http.Request, sess *Session, req DeployRequest) (fleetview.Deploy, error) {
	d, err := s.deployer()
	if err != nil {
		return fleetview.Deploy{}, err
	}
	req.RequestedBy = sess.Name + " (dashboard)"
	// Local builds run before the requests are sent; a browser that stops
	// waiting must not cancel them halfway.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), deployStartTimeout)
	defer cancel()
	res, err := d.Start(ctx, req)
	if errors.Is(err, ErrBadRequest) {
		return res, httpError{http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrBadRequest.Error()+": ")}
	}
	if err == nil {
		s.log.Info("dashboard: deploy requested", "user", sess.Name, "selectors", strings.Join(req.Selectors, " "), "hosts", len(res.Hosts))
	}
	return res, err
}

// urlq escapes a flash message for a redirect, cut so the address stays
// well below maxQuery.
func urlq(s string) string {
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	return template.URLQueryEscaper(s)
}
