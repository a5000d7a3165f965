package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzHandler throws arbitrary methods, paths, queries and bodies at the
// handler, with and without the token, over the snapshot variants. It must
// never panic nor answer a 5xx other than 503.
func FuzzHandler(f *testing.F) {
	seeds := []struct {
		method, path, query, body string
		auth                      bool
		variant                   uint8
	}{
		{"GET", "/primary", "", "", false, 0},
		{"OPTIONS", "/replica", "lag=10MB&tag_dc=west", "", false, 1},
		{"HEAD", "/readiness", "lag=1kB&mode=write", "", false, 1},
		{"GET", "/read-only", "lag=%zz", "", false, 2},
		{"GET", "/metrics", "", "", false, 3},
		{"GET", "/cluster", "", "", false, 4},
		{"GET", "/config", "", "", false, 0},
		{"POST", "/switchover", "", `{"leader":"pg1","candidate":"pg2","scheduled_at":"2030-01-01T00:00:00Z"}`, true, 0},
		{"POST", "/failover", "", `{"candidate":"pg3"}`, true, 4},
		{"POST", "/restart", "", `{"role":"replica","restart_pending":true}`, true, 1},
		{"PATCH", "/config", "", `{"pause":true}`, true, 2},
		{"POST", "/reinitialize", "", `{"force":"yes"}`, true, 1},
		{"POST", "/pause", "", `[`, true, 0},
		{"DELETE", "/switchover", "", "", true, 0},
		{"BREW", "/", "", "", false, 0},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.body, s.auth, s.variant)
	}
	variants := []Snapshot{
		primary(),
		replica(),
		with(primary(), func(s *Snapshot) { s.Paused, s.LeaseDeadline = true, now.Add(-time.Second) }),
		{},
		with(replica(), func(s *Snapshot) {
			s.Cluster.Members = nil
			s.Cluster.Config = []byte("not json")
			s.Role = RoleStandbyLeader
			s.LagBytes = -1
		}),
	}
	errs := []error{nil, ErrNotPossible, ErrConflict, errors.New("boom"), fmt.Errorf("wrapped: %w", ErrNotPossible)}
	f.Fuzz(func(t *testing.T, method, path, query, body string, auth bool, variant uint8) {
		rec := &recorder{err: errs[int(variant)%len(errs)]}
		s := newServer(variants[int(variant)%len(variants)], rec)
		req := &http.Request{
			Method:     method,
			URL:        &url.URL{Path: path, RawQuery: query},
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Header:     http.Header{},
			Body:       http.NoBody,
			RemoteAddr: "192.0.2.1:1234",
			Host:       "agent",
		}
		if body != "" {
			req.Body = nopCloser{strings.NewReader(body)}
			req.ContentLength = int64(len(body))
		}
		if auth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Errorf("%s %s?%s %q = %d %q", method, path, query, body, w.Code, w.Body.String())
		}
		if w.Code < 100 || w.Code > 599 {
			t.Errorf("status %d", w.Code)
		}
	})
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }
