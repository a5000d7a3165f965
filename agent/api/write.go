package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// write guards a write verb: the token, the body limit, the controller.
func (s *Server) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(w, r) {
			return
		}
		if s.Control == nil {
			writeText(w, http.StatusServiceUnavailable, "this agent does not accept write verbs yet: no controller")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		h(w, r)
	}
}

// authorized checks the bearer token (or patronictl's Basic password) in
// constant time, answering 401 or 403 itself when it fails.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.Token == "" {
		writeText(w, http.StatusForbidden, "write verbs are disabled: the agent has no API token configured")
		return false
	}
	var got string
	if _, pass, ok := r.BasicAuth(); ok {
		got = pass
	} else {
		scheme, tok, found := strings.Cut(r.Header.Get("Authorization"), " ")
		if !found || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgherd"`)
			writeText(w, http.StatusUnauthorized, "authorization required: send Authorization: Bearer <token>")
			return false
		}
		got = strings.TrimSpace(tok)
	}
	// Hashing first makes the comparison constant-time in the length too.
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.Token))
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		s.Log.Warn("api: write verb with a wrong token", "path", r.URL.Path, "remote", r.RemoteAddr)
		writeText(w, http.StatusForbidden, "invalid token")
		return false
	}
	return true
}

// errBody is a request body the verb could not read; code is the status.
type errBody struct {
	code int
	msg  string
}

func (e *errBody) Error() string { return e.msg }

// readBody decodes the JSON body into v. An empty body is an error unless
// optional. Unknown fields are errors when strict.
func readBody(r *http.Request, v any, optional, strict bool) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return &errBody{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
		}
		return &errBody{http.StatusBadRequest, "reading the request body: " + err.Error()}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if optional {
			return nil
		}
		return &errBody{http.StatusBadRequest, "a JSON request body is required"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return &errBody{http.StatusBadRequest, "bad JSON body: " + err.Error()}
	}
	if dec.More() {
		return &errBody{http.StatusBadRequest, "bad JSON body: trailing data after the object"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &errBody{http.StatusBadRequest, "bad JSON body: trailing data after the object"}
	}
	return nil
}

func writeBodyError(w http.ResponseWriter, err error) {
	var eb *errBody
	if errors.As(err, &eb) {
		writeText(w, eb.code, eb.msg)
		return
	}
	writeText(w, http.StatusBadRequest, err.Error())
}

// writeActionError answers a Controller error with its text: 412 for
// ErrNotPossible, 409 for ErrConflict, 503 otherwise.
func (s *Server) writeActionError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, ErrNotPossible):
		code = http.StatusPreconditionFailed
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	}
	s.Log.Warn("api: write verb failed", "path", r.URL.Path, "remote", r.RemoteAddr, "code", code, "err", err)
	writeText(w, code, err.Error())
}

func (s *Server) actionContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.ActionTimeout)
}

// switchoverRequest is the body of POST /switchover and /failover, as
// patronictl sends it.
type switchoverRequest struct {
	Leader      string `json:"leader"`
	Candidate   string `json:"candidate"`
	Member      string `json:"member"` // Patroni's older name of candidate
	ScheduledAt string `json:"scheduled_at"`
}

func (s *Server) switchover(w http.ResponseWriter, r *http.Request) {
	s.manualFailover(w, r, "switchover")
}

func (s *Server) failover(w http.ResponseWriter, r *http.Request) {
	s.manualFailover(w, r, "failover")
}

