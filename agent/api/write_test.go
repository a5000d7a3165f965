package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeVerbs are every write verb with a body it accepts.
var writeVerbs = []struct {
	method, path, body string
}{
	{http.MethodPost, "/switchover", `{"leader":"pg1","candidate":"pg2"}`},
	{http.MethodPost, "/failover", `{"candidate":"pg2"}`},
	{http.MethodPost, "/restart", ``},
	{http.MethodPost, "/reload", ``},
	{http.MethodPost, "/pause", ``},
	{http.MethodPost, "/resume", ``},
	{http.MethodPatch, "/config", `{"pause":true}`},
	{http.MethodPost, "/reinitialize", ``},
}

func TestWriteAuth(t *testing.T) {
	basic := func(user, pass string) []string {
		return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
	}
	cases := []struct {
		name     string
		token    string // the server's
		header   []string
		want     int
		wantCall bool
	}{
		{"no header", token, nil, http.StatusUnauthorized, false},
		{"empty bearer", token, []string{"Authorization", "Bearer "}, http.StatusUnauthorized, false},
		{"other scheme", token, []string{"Authorization", "Token " + token}, http.StatusUnauthorized, false},
		{"wrong token", token, bearer("nope"), http.StatusForbidden, false},
		{"token prefix", token, bearer(token[:5]), http.StatusForbidden, false},
		{"token with a suffix", token, bearer(token + "x"), http.StatusForbidden, false},
		{"wrong basic password", token, basic("patroni", "nope"), http.StatusForbidden, false},
		{"write verbs disabled", "", bearer(token), http.StatusForbidden, false},
		{"disabled even with an empty token", "", bearer(""), http.StatusForbidden, false},
		{"right token", token, bearer(token), 0, true},
		{"lower-case scheme", token, []string{"Authorization", "bearer " + token}, 0, true},
		{"basic with the token as password", token, basic("patroni", token), 0, true},
	}
	for _, v := range writeVerbs {
		for _, c := range cases {
			t.Run(v.path+"/"+c.name, func(t *testing.T) {
				snap := primary()
				if v.path == "/reinitialize" {
					snap = replica()
				}
				rec := &recorder{}
				s := newServer(snap, rec)
				s.Token = c.token
				code, body, hdr := do(t, s.Handler(), v.method, v.path, v.body, c.header...)
				if c.want != 0 && code != c.want {
					t.Errorf("%s %s = %d %q, want %d", v.method, v.path, code, body, c.want)
				}
				if c.want == 0 && code >= 300 {
					t.Errorf("%s %s = %d %q, want success", v.method, v.path, code, body)
				}
				if code == http.StatusUnauthorized && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without WWW-Authenticate: Bearer")
				}
				if got := len(rec.calls) > 0; got != c.wantCall {
					t.Errorf("controller called = %v, want %v", got, c.wantCall)
				}
			})
		}
	}
}

