package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"
)

// endpoints are every health check, with the query variants the matrix
// covers. A row of the matrix lists those answering 200; all others must
// answer 503.
var endpoints = []string{
	"/", "/primary", "/master", "/read-write",
	"/leader", "/standby-leader", "/standby_leader",
	"/replica", "/replica?lag=1kB", "/replica?lag=10MB",
	"/read-only", "/sync", "/synchronous", "/async", "/asynchronous",
	"/read-only-sync", "/read-only-synchronous",
	"/health", "/liveness", "/readiness", "/readiness?lag=1kB",
}

var (
	primaryPaths   = []string{"/", "/primary", "/master", "/read-write", "/leader"}
	standbyLeader  = []string{"/leader", "/standby-leader", "/standby_leader"}
	readOnlyLeader = []string{"/read-only", "/read-only-sync", "/read-only-synchronous"}
	syncPaths      = []string{"/sync", "/synchronous"}
	asyncPaths     = []string{"/async", "/asynchronous"}
	replicaPaths   = []string{"/replica", "/replica?lag=10MB", "/read-only"}
	alive          = []string{"/health", "/liveness"}
	ready          = []string{"/readiness", "/readiness?lag=1kB"}
)

func join(groups ...[]string) []string { return slices.Concat(groups...) }

func with(s Snapshot, f func(*Snapshot)) Snapshot {
	f(&s)
	return s
}