// manualFailover validates a switchover or failover as Patroni does and
// hands it to the controller. A failover naming the leader is a switchover.
func (s *Server) manualFailover(w http.ResponseWriter, r *http.Request, action string) {
	var req switchoverRequest
	if err := readBody(r, &req, false, false); err != nil {
		writeBodyError(w, err)
		return
	}
	snap := s.Source.Snapshot()
	now := s.Now()
	candidate := req.Candidate
	if candidate == "" {
		candidate = req.Member
	}
	switch {
	case action == "failover" && candidate == "":
		writeText(w, http.StatusBadRequest, "failover could be performed only to a specific candidate")
		return
	case action == "switchover" && req.Leader == "":
		writeText(w, http.StatusBadRequest, "switchover could be performed only from a specific leader")
		return
	}
	var at time.Time
	if req.ScheduledAt != "" {
		if action == "failover" {
			writeText(w, http.StatusBadRequest, "failover can't be scheduled")
			return
		}
		if snap.Paused {
			writeText(w, http.StatusBadRequest, "can't schedule switchover in the paused state")
			return
		}
		code, msg, t := parseSchedule(req.ScheduledAt, now)
		if code != 0 {
			writeText(w, code, msg)
			return
		}
		at = t
	}
	if snap.Paused && candidate == "" {
		writeText(w, http.StatusBadRequest, "switchover is possible only to a specific candidate in a paused state")
		return
	}
	if req.Leader != "" {
		action = "switchover"
	}
	if req.Leader != "" && req.Leader == candidate {
		writeText(w, http.StatusBadRequest, "switchover target and source are the same")
		return
	}
	if msg := failoverImpossible(&snap, req.Leader, candidate, action); msg != "" {
		writeText(w, http.StatusPreconditionFailed, msg)
		return
	}
	s.Log.Info("api: "+action+" requested", "leader", req.Leader, "candidate", candidate, "scheduled_at", at, "remote", r.RemoteAddr)
	ctx, cancel := s.actionContext(r)
	defer cancel()
	var err error
	if action == "failover" {
		err = s.Control.Failover(ctx, candidate)
	} else {
		err = s.Control.Switchover(ctx, req.Leader, candidate, at)
	}
	if err != nil {
		s.writeActionError(w, r, err)
		return
	}
	switch {
	case !at.IsZero():
		writeText(w, http.StatusAccepted, "switchover scheduled")
	case candidate != "" && action == "failover":
		writeText(w, http.StatusOK, fmt.Sprintf("Successfully failed over to %q", candidate))
	case candidate != "":
		writeText(w, http.StatusOK, fmt.Sprintf("Successfully switched over to %q", candidate))
	default:
		writeText(w, http.StatusOK, "Successfully switched over")
	}
}

// parseSchedule reads scheduled_at: RFC 3339 with a zone. A missing zone is
// 400, an unparsable or past time 422, as in Patroni.
func parseSchedule(v string, now time.Time) (int, string, time.Time) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04"} {
			if _, e := time.Parse(layout, v); e == nil {
				return http.StatusBadRequest, "timezone information is mandatory for the scheduled switchover", time.Time{}
			}
		}
		return http.StatusUnprocessableEntity, "unable to parse scheduled timestamp; use RFC 3339, e.g. 2026-04-14T20:27:00+00:00", time.Time{}
	}
	if t.Before(now) {
		return http.StatusUnprocessableEntity, "cannot schedule switchover in the past", time.Time{}
	}
	return 0, "", t
}

// failoverImpossible checks the request against the cluster the loop last
// saw, returning why it cannot be done ("" when it may). Whether the
// candidate is healthy enough is the controller's to say (ErrNotPossible).
func failoverImpossible(snap *Snapshot, leader, candidate, action string) string {
	c := &snap.Cluster
	if leader != "" && leader != c.Leader {
		return fmt.Sprintf("leader name does not match: the leader is %q", c.Leader)
	}
	eligible := func(m *Member) string {
		switch {
		case m.Name == c.Leader:
			return "candidate is already the leader"
		case truthy(m.Tags["nofailover"]):
			return "candidate is tagged nofailover"
		case c.SynchronousMode && action == "switchover" && !slices.Contains(c.SyncStandbys, m.Name):
			return "candidate name does not match with sync_standby"
		}
		return ""
	}
	if candidate != "" {
		for i := range c.Members {
			if c.Members[i].Name == candidate {
				return eligible(&c.Members[i])
			}
		}
		return fmt.Sprintf("candidate %q does not exist", candidate)
	}
	for i := range c.Members {
		if eligible(&c.Members[i]) == "" {
			return ""
		}
	}
	if c.SynchronousMode {
		return action + " is not possible: can not find sync_standby"
	}
	return action + " is not possible: cluster does not have members except leader"
}

// restartRequest is the body of POST /restart; every field is a condition.
type restartRequest struct {
	Role           string `json:"role"`
	RestartPending bool   `json:"restart_pending"`
}

func (s *Server) restart(w http.ResponseWriter, r *http.Request) {
	var req restartRequest
	if err := readBody(r, &req, true, true); err != nil {
		writeBodyError(w, err)
		return
	}
	snap := s.Source.Snapshot()
	switch req.Role {
	case "", RolePrimary, RoleReplica, RoleStandbyLeader:
	case "master":
		req.Role = RolePrimary
	default:
		writeText(w, http.StatusBadRequest, "PostgreSQL role should be either primary, standby_leader, or replica")
		return
	}
	if (req.Role != "" && req.Role != snap.Role) || (req.RestartPending && !snap.PendingRestart) {
		writeText(w, http.StatusServiceUnavailable, "restart conditions are not satisfied")
		return
	}
	s.Log.Info("api: restart requested", "remote", r.RemoteAddr)
	ctx, cancel := s.actionContext(r)
	defer cancel()
	if err := s.Control.Restart(ctx); err != nil {
		s.writeActionError(w, r, err)
		return
	}
	writeText(w, http.StatusOK, "restarted successfully")
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if err := readBody(r, &struct{}{}, true, false); err != nil {
		writeBodyError(w, err)
		return
	}
	s.Log.Info("api: reload requested", "remote", r.RemoteAddr)
	ctx, cancel := s.actionContext(r)
	defer cancel()
	if err := s.Control.Reload(ctx); err != nil {
		s.writeActionError(w, r, err)
		return
	}
	writeText(w, http.StatusAccepted, "reload scheduled")
}

func (s *Server) pause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := readBody(r, &struct{}{}, true, false); err != nil {
			writeBodyError(w, err)
			return
		}
		s.setPause(w, r, paused)
	}
}

func (s *Server) setPause(w http.ResponseWriter, r *http.Request, paused bool) {
	s.Log.Info("api: pause requested", "pause", paused, "remote", r.RemoteAddr)
	ctx, cancel := s.actionContext(r)
	defer cancel()
	if err := s.Control.Pause(ctx, paused); err != nil {
		s.writeActionError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"pause": paused})
}

// patchConfig accepts Patroni's PATCH /config {"pause": true|false}; the
// rest of the configuration comes from the spec, through pgherd apply.
func (s *Server) patchConfig(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Pause *bool `json:"pause"`
	}
	if err := readBody(r, &req, false, true); err != nil {
		writeBodyError(w, err)
		return
	}
	if req.Pause == nil {
		writeText(w, http.StatusBadRequest, `PATCH /config takes {"pause": true|false}; the rest of the configuration comes from the spec, through pgherd apply`)
		return
	}
	s.setPause(w, r, *req.Pause)
}

func (s *Server) reinitialize(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Force      bool `json:"force"`
		FromLeader bool `json:"from_leader"`
	}
	if err := readBody(r, &req, true, true); err != nil {
		writeBodyError(w, err)
		return
	}
	snap := s.Source.Snapshot()
	if snap.IsLeader || snap.Role == RolePrimary {
		writeText(w, http.StatusServiceUnavailable, "I am the leader, can not reinitialize")
		return
	}
	s.Log.Info("api: reinitialize requested", "remote", r.RemoteAddr)
	ctx, cancel := s.actionContext(r)
	defer cancel()
	if err := s.Control.Reinitialize(ctx); err != nil {
		s.writeActionError(w, r, err)
		return
	}
	writeText(w, http.StatusOK, "reinitialize started")
}