func TestWriteVerbs(t *testing.T) {
	future := now.Add(time.Hour).Format(time.RFC3339)
	paused := with(primary(), func(s *Snapshot) { s.Paused = true })
	async := with(primary(), func(s *Snapshot) { s.Cluster.SynchronousMode = false })
	alone := with(async, func(s *Snapshot) { s.Cluster.Members = s.Cluster.Members[:1] })
	pending := with(primary(), func(s *Snapshot) { s.PendingRestart = true })
	tests := []struct {
		name      string
		snap      Snapshot
		method    string
		path      string
		body      string
		ctlErr    error
		want      int
		wantBody  string // substring
		wantCalls []call
	}{
		{name: "switchover", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg2"}`,
			want: 200, wantBody: `Successfully switched over to "pg2"`, wantCalls: []call{{Verb: "switchover", Leader: "pg1", Candidate: "pg2"}}},
		{name: "switchover with member instead of candidate", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","member":"pg2"}`,
			want: 200, wantCalls: []call{{Verb: "switchover", Leader: "pg1", Candidate: "pg2"}}},
		{name: "switchover to any candidate", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1"}`,
			want: 200, wantBody: "Successfully switched over", wantCalls: []call{{Verb: "switchover", Leader: "pg1"}}},
		{name: "switchover scheduled", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg2","scheduled_at":"` + future + `"}`,
			want: 202, wantBody: "scheduled", wantCalls: []call{{Verb: "switchover", Leader: "pg1", Candidate: "pg2", At: now.Add(time.Hour)}}},
		{name: "switchover scheduled in the past", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","scheduled_at":"2020-01-01T00:00:00Z"}`,
			want: 422, wantBody: "past"},
		{name: "switchover scheduled without a zone", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","scheduled_at":"2030-01-01T00:00:00"}`,
			want: 400, wantBody: "timezone"},
		{name: "switchover scheduled at nonsense", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","scheduled_at":"tomorrow"}`,
			want: 422, wantBody: "parse"},
		{name: "switchover scheduled while paused", snap: paused, method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg2","scheduled_at":"` + future + `"}`,
			want: 400, wantBody: "paused"},
		{name: "switchover while paused needs a candidate", snap: paused, method: "POST", path: "/switchover", body: `{"leader":"pg1"}`,
			want: 400, wantBody: "specific candidate"},
		{name: "switchover while paused to a candidate", snap: paused, method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg2"}`,
			want: 200, wantCalls: []call{{Verb: "switchover", Leader: "pg1", Candidate: "pg2"}}},
		{name: "switchover without leader", snap: primary(), method: "POST", path: "/switchover", body: `{"candidate":"pg2"}`,
			want: 400, wantBody: "specific leader"},
		{name: "switchover from the wrong leader", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg2","candidate":"pg3"}`,
			want: 412, wantBody: "leader name does not match"},
		{name: "switchover to an unknown candidate", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg9"}`,
			want: 412, wantBody: `candidate "pg9" does not exist`},
		{name: "switchover to a nofailover member", snap: async, method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg3"}`,
			want: 412, wantBody: "nofailover"},
		{name: "switchover to a non-sync member in sync mode", snap: with(primary(), func(s *Snapshot) { s.Cluster.Members[2].Tags = nil }),
			method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg3"}`, want: 412, wantBody: "sync_standby"},
		{name: "switchover to itself", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg1"}`,
			want: 400, wantBody: "same"},
		{name: "switchover with no other member", snap: alone, method: "POST", path: "/switchover", body: `{"leader":"pg1"}`,
			want: 412, wantBody: "does not have members except leader"},
		{name: "switchover refused by the controller", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg2"}`,
			ctlErr: fmt.Errorf("pg2 lags 20 MB: %w", ErrNotPossible), want: 412, wantBody: "pg2 lags 20 MB",
			wantCalls: []call{{Verb: "switchover", Leader: "pg1", Candidate: "pg2"}}},
		{name: "switchover while another runs", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg2"}`,
			ctlErr: fmt.Errorf("a switchover to pg3 is scheduled: %w", ErrConflict), want: 409, wantBody: "pg3 is scheduled",
			wantCalls: []call{{Verb: "switchover", Leader: "pg1", Candidate: "pg2"}}},
		{name: "switchover failing", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1","candidate":"pg2"}`,
			ctlErr: errors.New("etcd: context deadline exceeded"), want: 503, wantBody: "etcd: context deadline exceeded",
			wantCalls: []call{{Verb: "switchover", Leader: "pg1", Candidate: "pg2"}}},
		{name: "switchover bad JSON", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":`, want: 400, wantBody: "bad JSON"},
		{name: "switchover wrong type", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":1}`, want: 400, wantBody: "bad JSON"},
		{name: "switchover trailing data", snap: primary(), method: "POST", path: "/switchover", body: `{"leader":"pg1"} {}`, want: 400},
		{name: "switchover empty body", snap: primary(), method: "POST", path: "/switchover", want: 400, wantBody: "required"},
		{name: "switchover body too large", snap: primary(), method: "POST", path: "/switchover",
			body: `{"leader":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, want: 413},

		{name: "failover", snap: primary(), method: "POST", path: "/failover", body: `{"candidate":"pg2"}`,
			want: 200, wantBody: `Successfully failed over to "pg2"`, wantCalls: []call{{Verb: "failover", Candidate: "pg2"}}},
		{name: "failover without candidate", snap: primary(), method: "POST", path: "/failover", body: `{}`, want: 400, wantBody: "specific candidate"},
		{name: "failover to an unknown candidate", snap: primary(), method: "POST", path: "/failover", body: `{"candidate":"nobody"}`, want: 412},
		{name: "failover to the leader", snap: primary(), method: "POST", path: "/failover", body: `{"candidate":"pg1"}`, want: 412, wantBody: "already the leader"},
		{name: "failover scheduled", snap: primary(), method: "POST", path: "/failover", body: `{"candidate":"pg2","scheduled_at":"` + future + `"}`,
			want: 400, wantBody: "can't be scheduled"},
		{name: "failover naming the leader is a switchover", snap: primary(), method: "POST", path: "/failover", body: `{"leader":"pg1","candidate":"pg2"}`,
			want: 200, wantCalls: []call{{Verb: "switchover", Leader: "pg1", Candidate: "pg2"}}},
		{name: "failover in sync mode to an async member", snap: with(primary(), func(s *Snapshot) { s.Cluster.Members[2].Tags = nil }),
			method: "POST", path: "/failover", body: `{"candidate":"pg3"}`, want: 200, wantCalls: []call{{Verb: "failover", Candidate: "pg3"}}},

		{name: "restart", snap: primary(), method: "POST", path: "/restart", want: 200, wantCalls: []call{{Verb: "restart"}}},
		{name: "restart with empty object", snap: primary(), method: "POST", path: "/restart", body: `{}`, want: 200, wantCalls: []call{{Verb: "restart"}}},
		{name: "restart role matches", snap: primary(), method: "POST", path: "/restart", body: `{"role":"master"}`, want: 200, wantCalls: []call{{Verb: "restart"}}},
		{name: "restart role differs", snap: primary(), method: "POST", path: "/restart", body: `{"role":"replica"}`, want: 503, wantBody: "conditions"},
		{name: "restart bad role", snap: primary(), method: "POST", path: "/restart", body: `{"role":"boss"}`, want: 400, wantBody: "role"},
		{name: "restart only if pending, none", snap: primary(), method: "POST", path: "/restart", body: `{"restart_pending":true}`, want: 503},
		{name: "restart only if pending", snap: pending, method: "POST", path: "/restart", body: `{"restart_pending":true}`, want: 200, wantCalls: []call{{Verb: "restart"}}},
		{name: "restart scheduled is refused", snap: primary(), method: "POST", path: "/restart", body: `{"schedule":"` + future + `"}`, want: 400, wantBody: "schedule"},
		{name: "restart failing", snap: primary(), method: "POST", path: "/restart", ctlErr: errors.New("pg_ctl: server did not start"),
			want: 503, wantBody: "pg_ctl: server did not start", wantCalls: []call{{Verb: "restart"}}},

		{name: "reload", snap: primary(), method: "POST", path: "/reload", want: 202, wantCalls: []call{{Verb: "reload"}}},
		{name: "reload bad JSON", snap: primary(), method: "POST", path: "/reload", body: `nope`, want: 400},

		{name: "pause", snap: primary(), method: "POST", path: "/pause", want: 200, wantBody: `{"pause":true}`, wantCalls: []call{{Verb: "pause", Paused: true}}},
		{name: "resume", snap: paused, method: "POST", path: "/resume", want: 200, wantBody: `{"pause":false}`, wantCalls: []call{{Verb: "pause", Paused: false}}},
		{name: "pause failing", snap: primary(), method: "POST", path: "/pause", ctlErr: errors.New("etcd unreachable"), want: 503, wantBody: "etcd unreachable",
			wantCalls: []call{{Verb: "pause", Paused: true}}},
		{name: "PATCH /config pause", snap: primary(), method: "PATCH", path: "/config", body: `{"pause":true}`, want: 200, wantCalls: []call{{Verb: "pause", Paused: true}}},
		{name: "PATCH /config resume", snap: paused, method: "PATCH", path: "/config", body: `{"pause":false}`, want: 200, wantCalls: []call{{Verb: "pause", Paused: false}}},
		{name: "PATCH /config other keys", snap: primary(), method: "PATCH", path: "/config", body: `{"ttl":20}`, want: 400, wantBody: "unknown field"},
		{name: "PATCH /config without pause", snap: primary(), method: "PATCH", path: "/config", body: `{}`, want: 400, wantBody: "pause"},
		{name: "PATCH /config null pause", snap: primary(), method: "PATCH", path: "/config", body: `{"pause":null}`, want: 400},
		{name: "PATCH /config empty", snap: primary(), method: "PATCH", path: "/config", want: 400},

		{name: "reinitialize", snap: replica(), method: "POST", path: "/reinitialize", body: `{"force":true}`, want: 200, wantCalls: []call{{Verb: "reinitialize"}}},
		{name: "reinitialize the leader", snap: primary(), method: "POST", path: "/reinitialize", want: 503, wantBody: "I am the leader"},
		{name: "reinitialize unknown key", snap: replica(), method: "POST", path: "/reinitialize", body: `{"wipe":true}`, want: 400},
		{name: "reinitialize failing", snap: replica(), method: "POST", path: "/reinitialize", ctlErr: fmt.Errorf("busy: %w", ErrConflict),
			want: 409, wantCalls: []call{{Verb: "reinitialize"}}},

		{name: "GET on a write verb", snap: primary(), method: "GET", path: "/switchover", want: 405},
		{name: "PUT /config", snap: primary(), method: "PUT", path: "/config", body: `{}`, want: 405},
		{name: "POST on a check", snap: primary(), method: "POST", path: "/primary", want: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{err: tt.ctlErr}
			h := newServer(tt.snap, rec).Handler()
			code, body, _ := do(t, h, tt.method, tt.path, tt.body, bearer(token)...)
			if code != tt.want {
				t.Errorf("%s %s = %d %q, want %d", tt.method, tt.path, code, body, tt.want)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s %s body %q, want it to contain %q", tt.method, tt.path, body, tt.wantBody)
			}
			if diff := cmp.Diff(tt.wantCalls, rec.calls); diff != "" {
				t.Errorf("controller calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteWithoutController(t *testing.T) {
	for _, v := range writeVerbs {
		t.Run(v.path, func(t *testing.T) {
			h := newServer(primary(), nil).Handler()
			if code, body, _ := do(t, h, v.method, v.path, v.body, bearer(token)...); code != http.StatusServiceUnavailable {
				t.Errorf("%s %s without controller = %d %q, want 503", v.method, v.path, code, body)
			}
			// Auth still comes first.
			if code, _, _ := do(t, h, v.method, v.path, v.body); code != http.StatusUnauthorized {
				t.Errorf("%s %s without controller nor token = %d, want 401", v.method, v.path, code)
			}
		})
	}
}