func TestChecksMatrix(t *testing.T) {
	rows := []struct {
		name string
		snap Snapshot
		ok   []string
	}{
		{"primary with a valid lease", primary(),
			join(primaryPaths, readOnlyLeader, alive, ready)},
		{"primary whose lease deadline passed", with(primary(), func(s *Snapshot) { s.LeaseDeadline = now.Add(-time.Millisecond) }),
			alive},
		{"primary whose lease deadline is now", with(primary(), func(s *Snapshot) { s.LeaseDeadline = now }),
			alive},
		{"primary without a lease deadline", with(primary(), func(s *Snapshot) { s.LeaseDeadline = time.Time{} }),
			alive},
		{"primary that lost the leader key", with(primary(), func(s *Snapshot) { s.IsLeader = false }),
			alive},
		{"fenced primary", with(primary(), func(s *Snapshot) { s.Role, s.State, s.IsLeader = RoleFenced, "fenced", false }),
			[]string{"/liveness"}},
		{"primary with postgres stopped", with(primary(), func(s *Snapshot) { s.State, s.PostgresRunning = "stopped", false }),
			[]string{"/liveness"}},
		{"primary with postgres crashed but state stale", with(primary(), func(s *Snapshot) { s.PostgresRunning = false }),
			[]string{"/liveness"}},
		{"primary whose loop is stuck", with(primary(), func(s *Snapshot) { s.LastLoop = now.Add(-DefaultMaxLoopAge - time.Second) }),
			join(primaryPaths, readOnlyLeader, []string{"/health"}, ready)},
		{"primary whose loop never ran", with(primary(), func(s *Snapshot) { s.LastLoop = time.Time{} }),
			join(primaryPaths, readOnlyLeader, []string{"/health"}, ready)},
		{"sync replica streaming 4 KiB behind", replica(),
			join(replicaPaths, syncPaths, []string{"/read-only-sync", "/read-only-synchronous"}, alive, []string{"/readiness"})},
		{"async replica streaming", with(replica(), func(s *Snapshot) { s.SyncStandby = false }),
			join(replicaPaths, asyncPaths, alive, []string{"/readiness"})},
		{"replica in sync, lag 0", with(replica(), func(s *Snapshot) { s.LagBytes = 0 }),
			join(replicaPaths, []string{"/replica?lag=1kB"}, syncPaths, []string{"/read-only-sync", "/read-only-synchronous"}, alive, ready)},
		{"replica not streaming", with(replica(), func(s *Snapshot) { s.Streaming = false }),
			alive},
		{"replica with unknown lag", with(replica(), func(s *Snapshot) { s.LagBytes = -1; s.SyncStandby = false }),
			join([]string{"/replica", "/read-only"}, asyncPaths, alive)},
		{"replica far behind", with(replica(), func(s *Snapshot) { s.LagBytes = 2 << 20; s.SyncStandby = false }),
			join(replicaPaths, asyncPaths, alive)},
		{"replica tagged noloadbalance", with(replica(), func(s *Snapshot) { s.Tags = map[string]string{"noloadbalance": "true"} }),
			join(alive, []string{"/readiness"})},
		{"replica tagged noloadbalance=false", with(replica(), func(s *Snapshot) { s.Tags = map[string]string{"noloadbalance": "false"} }),
			join(replicaPaths, syncPaths, []string{"/read-only-sync", "/read-only-synchronous"}, alive, []string{"/readiness"})},
		{"replica cut off from etcd", with(replica(), func(s *Snapshot) { s.DCSReachable = false }),
			join(replicaPaths, alive, []string{"/readiness"})},
		{"replica with postgres starting", with(replica(), func(s *Snapshot) { s.State, s.PostgresRunning = "starting", true }),
			[]string{"/liveness"}},
		{"replica still claiming the leader key", with(replica(), func(s *Snapshot) { s.IsLeader, s.LeaseDeadline = true, now.Add(time.Second) }),
			join(replicaPaths, syncPaths, []string{"/read-only-sync", "/read-only-synchronous"}, alive, []string{"/readiness"})},
		{"standby leader", with(replica(), func(s *Snapshot) {
			s.Role, s.IsLeader, s.LeaseDeadline, s.SyncStandby = RoleStandbyLeader, true, now.Add(5*time.Second), false
		}), join(standbyLeader, readOnlyLeader, alive, ready)},
		{"standby leader with an expired lease", with(replica(), func(s *Snapshot) {
			s.Role, s.IsLeader, s.LeaseDeadline, s.SyncStandby = RoleStandbyLeader, true, now.Add(-5*time.Second), false
		}), alive},
		{"uninitialized", Snapshot{Role: RoleUninitialized, State: "uninitialized", LagBytes: -1, LastLoop: now},
			[]string{"/liveness"}},
		{"empty snapshot", Snapshot{}, nil},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			h := newServer(row.snap, nil).Handler()
			for _, ep := range endpoints {
				want := http.StatusServiceUnavailable
				if slices.Contains(row.ok, ep) {
					want = http.StatusOK
				}
				for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
					code, body, hdr := do(t, h, method, ep, "")
					if code != want {
						t.Errorf("%s %s = %d, want %d (reason %q)", method, ep, code, want, hdr.Get("X-Pgherd-Reason"))
						continue
					}
					if (code == http.StatusOK) == (hdr.Get("X-Pgherd-Reason") != "") {
						t.Errorf("%s %s = %d with reason %q", method, ep, code, hdr.Get("X-Pgherd-Reason"))
					}
					statusOnly := method != http.MethodGet || ep == "/liveness" || ep[:min(len(ep), 10)] == "/readiness"
					if statusOnly && body != "" {
						t.Errorf("%s %s: body %q, want none", method, ep, body)
					}
					if !statusOnly {
						var st memberStatus
						if err := json.Unmarshal([]byte(body), &st); err != nil {
							t.Errorf("%s %s: body %q: %v", method, ep, body, err)
						}
					}
				}
			}
		})
	}
}

