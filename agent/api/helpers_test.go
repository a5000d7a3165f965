package api

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// now is the fixed clock of the tests.
var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// fixed is a Source returning one snapshot.
type fixed Snapshot

func (f *fixed) Snapshot() Snapshot { return Snapshot(*f) }

// cluster is a three-member cluster led by pg1, pg2 in sync.
func cluster() ClusterView {
	return ClusterView{
		Scope:  "main",
		Leader: "pg1",
		Members: []Member{
			{Name: "pg1", Role: "leader", State: "running", APIURL: "http://10.0.0.1:8008/patroni", Host: "10.0.0.1", Port: 5432, Timeline: 3},
			{Name: "pg2", Role: "sync_standby", State: "streaming", APIURL: "http://10.0.0.2:8008/patroni", Host: "10.0.0.2", Port: 5432, Timeline: 3, LagBytes: 0},
			{Name: "pg3", Role: "replica", State: "streaming", APIURL: "http://10.0.0.3:8008/patroni", Host: "10.0.0.3", Port: 5432, Timeline: 3, LagBytes: -1, Tags: map[string]string{"nofailover": "true"}},
		},
		SynchronousMode: true,
		SyncStandbys:    []string{"pg2"},
		LeaderLSN:       50_000_000,
		History: []HistoryEntry{
			{Timeline: 1, LSN: 25_165_984, Reason: "no recovery target specified", Time: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), Leader: "pg1"},
			{Timeline: 2, LSN: 33_554_592, Reason: "switchover", Time: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC), Leader: "pg2"},
		},
		Config: []byte(`{"ttl":30,"loop_wait":10,"maximum_lag_on_failover":1048576}`),
	}
}

// primary is pg1, a healthy primary whose lease has 8 s left.
func primary() Snapshot {
	return Snapshot{
		Member: "pg1", Role: RolePrimary, State: StateRunning, PostgresRunning: true,
		ServerVersion: 170002, Timeline: 3, XLogLocation: 50_000_000, LagBytes: 0,
		IsLeader: true, LeaseDeadline: now.Add(8 * time.Second),
		Tags: map[string]string{"dc": "east"}, LastLoop: now.Add(-2 * time.Second),
		DCSReachable: true, Cluster: cluster(), Version: "0.1.0",
	}
}

// replica is pg2, a streaming synchronous standby 4 KiB behind.
func replica() Snapshot {
	return Snapshot{
		Member: "pg2", Role: RoleReplica, State: StateRunning, PostgresRunning: true,
		ServerVersion: 170002, Timeline: 3, XLogLocation: 49_995_904,
		ReceivedLSN: 49_999_000, ReplayedLSN: 49_995_904, LagBytes: 4096, Streaming: true,
		SyncStandby: true, Tags: map[string]string{"dc": "west"}, LastLoop: now.Add(-time.Second),
		DCSReachable: true, Cluster: cluster(), Version: "0.1.0",
	}
}

// call is one recorded Controller call.
type call struct {
	Verb      string
	Leader    string
	Candidate string
	At        time.Time
	Paused    bool
}

// recorder is a Controller that records its calls and returns err.
type recorder struct {
	mu    sync.Mutex
	calls []call
	err   error
}

func (r *recorder) record(c call) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
	return r.err
}

func (r *recorder) Switchover(ctx context.Context, leader, candidate string, at time.Time) error {
	return r.record(call{Verb: "switchover", Leader: leader, Candidate: candidate, At: at})
}
func (r *recorder) Failover(ctx context.Context, candidate string) error {
	return r.record(call{Verb: "failover", Candidate: candidate})
}
func (r *recorder) Restart(ctx context.Context) error { return r.record(call{Verb: "restart"}) }
func (r *recorder) Reload(ctx context.Context) error  { return r.record(call{Verb: "reload"}) }
func (r *recorder) Pause(ctx context.Context, paused bool) error {
	return r.record(call{Verb: "pause", Paused: paused})
}
func (r *recorder) Reinitialize(ctx context.Context) error {
	return r.record(call{Verb: "reinitialize"})
}

const token = "s3cret-token"

func newServer(snap Snapshot, ctl Controller) *Server {
	f := fixed(snap)
	return &Server{Source: &f, Control: ctl, Token: token, Now: func() time.Time { return now }}
}

// do sends one request to h and returns the status, the body and the headers.
func do(t *testing.T, h http.Handler, method, target, body string, header ...string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String(), rec.Header()
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}
