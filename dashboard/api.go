package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
)

// The API answers with the CLI's --json shapes where the CLI has one:
// /api/hosts (pinkie hosts --json), /api/hosts/{host} (pinkie hosts HOST
// --json), /api/alerts (pinkie alerts --json), /api/silences (pinkie
// silence ls --json), /api/last-deploy (pinkie last-deploy --json, without
// its exit code), POST /api/deploys[/plan] (pinkie deploy [--dry-run] --json).

func (s *Server) apiOverview(w http.ResponseWriter, r *http.Request, _ *Session) error {
	ov, err := s.overview(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ov)
	return nil
}

func (s *Server) apiHosts(w http.ResponseWriter, r *http.Request, _ *Session) error {
	inv, err := s.o.Store.Bucket(r.Context(), events.BucketInventory, "")
	if err != nil {
		return err
	}
	hosts, err := fleetview.Hosts(inv)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, hosts)
	return nil
}

func (s *Server) apiHost(w http.ResponseWriter, r *http.Request, _ *Session) error {
	name := r.PathValue("host")
	v, err := s.hostView(r.Context(), name)
	if err != nil {
		return err
	}
	if v == nil {
		return notFound("host %q is not in the inventory (no event from it yet)", name)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// plotJSON is one plot of the host page (GET /api/hosts/{host}/series).
type plotJSON struct {
	Title  string       `json:"title"`
	Unit   string       `json:"unit"`
	FullAt *time.Time   `json:"predicted_full_at,omitempty"`
	Series []SeriesJSON `json:"series"`
}

func (s *Server) apiSeries(w http.ResponseWriter, r *http.Request, _ *Session) error {
	hd, err := s.hostDetail(r.Context(), r.PathValue("host"))
	if err != nil {
		return err
	}
	out := []plotJSON{}
	for _, p := range hd.Plots {
		out = append(out, plotJSON{Title: p.Title, Unit: p.Unit, FullAt: p.FullAt, Series: p.Series})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) apiAlerts(w http.ResponseWriter, r *http.Request, _ *Session) error {
	d, _, err := s.alertsData(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d.Alerts)
	return nil
}

func (s *Server) apiSilences(w http.ResponseWriter, r *http.Request, _ *Session) error {
	d, _, err := s.alertsData(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d.Silences)
	return nil
}

// LastDeployResult is /api/last-deploy (pinkie last-deploy --json without
// exit_code).
type LastDeployResult struct {
	WarnAfterSeconds float64                `json:"warn_after_seconds"`
	FailAfterSeconds float64                `json:"fail_after_seconds"`
	Hosts            []fleetview.LastDeploy `json:"hosts"`
}

func (s *Server) apiLastDeploy(w http.ResponseWriter, r *http.Request, _ *Session) error {
	ov, err := s.overview(r.Context())
	if err != nil {
		return err
	}
	res := LastDeployResult{WarnAfterSeconds: s.o.WarnAfter.Seconds(), FailAfterSeconds: s.o.FailAfter.Seconds(), Hosts: []fleetview.LastDeploy{}}
	for _, h := range ov.Hosts {
		if h.Deploy.Record != nil || h.Declared {
			res.Hosts = append(res.Hosts, h.Deploy)
		}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) apiDeploys(w http.ResponseWriter, r *http.Request, _ *Session) error {
	rows, _, err := s.deploys(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rows)
	return nil
}

func (s *Server) apiMe(w http.ResponseWriter, r *http.Request, sess *Session) error {
	writeJSON(w, http.StatusOK, map[string]any{"name": sess.Name, "role": sess.Role, "csrf_token": sess.CSRF})
	return nil
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the request is too large (at most %d bytes)", mbe.Limit)}
		}
		return httpError{http.StatusBadRequest, "the request body is not valid JSON for this call: " + err.Error()}
	}
	return nil
}

func (s *Server) apiSilenceCreate(w http.ResponseWriter, r *http.Request, sess *Session) error {
	var req SilenceRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	sa, err := s.createSilence(r, sess, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, sa)
	return nil
}

func (s *Server) apiSilenceDelete(w http.ResponseWriter, r *http.Request, sess *Session) error {
	if err := s.expireSilence(r, sess, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type deployBody struct {
	Selector string `json:"selector"`
	Goal     string `json:"goal,omitempty"`
	BuildOn  string `json:"build_on,omitempty"`
}

func (s *Server) apiDeployPlan(w http.ResponseWriter, r *http.Request, _ *Session) error {
	var b deployBody
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	req, err := deployRequestOf(b.Selector, b.Goal, b.BuildOn)
	if err != nil {
		return err
	}
	plan, err := s.planOrFail(r, req)
	if err != nil {
		return err
	}
	plan.DryRun = true
	writeJSON(w, http.StatusOK, plan)
	return nil
}

func (s *Server) apiDeployStart(w http.ResponseWriter, r *http.Request, sess *Session) error {
	var b deployBody
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	req, err := deployRequestOf(b.Selector, b.Goal, b.BuildOn)
	if err != nil {
		return err
	}
	res, err := s.startDeploy(r, sess, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, res)
	return nil
}