func TestChecksQuery(t *testing.T) {
	rp := with(replica(), func(s *Snapshot) { s.Cluster.LeaderLSN = s.ReceivedLSN + 1000 })
	tests := []struct {
		name   string
		snap   Snapshot
		target string
		want   int
	}{
		{"replica tag matches", rp, "/replica?tag_dc=west", 200},
		{"replica tag differs", rp, "/replica?tag_dc=east", 503},
		{"replica tag missing", rp, "/replica?tag_rack=r1", 503},
		{"replica two tags, one differs", rp, "/replica?tag_dc=west&tag_rack=r1", 503},
		{"read-only applies tags", primary(), "/read-only?tag_dc=west", 503},
		{"read-only tags match", primary(), "/read-only?tag_dc=east", 200},
		{"primary ignores tags", primary(), "/primary?tag_dc=west", 200},
		{"leader ignores tags", primary(), "/leader?tag_dc=west", 200},
		{"sync applies tags", rp, "/sync?tag_dc=east", 503},
		{"lag exactly at the limit", rp, "/replica?lag=4096", 200},
		{"lag one byte over the limit", rp, "/replica?lag=4095", 503},
		{"lag 4kB", rp, "/replica?lag=4kB", 200},
		{"lag in lower case", rp, "/replica?lag=4kb", 200},
		{"lag with a space", rp, "/replica?lag=4%20kB", 200},
		{"lag zero", rp, "/replica?lag=0", 503},
		{"bad lag", rp, "/replica?lag=lots", 400},
		{"negative lag", rp, "/replica?lag=-1", 400},
		{"lag unit unknown", rp, "/replica?lag=4PB", 400},
		{"bad lag on primary check too", primary(), "/primary?lag=x", 400},
		{"empty lag", rp, "/replica?lag=", 400},
		{"replication_state streaming", rp, "/replica?replication_state=streaming", 200},
		{"replication_state other", rp, "/replica?replication_state=in%20archive%20recovery", 503},
		{"readiness apply lag over", rp, "/readiness?lag=2000", 503},
		{"readiness write lag within", rp, "/readiness?lag=2000&mode=write", 200},
		{"readiness mode apply", rp, "/readiness?lag=2000&mode=apply", 503},
		{"readiness bad mode", rp, "/readiness?mode=fast", 400},
		{"readiness default from cluster", with(rp, func(s *Snapshot) { s.Cluster.MaximumLagOnFailover = 1000 }), "/readiness", 503},
		{"readiness write without leader LSN uses lag", with(rp, func(s *Snapshot) { s.Cluster.LeaderLSN = 0 }), "/readiness?lag=2000&mode=write", 503},
		{"readiness write when received is ahead", with(rp, func(s *Snapshot) { s.Cluster.LeaderLSN = 1 }), "/readiness?lag=0&mode=write", 200},
		{"liveness with a longer max age", with(primary(), func(s *Snapshot) { s.LastLoop = now.Add(-45 * time.Second) }), "/liveness", 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newServer(tt.snap, nil).Handler()
			code, body, hdr := do(t, h, http.MethodGet, tt.target, "")
			if code != tt.want {
				t.Errorf("GET %s = %d, want %d (%s%s)", tt.target, code, tt.want, hdr.Get("X-Pgherd-Reason"), body)
			}
		})
	}
}

func TestLivenessMaxLoopAge(t *testing.T) {
	s := newServer(with(primary(), func(s *Snapshot) { s.LastLoop = now.Add(-45 * time.Second) }), nil)
	s.MaxLoopAge = time.Minute
	if code, _, _ := do(t, s.Handler(), http.MethodGet, "/liveness", ""); code != 200 {
		t.Errorf("liveness with MaxLoopAge 1m, loop 45s ago = %d, want 200", code)
	}
}

// TestPrimaryFailsAsTheClockPasses: the snapshot does not change (a frozen
// loop), the clock does; /primary must turn 503 at the deadline.
func TestPrimaryFailsAsTheClockPasses(t *testing.T) {
	snap := primary()
	clock := now
	f := fixed(snap)
	s := &Server{Source: &f, Now: func() time.Time { return clock }}
	h := s.Handler()
	for _, step := range []struct {
		at   time.Time
		want int
	}{
		{now, 200},
		{snap.LeaseDeadline.Add(-time.Nanosecond), 200},
		{snap.LeaseDeadline, 503},
		{snap.LeaseDeadline.Add(time.Hour), 503},
	} {
		clock = step.at
		if code, _, _ := do(t, h, http.MethodOptions, "/primary", ""); code != step.want {
			t.Errorf("at deadline%+v: OPTIONS /primary = %d, want %d", step.at.Sub(snap.LeaseDeadline), code, step.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false},
		{"1048576", 1 << 20, false},
		{"1024kB", 1 << 20, false},
		{"16kB", 16 << 10, false},
		{"64MB", 64 << 20, false},
		{"1GB", 1 << 30, false},
		{"2TB", 2 << 40, false},
		{"10 MB", 10 << 20, false},
		{"10mb", 10 << 20, false},
		{"100B", 100, false},
		{"", 0, true},
		{"MB", 0, true},
		{"-5", 0, true},
		{"1.5GB", 0, true},
		{"5XB", 0, true},
		{"99999999999999999999", 0, true},
		{"9999999999TB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("ParseSize(%q) error = %v, want error %v", tt.in, err, tt.err)
			}
			if err != nil && !errors.Is(err, ErrBadSize) {
				t.Errorf("ParseSize(%q) error %v is not ErrBadSize", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}
