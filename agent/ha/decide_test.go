package ha

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pgherd/pgherd/agent/dcs"
)

const (
	now      = 100 * time.Second
	deadline = 110 * time.Second
	sysid    = "7000"
	myLease  = int64(1)
)

// view builders: each returns a fresh value so cases can tweak them.

func cfg(mod ...func(*dcs.Config)) dcs.Config {
	c := dcs.DefaultConfig()
	for _, m := range mod {
		m(&c)
	}
	return c
}

func mem(name string, role Role, lsn uint64, mod ...func(*dcs.Member)) dcs.Member {
	m := dcs.Member{Name: name, Role: string(role), Healthy: true, ReceivedLSN: lsn, ReplayedLSN: lsn, Timeline: 1}
	if role == RolePrimary {
		m.ReceivedLSN, m.ReplayedLSN, m.WrittenLSN = 0, 0, lsn
	}
	for _, f := range mod {
		f(&m)
	}
	return m
}

// cluster: leader "" for none; a leader named "a" (self) is under myLease.
func cluster(leader string, members ...dcs.Member) *dcs.ClusterState {
	s := &dcs.ClusterState{Revision: 50, Initialize: sysid, InitializeRevision: 3, Config: dcs.DefaultConfig(), Members: members}
	if leader != "" {
		lease := int64(99)
		if leader == "a" {
			lease = myLease
		}
		s.Leader = &dcs.LeaderKey{Name: leader, Lease: lease, ModRevision: 40, CreateRevision: 40}
	}
	return s
}

func with(s *dcs.ClusterState, f func(*dcs.ClusterState)) *dcs.ClusterState { f(s); return s }

func self(role Role, lsn uint64, mod ...func(*Self)) Self {
	s := Self{Name: "a", Role: role, Healthy: role == RolePrimary || role == RoleReplica, Timeline: 1,
		DataDir: true, SystemID: sysid, CanRewind: true}
	switch role {
	case RolePrimary:
		s.WrittenLSN = lsn
	case RoleReplica:
		s.ReceivedLSN, s.ReplayedLSN = lsn, lsn
		s.Following = "b"
	default:
		s.WrittenLSN = lsn
	}
	for _, f := range mod {
		f(&s)
	}
	return s
}

// leaderView: self "a" holds a valid leader lease.
func leaderView(s Self, st *dcs.ClusterState) View {
	v := View{Now: now, Self: s, DCS: st, LeaseID: myLease, LeaseDeadline: deadline, Config: dcs.DefaultConfig()}
	if st != nil {
		v.Config = st.Config
	}
	return v
}

// plainView: self holds no leader lease.
func plainView(s Self, st *dcs.ClusterState) View {
	v := View{Now: now, Self: s, DCS: st}
	if st != nil {
		v.Config = st.Config
	}
	return v
}

func adopting(v View, member string) View { v.Adopt = member; return v }

func withCfg(v View, f func(*dcs.Config)) View {
	f(&v.Config)
	if v.DCS != nil {
		f(&v.DCS.Config)
	}
	return v
}

func TestDecide(t *testing.T) {
	b100 := mem("b", RoleReplica, 100)
	c100 := mem("c", RoleReplica, 100)
	bPrimary := mem("b", RolePrimary, 500)
	aPrimary := mem("a", RolePrimary, 500)
	wasPrimary := func(s *Self) { s.WasPrimary = true }
	diverged := func(s *Self) { s.Diverged = true }
	unstartable := func(s *Self) { s.Unstartable = true }

	tests := []struct {
		name   string
		v      View
		want   []string
		reason string // substring of the decision's reason
	}{
		// 1. Fencing comes before anything else.
		{
			name: "primary frozen far past its deadline fences even though the DCS says it leads",
			v: func() View {
				v := leaderView(self(RolePrimary, 500), cluster("a", aPrimary, b100))
				v.Now = 10 * time.Minute
				return v
			}(),
			want:   []string{"fence", "renew_leader"},
			reason: "deadline passed",
		},
		{
			name: "leader past its deadline whose postgres did not answer fences",
			v: func() View {
				v := leaderView(self(RoleUnknown, 0), nil)
				v.Config = cfg()
				v.Now = deadline + time.Second
				return v
			}(),
			want:   []string{"fence"},
			reason: "DCS unreachable: fencing",
		},
		{
			name: "leader within its deadline whose postgres did not answer keeps the key",
			v:    leaderView(self(RoleUnknown, 0), cluster("a", mem("b", RoleReplica, 100))),
			want: []string{"renew_leader"},
		},
		{
			name: "primary exactly at its deadline fences",
			v: func() View {
				v := leaderView(self(RolePrimary, 500), cluster("a", aPrimary))
				v.Now = deadline
				return v
			}(),
			want: []string{"fence", "renew_leader"},
		},
		{
			name: "primary past its deadline with the DCS unreachable fences",
			v: func() View {
				v := leaderView(self(RolePrimary, 500), nil)
				v.Config = cfg()
				v.Now = deadline + time.Second
				return v
			}(),
			want:   []string{"fence"},
			reason: "DCS unreachable",
		},
		{
			name: "primary frozen while shutting down still fences first",
			v: func() View {
				v := leaderView(self(RolePrimary, 500, func(s *Self) { s.ShuttingDown = true }), cluster("a", aPrimary))
				v.Now = deadline + time.Second
				return v
			}(),
			want: []string{"fence", "renew_leader"},
		},
		{
			name: "primary frozen while paused still fences first",
			v: func() View {
				v := withCfg(leaderView(self(RolePrimary, 500), cluster("a", aPrimary)), func(c *dcs.Config) { c.Paused = true })
				v.Now = deadline + time.Second
				return v
			}(),
			want: []string{"fence", "renew_leader"},
		},
		{
			name: "restarted agent finds its primary running under its old lease: fence and take over",
			v: func() View {
				v := plainView(self(RolePrimary, 500), cluster("a", aPrimary))
				v.LeaseID = 2
				return v
			}(),
			want:   []string{"fence", "take_over_leader"},
			reason: "no leader lease",
		},
		{
			name:   "primary without lease while another member leads fences",
			v:      plainView(self(RolePrimary, 500), cluster("b", bPrimary)),
			want:   []string{"fence"},
			reason: "b holds the leader key",
		},
		{
			name: "primary without lease and no leader key fences",
			v:    plainView(self(RolePrimary, 500), cluster("")),
			want: []string{"fence"},
		},
		{
			name: "primary with a valid lease and the DCS unreachable writes until the deadline",
			v: func() View {
				v := leaderView(self(RolePrimary, 500), nil)
				v.Config = cfg()
				return v
			}(),
			want:   []string{"renew_leader"},
			reason: "until the lease deadline",
		},
		{
			name:   "replica with the DCS unreachable keeps serving reads",
			v:      plainView(self(RoleReplica, 100), nil),
			want:   nil,
			reason: "serving reads",
		},
		{
			name: "stopped member with the DCS unreachable waits",
			v:    plainView(self(RoleStopped, 100), nil),
			want: nil,
		},
		{
			name: "replica never promotes while the DCS is unreachable even with no leader known",
			v:    plainView(self(RoleReplica, 1000, func(s *Self) { s.Following = "" }), nil),
			want: nil,
		},

		// 2. Clean shutdown.
		{
			name:   "clean shutdown of the primary stops it then hands over the key",
			v:      leaderView(self(RolePrimary, 500, func(s *Self) { s.ShuttingDown = true }), cluster("a", aPrimary, b100)),
			want:   []string{"stop", "release_leader"},
			reason: "handing over",
		},
		{
			name: "clean shutdown of a replica stops it",
			v:    plainView(self(RoleReplica, 100, func(s *Self) { s.ShuttingDown = true }), cluster("b", bPrimary)),
			want: []string{"stop"},
		},
		{
			name: "clean shutdown of a stopped member holding the key releases it",
			v:    leaderView(self(RoleStopped, 500, wasPrimary, func(s *Self) { s.ShuttingDown = true }), cluster("a")),
			want: []string{"release_leader"},
		},

		// 4. Pause.
		{
			name: "paused primary keeps its key",
			v:    withCfg(leaderView(self(RolePrimary, 500), cluster("a", aPrimary, b100)), func(c *dcs.Config) { c.Paused = true }),
			want: []string{"renew_leader"},
		},
		{
			name: "paused primary retakes a vanished key",
			v:    withCfg(leaderView(self(RolePrimary, 500), cluster("")), func(c *dcs.Config) { c.Paused = true }),
			want: []string{"acquire_leader"},
		},
		{
			name:   "paused replica does not fail over",
			v:      withCfg(plainView(self(RoleReplica, 1000), cluster("", b100)), func(c *dcs.Config) { c.Paused = true }),
			want:   nil,
			reason: "paused",
		},
		{
			name: "paused stopped member is not started",
			v:    withCfg(plainView(self(RoleStopped, 100), cluster("b", bPrimary)), func(c *dcs.Config) { c.Paused = true }),
			want: nil,
		},

		// 5. Bootstrap and identity.
		{
			name: "uninitialized cluster: race for the initialize key, then bootstrap",
			v: plainView(self(RoleStopped, 0, func(s *Self) { s.DataDir, s.SystemID = false, "" }),
				with(cluster(""), func(s *dcs.ClusterState) { s.Initialize = "" })),
			want: []string{"race_initialize(pending:a)", "acquire_leader", "bootstrap"},
		},
		{
			name: "initialize race won but initdb not done: bootstrap",
			v: plainView(self(RoleStopped, 0, func(s *Self) { s.DataDir, s.SystemID = false, "" }),
				with(cluster(""), func(s *dcs.ClusterState) { s.Initialize = "pending:a" })),
			want: []string{"acquire_leader", "bootstrap"},
		},
		{
			name: "initialize race won and leader key held: renew, then bootstrap",
			v: leaderView(self(RoleStopped, 0, func(s *Self) { s.DataDir, s.SystemID = false, "" }),
				with(cluster("a"), func(s *dcs.ClusterState) { s.Initialize = "pending:a" })),
			want: []string{"renew_leader", "bootstrap"},
		},
		{
			name: "bootstrapped but stopped: start as primary",
			v: plainView(self(RoleStopped, 10, func(s *Self) { s.SystemID = "7777" }),
				with(cluster(""), func(s *dcs.ClusterState) { s.Initialize = "pending:a" })),
			want: []string{"acquire_leader", "start(primary)"},
		},
		{
			name: "bootstrapped primary: take the leader key",
			v: leaderView(self(RolePrimary, 10, func(s *Self) { s.SystemID = "7777" }),
				with(cluster(""), func(s *dcs.ClusterState) { s.Initialize = "pending:a" })),
			want: []string{"acquire_leader"},
		},
		{
			name: "bootstrapped leader: store the system identifier",
			v: leaderView(self(RolePrimary, 10, func(s *Self) { s.SystemID = "7777" }),
				with(cluster("a"), func(s *dcs.ClusterState) { s.Initialize = "pending:a" })),
			want: []string{"renew_leader", "set_initialize(7777)"},
		},
		{
			name: "initialize claim on my own lease: bootstrap",
			v: leaderView(self(RoleStopped, 0, func(s *Self) { s.DataDir, s.SystemID = false, "" }),
				with(cluster(""), func(s *dcs.ClusterState) { s.Initialize, s.InitializeLease = "pending:a", myLease })),
			want: []string{"acquire_leader", "bootstrap"},
		},
		{
			name: "initialize claim of a previous run of this agent: wait for its lease to expire",
			v: plainView(self(RoleStopped, 10, func(s *Self) { s.SystemID = "7777" }),
				with(cluster(""), func(s *dcs.ClusterState) { s.Initialize, s.InitializeLease = "pending:a", 77 })),
			want:   nil,
			reason: "waiting for its lease to expire",
		},
		{
			name: "bootstrapper's claim expired, its data directory stays: register it",
			v: plainView(self(RoleStopped, 10, wasPrimary, func(s *Self) { s.SystemID = "7777" }),
				with(cluster(""), func(s *dcs.ClusterState) { s.Initialize = "" })),
			want: []string{"race_initialize(7777)"},
		},
		{
			name: "another member is bootstrapping: wait",
			v: plainView(self(RoleStopped, 0, func(s *Self) { s.DataDir, s.SystemID = false, "" }),
				with(cluster(""), func(s *dcs.ClusterState) { s.Initialize = "pending:b" })),
			want:   nil,
			reason: "waiting for b to bootstrap",
		},
		{
			name: "empty data directory and a running leader: clone",
			v:    plainView(self(RoleStopped, 0, func(s *Self) { s.DataDir, s.SystemID = false, "" }), cluster("b", bPrimary)),
			want: []string{"clone(b)"},
		},
		{
			name: "empty data directory and a leader not running: wait",
			v:    plainView(self(RoleStopped, 0, func(s *Self) { s.DataDir, s.SystemID = false, "" }), cluster("b")),
			want: nil,
		},
		{
			name: "empty data directory and no leader: wait (never initdb an initialized cluster)",
			v:    plainView(self(RoleStopped, 0, func(s *Self) { s.DataDir, s.SystemID = false, "" }), cluster("", b100)),
			want: nil,
		},
		{
			name:   "foreign system identifier never joins",
			v:      plainView(self(RoleReplica, 100, func(s *Self) { s.SystemID = "6666" }), cluster("b", bPrimary)),
			want:   []string{"stop"},
			reason: "never joining",
		},
		{
			name: "foreign system identifier is reinitialized only when allowed",
			v: func() View {
				v := plainView(self(RoleStopped, 100, func(s *Self) { s.SystemID = "6666" }), cluster("b", bPrimary))
				v.AllowReinitialize = true
				return v
			}(),
			want: []string{"reinitialize(b)"},
		},
		{
			name: "foreign system identifier never races for a missing leader",
			v:    plainView(self(RoleReplica, 10000, func(s *Self) { s.SystemID = "6666" }), cluster("")),
			want: []string{"stop"},
		},
		{
			name: "missing initialize key with existing data: register its system identifier",
			v:    leaderView(self(RolePrimary, 500), with(cluster("a"), func(s *dcs.ClusterState) { s.Initialize = "" })),
			want: []string{"race_initialize(7000)"},
		},

		// 0. Adoption of a running postmaster (a migration).
		{
			name:   "adopting member with a primary it did not start: take the leader key, never fence",
			v:      adopting(plainView(self(RolePrimary, 500), with(cluster(""), func(s *dcs.ClusterState) { s.Initialize = "" })), "a"),
			want:   []string{"acquire_leader"},
			reason: "adopting the running primary",
		},
		{
			name: "adopted leader: register the system identifier",
			v:    adopting(leaderView(self(RolePrimary, 500), with(cluster("a"), func(s *dcs.ClusterState) { s.Initialize = "" })), "a"),
			want: []string{"race_initialize(7000)"},
		},
		{
			name: "adopted leader with wal_level waiting for a restart: restart under the lease",
			v: adopting(leaderView(self(RolePrimary, 500, func(s *Self) { s.RestartNeeded = true }),
				with(cluster("a"), func(s *dcs.ClusterState) { s.Initialize = "" })), "a"),
			want: []string{"renew_leader", "restart", "renew_leader"},
		},
		{
			name:   "adopting member, another holds the leader key: fence as before",
			v:      adopting(plainView(self(RolePrimary, 500), with(cluster("b"), func(s *dcs.ClusterState) { s.Initialize = "" })), "a"),
			want:   []string{"fence"},
			reason: "b holds the leader key",
		},
		{
			name: "initialized cluster: adoption is over, a primary without a lease fences",
			v:    adopting(plainView(self(RolePrimary, 500), cluster("")), "a"),
			want: []string{"fence"},
		},
		{
			name:   "adopting member, DCS unreachable before registration: the primary runs on",
			v:      adopting(plainView(self(RolePrimary, 500), nil), "a"),
			want:   nil,
			reason: "runs on as before the migration",
		},
		{
			name: "adopting member, DCS unreachable after registration: fence as any primary without a lease",
			v: func() View {
				v := adopting(plainView(self(RolePrimary, 500), nil), "a")
				v.AdoptRegistered = true
				return v
			}(),
			want: []string{"fence"},
		},
		{
			name: "adopting member whose lease lapsed while etcd was away: renew, never fence",
			v: func() View {
				v := adopting(leaderView(self(RolePrimary, 500), with(cluster("a"), func(s *dcs.ClusterState) { s.Initialize = "" })), "a")
				v.Now = deadline + time.Second
				return v
			}(),
			want:   []string{"renew_leader"},
			reason: "renewing a lapsed lease",
		},
		{
			name: "adopting member whose key expired meanwhile: take it again, never fence",
			v: func() View {
				v := adopting(leaderView(self(RolePrimary, 500), with(cluster(""), func(s *dcs.ClusterState) { s.Initialize = "" })), "a")
				v.Now = deadline + time.Second
				return v
			}(),
			want:   []string{"acquire_leader"},
			reason: "taking the leader key",
		},
		{
			name:   "restarted adopting agent finds its key under the previous run's lease: take it over, never fence",
			v:      adopting(plainView(self(RolePrimary, 500), with(cluster("a"), func(s *dcs.ClusterState) { s.Initialize = "" })), "a"),
			want:   []string{"take_over_leader"},
			reason: "previous run of this agent",
		},
		{
			name:   "empty member of an adopting cluster never bootstraps",
			v:      adopting(plainView(self(RoleStopped, 0, func(s *Self) { s.DataDir, s.SystemID = false, "" }), with(cluster(""), func(s *dcs.ClusterState) { s.Initialize = "" })), "b"),
			want:   nil,
			reason: "waiting for b's adopted primary",
		},

		// 6. The leader key is mine.
		{
			name: "leader renews its lease",
			v:    leaderView(self(RolePrimary, 500), cluster("a", aPrimary, b100)),
			want: []string{"renew_leader"},
		},
		{
			name:   "stopped member finds the key under its old lease: take it over",
			v:      func() View { v := plainView(self(RoleStopped, 500, wasPrimary), cluster("a")); v.LeaseID = 2; return v }(),
			want:   []string{"take_over_leader"},
			reason: "taking it over",
		},
		{
			name: "own key, lease deadline passed, not primary: renew before acting",
			v: func() View {
				v := leaderView(self(RoleStopped, 500, wasPrimary), cluster("a"))
				v.Now = deadline + time.Second
				return v
			}(),
			want: []string{"renew_leader"},
		},
		{
			name: "replica holding the key promotes",
			v:    leaderView(self(RoleReplica, 500), cluster("a")),
			want: []string{"renew_leader", "promote"},
		},
		{
			name:   "crashed primary holding the key restarts locally",
			v:      leaderView(self(RoleCrashed, 500, wasPrimary, func(s *Self) { s.DownSince = now - time.Second }), cluster("a", b100)),
			want:   []string{"renew_leader", "start(primary)"},
			reason: "restarting",
		},
		{
			name:   "crashed primary that cannot restart releases the key at once",
			v:      leaderView(self(RoleCrashed, 500, wasPrimary, func(s *Self) { s.Unstartable = true }), cluster("a", b100)),
			want:   []string{"release_leader"},
			reason: "failover",
		},
		{
			name: "crashed primary with master_start_timeout 0 releases the key",
			v: withCfg(leaderView(self(RoleCrashed, 500, wasPrimary), cluster("a", b100)),
				func(c *dcs.Config) { c.MasterStartTimeout = 0 }),
			want: []string{"release_leader"},
		},
		{
			name: "primary down longer than master_start_timeout releases the key",
			v: withCfg(leaderView(self(RoleCrashed, 500, wasPrimary, func(s *Self) { s.DownSince = now - 31*time.Second }), cluster("a", b100)),
				func(c *dcs.Config) { c.MasterStartTimeout = 30 }),
			want: []string{"release_leader"},
		},

		// 7. Another member holds the key.
		{
			name:   "primary with a valid lease while another member holds the key fences",
			v:      leaderView(self(RolePrimary, 500), cluster("b", bPrimary)),
			want:   []string{"fence"},
			reason: "b holds the leader key",
		},
		{
			name: "former primary, diverged: rewind from the leader",
			v:    plainView(self(RoleStopped, 500, wasPrimary, diverged), cluster("b", bPrimary)),
			want: []string{"rewind(b)"},
		},
		{
			name: "former primary, diverged, rewind impossible, reinit not allowed: stays stopped",
			v:    plainView(self(RoleStopped, 500, wasPrimary, diverged, func(s *Self) { s.CanRewind = false }), cluster("b", bPrimary)),
			want: nil, reason: "staying stopped",
		},
		{
			name: "former primary, diverged, use_pg_rewind off, reinit allowed: reinitialize",
			v: func() View {
				v := withCfg(plainView(self(RoleStopped, 500, wasPrimary, diverged), cluster("b", bPrimary)), func(c *dcs.Config) { c.UsePgRewind = false })
				v.AllowReinitialize = true
				return v
			}(),
			want: []string{"reinitialize(b)"},
		},
		{
			name: "diverged running replica stops and rewinds",
			v:    plainView(self(RoleReplica, 500, diverged), cluster("b", bPrimary)),
			want: []string{"stop", "rewind(b)"},
		},
		{
			name:   "no leader: a diverged replica, however advanced, takes no leader key",
			v:      plainView(self(RoleReplica, 200, diverged), cluster("", b100, c100)),
			want:   nil,
			reason: "diverged",
		},
		{
			name:   "data directory left unusable by an interrupted rewind: reinitialize from the running leader",
			v:      plainView(self(RoleStopped, 500, wasPrimary, diverged, unstartable), cluster("b", bPrimary)),
			want:   []string{"reinitialize(b)"},
			reason: "unusable",
		},
		{
			name:   "unusable data directory, the leader not running: wait, never start",
			v:      plainView(self(RoleCrashed, 500, unstartable), cluster("b")),
			want:   nil,
			reason: "waiting for leader b",
		},
		{
			name:   "no leader, unusable former primary's data directory: no leader key, no start",
			v:      plainView(self(RoleStopped, 900, wasPrimary, unstartable), cluster("", b100, c100)),
			want:   nil,
			reason: "cannot resume",
		},
		{
			name:   "no leader, unusable replica's data directory: no start",
			v:      plainView(self(RoleStopped, 900, unstartable), cluster("", b100)),
			want:   nil,
			reason: "unusable",
		},
		{
			name: "diverged member waits for the leader to run before rewinding",
			v:    plainView(self(RoleStopped, 500, wasPrimary, diverged), cluster("b")),
			want: nil,
		},
		{
			name: "former primary, not diverged: start as replica of the leader",
			v:    plainView(self(RoleStopped, 500, wasPrimary), cluster("b", bPrimary)),
			want: []string{"start(replica of b)"},
		},
		{
			name: "crashed replica restarts as replica",
			v:    plainView(self(RoleCrashed, 100), cluster("b", bPrimary)),
			want: []string{"start(replica of b)"},
		},
		{
			name: "replica following the old leader follows the new one",
			v:    plainView(self(RoleReplica, 100, func(s *Self) { s.Following = "c" }), cluster("b", bPrimary)),
			want: []string{"follow(b)"},
		},
		{
			name: "replica already following the leader does nothing",
			v:    plainView(self(RoleReplica, 100), cluster("b", bPrimary)),
			want: nil,
		},

		// 8. No leader key: failover.
		{
			name:   "most advanced healthy replica takes the key and promotes",
			v:      plainView(self(RoleReplica, 200), cluster("", b100, c100)),
			want:   []string{"acquire_leader", "promote"},
			reason: "most advanced",
		},
		{
			name:   "less advanced replica defers to the better candidate",
			v:      plainView(self(RoleReplica, 50), cluster("", b100)),
			want:   nil,
			reason: "deferring to the better candidate b",
		},
		{
			name: "equal LSN: higher priority wins",
			v:    plainView(self(RoleReplica, 100, func(s *Self) { s.Priority = 2 }), cluster("", mem("b", RoleReplica, 100, func(m *dcs.Member) { m.Priority = 1 }))),
			want: []string{"acquire_leader", "promote"},
		},
		{
			name:   "equal LSN: lower priority defers",
			v:      plainView(self(RoleReplica, 100), cluster("", mem("b", RoleReplica, 100, func(m *dcs.Member) { m.Priority = 1 }))),
			want:   nil,
			reason: "deferring",
		},
		{
			name: "equal LSN and priority: smallest name wins",
			v:    plainView(self(RoleReplica, 100), cluster("", b100)),
			want: []string{"acquire_leader", "promote"},
		},
		{
			name: "received LSN counts even when replay lags",
			v: plainView(self(RoleReplica, 100, func(s *Self) { s.ReceivedLSN = 300 }),
				cluster("", mem("b", RoleReplica, 200))),
			want: []string{"acquire_leader", "promote"},
		},
		{
			name:   "nofailover never races",
			v:      plainView(self(RoleReplica, 1000, func(s *Self) { s.NoFailover = true }), cluster("", b100)),
			want:   nil,
			reason: "nofailover",
		},
		{
			name: "a better candidate with nofailover does not make others defer",
			v:    plainView(self(RoleReplica, 100), cluster("", mem("b", RoleReplica, 1000, func(m *dcs.Member) { m.NoFailover = true }))),
			want: []string{"acquire_leader", "promote"},
		},
		{
			name: "a better but unhealthy candidate does not make others defer",
			v:    plainView(self(RoleReplica, 100), cluster("", mem("b", RoleReplica, 1000, func(m *dcs.Member) { m.Healthy = false }))),
			want: []string{"acquire_leader", "promote"},
		},
		{
			name:   "unhealthy replica never races",
			v:      plainView(self(RoleReplica, 1000, func(s *Self) { s.Healthy = false }), cluster("")),
			want:   nil,
			reason: "not healthy",
		},
		{
			name: "replica lagging beyond maximum_lag_on_failover never races",
			v: plainView(self(RoleReplica, 100),
				with(cluster(""), func(s *dcs.ClusterState) { s.Status = &dcs.Status{LastLSN: 100 + 2<<20} })),
			want:   nil,
			reason: "maximum_lag_on_failover",
		},
		{
			name: "replica within maximum_lag_on_failover races",
			v: plainView(self(RoleReplica, 100),
				with(cluster(""), func(s *dcs.ClusterState) { s.Status = &dcs.Status{LastLSN: 100 + 1000} })),
			want: []string{"acquire_leader", "promote"},
		},
		{
			name: "sync mode: the synchronous standby races even if less advanced",
			v: withCfg(plainView(self(RoleReplica, 100),
				with(cluster("", mem("b", RoleReplica, 200)), func(s *dcs.ClusterState) { s.Sync = &dcs.Sync{Leader: "x", Standbys: []string{"a"}} })),
				func(c *dcs.Config) { c.SynchronousMode = dcs.SyncOn }),
			want: []string{"acquire_leader", "promote"},
		},
		{
			name: "sync mode: a member not in the sync key never races",
			v: withCfg(plainView(self(RoleReplica, 300),
				with(cluster("", b100), func(s *dcs.ClusterState) { s.Sync = &dcs.Sync{Leader: "x", Standbys: []string{"b"}} })),
				func(c *dcs.Config) { c.SynchronousMode = dcs.SyncOn }),
			want:   nil,
			reason: "not a synchronous standby",
		},
		{
			name: "strict mode with no sync key: nobody races",
			v: withCfg(plainView(self(RoleReplica, 300), cluster("", b100)),
				func(c *dcs.Config) { c.SynchronousMode = dcs.SyncStrict }),
			want: nil,
		},
		{
			name: "quorum ANY 1 of 2: one visible member holds every acknowledged commit only with 2 of 2 visible",
			v: withCfg(plainView(self(RoleReplica, 300),
				with(cluster(""), func(s *dcs.ClusterState) { s.Sync = &dcs.Sync{Leader: "x", Standbys: []string{"a", "b"}, Quorum: 1} })),
				func(c *dcs.Config) { c.SynchronousMode = dcs.SyncOn; c.SynchronousQuorum = true }),
			want:   nil,
			reason: "needed for quorum",
		},
		{
			name: "quorum ANY 1 of 2 with both visible: the most advanced races",
			v: withCfg(plainView(self(RoleReplica, 300),
				with(cluster("", b100), func(s *dcs.ClusterState) { s.Sync = &dcs.Sync{Leader: "x", Standbys: []string{"a", "b"}, Quorum: 1} })),
				func(c *dcs.Config) { c.SynchronousMode = dcs.SyncOn; c.SynchronousQuorum = true }),
			want: []string{"acquire_leader", "promote"},
		},
		{
			name: "quorum ANY 2 of 3 with 2 visible: enough",
			v: withCfg(plainView(self(RoleReplica, 300),
				with(cluster("", b100), func(s *dcs.ClusterState) {
					s.Sync = &dcs.Sync{Leader: "x", Standbys: []string{"a", "b", "c"}, Quorum: 2}
				})),
				func(c *dcs.Config) { c.SynchronousMode = dcs.SyncOn; c.SynchronousQuorum = true }),
			want: []string{"acquire_leader", "promote"},
		},
		{
			name: "stopped replica with no leader starts as a replica",
			v:    plainView(self(RoleStopped, 100), cluster("", b100)),
			want: []string{"start(replica)"},
		},
		{
			name:   "former primary with no eligible replica restarts as primary",
			v:      plainView(self(RoleStopped, 500, wasPrimary), cluster("", mem("b", RoleReplica, 100, func(m *dcs.Member) { m.NoFailover = true }))),
			want:   []string{"acquire_leader", "start(primary)"},
			reason: "no eligible replica",
		},
		{
			name: "former primary defers to an eligible replica",
			v:    plainView(self(RoleStopped, 500, wasPrimary), cluster("", b100)),
			want: nil,
		},
		{
			name: "former primary on an older timeline than the cluster's history never resumes",
			v: plainView(self(RoleStopped, 500, wasPrimary),
				with(cluster(""), func(s *dcs.ClusterState) { s.History = []dcs.HistoryEntry{{Timeline: 2, Leader: "b"}} })),
			want:   nil,
			reason: "timeline",
		},
		{
			name: "diverged former primary never resumes as primary",
			v:    plainView(self(RoleStopped, 500, wasPrimary, diverged), cluster("")),
			want: nil,
		},
		{
			name:   "primary with a valid lease whose key vanished retakes it",
			v:      leaderView(self(RolePrimary, 500), cluster("", b100)),
			want:   []string{"acquire_leader"},
			reason: "retaking",
		},

		// Switchover.
		{
			name: "switchover to a healthy replica: stop writes",
			v: leaderView(self(RolePrimary, 500), with(cluster("a", aPrimary, b100, c100), func(s *dcs.ClusterState) {
				s.Switchover, s.SwitchoverRevision = &dcs.Switchover{From: "a", To: "c"}, 45
			})),
			want: []string{"renew_leader", "demote(c)"},
		},
		{
			name: "switchover without a target picks the best candidate",
			v: leaderView(self(RolePrimary, 500), with(cluster("a", aPrimary, b100, mem("c", RoleReplica, 200)), func(s *dcs.ClusterState) {
				s.Switchover, s.SwitchoverRevision = &dcs.Switchover{}, 45
			})),
			want: []string{"renew_leader", "demote(c)"},
		},
		{
			name: "switchover to an unknown member is cancelled",
			v: leaderView(self(RolePrimary, 500), with(cluster("a", aPrimary, b100), func(s *dcs.ClusterState) {
				s.Switchover, s.SwitchoverRevision = &dcs.Switchover{To: "z"}, 45
			})),
			want:   []string{"renew_leader", "clear_switchover"},
			reason: "cancelled",
		},
		{
			name: "switchover to a nofailover member is cancelled",
			v: leaderView(self(RolePrimary, 500), with(cluster("a", aPrimary, mem("b", RoleReplica, 500, func(m *dcs.Member) { m.NoFailover = true })), func(s *dcs.ClusterState) {
				s.Switchover = &dcs.Switchover{To: "b"}
			})),
			want: []string{"renew_leader", "clear_switchover"},
		},
		{
			name: "scheduled switchover waits for its time",
			v: func() View {
				v := leaderView(self(RolePrimary, 500), with(cluster("a", aPrimary, b100), func(s *dcs.ClusterState) {
					s.Switchover = &dcs.Switchover{To: "b", ScheduledAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
				}))
				v.WallClock = time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
				return v
			}(),
			want:   []string{"renew_leader"},
			reason: "scheduled",
		},
		{
			name: "switchover to a target that lags waits for it within the switchover timeout",
			v: func() View {
				v := leaderView(self(RolePrimary, 500), with(cluster("a", aPrimary, b100), func(s *dcs.ClusterState) {
					s.Switchover = &dcs.Switchover{To: "b", RequestedAt: time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)}
					s.Status = &dcs.Status{LastLSN: 100 + 16<<20}
				}))
				v.WallClock = time.Date(2029, 1, 1, 0, 0, 29, 0, time.UTC)
				return v
			}(),
			want:   []string{"renew_leader"},
			reason: "switchover to b: waiting for it to catch up (target b lag 16777216 bytes > maximum_lag_on_failover",
		},
		{
			name: "switchover to a target that still lags after the switchover timeout is cancelled",
			v: func() View {
				v := leaderView(self(RolePrimary, 500), with(cluster("a", aPrimary, b100), func(s *dcs.ClusterState) {
					s.Switchover = &dcs.Switchover{To: "b", RequestedAt: time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)}
					s.Status = &dcs.Status{LastLSN: 100 + 16<<20}
				}))
				v.WallClock = time.Date(2029, 1, 1, 0, 0, 31, 0, time.UTC)
				return v
			}(),
			want:   []string{"renew_leader", "clear_switchover"},
			reason: "switchover cancelled: target b lag",
		},
		{
			name: "switchover request naming another primary is cleared",
			v: leaderView(self(RolePrimary, 500), with(cluster("a", aPrimary, b100), func(s *dcs.ClusterState) {
				s.Switchover = &dcs.Switchover{From: "x", To: "b"}
			})),
			want: []string{"renew_leader", "clear_switchover"},
		},
		{
			name: "demoted primary waits for the target to replay its last WAL",
			v: leaderView(self(RoleStopped, 500, wasPrimary), with(cluster("a", b100), func(s *dcs.ClusterState) {
				s.Switchover = &dcs.Switchover{From: "a", To: "b"}
			})),
			want:   []string{"renew_leader"},
			reason: "waiting for b to replay",
		},
		{
			name: "demoted primary still waits for the target just within the switchover timeout",
			v: leaderView(self(RoleStopped, 500, wasPrimary, func(s *Self) { s.DownSince = now - 30*time.Second }),
				with(cluster("a", b100), func(s *dcs.ClusterState) { s.Switchover = &dcs.Switchover{From: "a", To: "b"} })),
			want:   []string{"renew_leader"},
			reason: "waiting for b to replay",
		},
		{
			name: "demoted primary aborts when the target has not caught up within the switchover timeout",
			v: leaderView(self(RoleStopped, 500, wasPrimary, func(s *Self) { s.DownSince = now - 31*time.Second }),
				with(cluster("a", b100), func(s *dcs.ClusterState) { s.Switchover = &dcs.Switchover{From: "a", To: "b"} })),
			want:   []string{"renew_leader", "clear_switchover", "start(primary)"},
			reason: "b did not replay up to 1F4 within the switchover timeout 30s",
		},
		{
			name: "demoted primary whose data directory cannot start releases the key when the switchover aborts",
			v: leaderView(self(RoleStopped, 500, wasPrimary, func(s *Self) { s.DownSince = now - 31*time.Second; s.Unstartable = true }),
				with(cluster("a", b100), func(s *dcs.ClusterState) { s.Switchover = &dcs.Switchover{From: "a", To: "b"} })),
			want:   []string{"renew_leader", "clear_switchover", "release_leader"},
			reason: "cannot be started",
		},
		{
			name: "demoted primary waits for a target whose published position lags",
			v: leaderView(self(RoleStopped, 500, wasPrimary), with(cluster("a", b100), func(s *dcs.ClusterState) {
				s.Switchover = &dcs.Switchover{From: "a", To: "b"}
				s.Status = &dcs.Status{LastLSN: 100 + 16<<20}
			})),
			want:   []string{"renew_leader"},
			reason: "waiting for b to replay",
		},
		{
			name: "switchover timeout is the dynamic configuration's",
			v: withCfg(leaderView(self(RoleStopped, 500, wasPrimary, func(s *Self) { s.DownSince = now - 6*time.Second }),
				with(cluster("a", b100), func(s *dcs.ClusterState) { s.Switchover = &dcs.Switchover{From: "a", To: "b"} })),
				func(c *dcs.Config) { c.SwitchoverTimeout = 5 }),
			want:   []string{"renew_leader", "clear_switchover", "start(primary)"},
			reason: "switchover timeout 5s",
		},
		{
			name: "demoted primary hands over once the target caught up",
			v: leaderView(self(RoleStopped, 500, wasPrimary), with(cluster("a", mem("b", RoleReplica, 500)), func(s *dcs.ClusterState) {
				s.Switchover = &dcs.Switchover{From: "a", To: "b"}
			})),
			want: []string{"release_leader"},
		},
		{
			name: "demoted primary resumes when the target is gone",
			v: leaderView(self(RoleStopped, 500, wasPrimary), with(cluster("a", c100), func(s *dcs.ClusterState) {
				s.Switchover = &dcs.Switchover{From: "a", To: "b"}
			})),
			want:   []string{"renew_leader", "clear_switchover", "start(primary)"},
			reason: "aborted",
		},
		{
			name: "switchover target takes the released key",
			v: plainView(self(RoleReplica, 500), with(cluster("", mem("c", RoleReplica, 900)), func(s *dcs.ClusterState) {
				s.Switchover = &dcs.Switchover{From: "b", To: "a"}
			})),
			want: []string{"acquire_leader", "promote"},
		},
		{
			name: "other replicas do not race the switchover target, even if more advanced",
			v: plainView(self(RoleReplica, 900), with(cluster("", mem("b", RoleReplica, 500)), func(s *dcs.ClusterState) {
				s.Switchover = &dcs.Switchover{From: "c", To: "b"}
			})),
			want:   nil,
			reason: "switchover to b in progress",
		},
		{
			name: "old primary waits after handing over",
			v: plainView(self(RoleStopped, 500, wasPrimary), with(cluster("", b100), func(s *dcs.ClusterState) {
				s.Switchover = &dcs.Switchover{From: "a", To: "b"}
			})),
			want: nil,
		},
		{
			name: "old primary cancels a handed-over switchover nobody completed within the timeout",
			v: plainView(self(RoleStopped, 500, wasPrimary, func(s *Self) { s.DownSince = now - 31*time.Second }),
				with(cluster("", b100), func(s *dcs.ClusterState) { s.Switchover = &dcs.Switchover{From: "a", To: "b"} })),
			want:   []string{"clear_switchover"},
			reason: "b did not take the leader key within the switchover timeout",
		},
		{
			name: "new leader clears the finished switchover",
			v: leaderView(self(RolePrimary, 500), with(cluster("a", aPrimary), func(s *dcs.ClusterState) {
				s.Switchover, s.SwitchoverRevision = &dcs.Switchover{From: "b", To: "a"}, 45
			})),
			want: []string{"renew_leader", "clear_switchover"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.v)
			if diff := cmp.Diff(tc.want, actionStrings(d)); diff != "" {
				t.Errorf("actions (-want +got):\n%s\nreason: %s", diff, d.Reason)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", d.Reason, tc.reason)
			}
			if d.Reason == "" {
				t.Error("empty reason")
			}
		})
	}
}

func actionStrings(d Decision) []string {
	var s []string
	for _, a := range d.Actions {
		s = append(s, a.String())
	}
	return s
}

func TestDecideWakesAtLeaseDeadline(t *testing.T) {
	d := Decide(leaderView(self(RolePrimary, 500), cluster("a", mem("a", RolePrimary, 500))))
	if d.WakeAt != deadline {
		t.Errorf("WakeAt = %s, want the lease deadline %s", d.WakeAt, deadline)
	}
	d = Decide(plainView(self(RoleReplica, 100), cluster("b", mem("b", RolePrimary, 500))))
	if d.WakeAt != 0 {
		t.Errorf("replica WakeAt = %s, want 0", d.WakeAt)
	}
	// While a switchover is carried out, its leader and its target pass
	// every SwitchoverPoll; the other members do not.
	sw := func(s *dcs.ClusterState) { s.Switchover = &dcs.Switchover{From: "b", To: "a"} }
	d = Decide(plainView(self(RoleReplica, 500), with(cluster("b", mem("b", RolePrimary, 500), mem("c", RoleReplica, 500)), sw)))
	if d.WakeAt != now+SwitchoverPoll {
		t.Errorf("switchover target WakeAt = %s, want now+%s", d.WakeAt, SwitchoverPoll)
	}
	d = Decide(leaderView(self(RolePrimary, 500), with(cluster("a", mem("a", RolePrimary, 500), mem("c", RoleReplica, 500)), func(s *dcs.ClusterState) {
		s.Switchover = &dcs.Switchover{From: "a", To: "c"}
	})))
	if d.WakeAt != now+SwitchoverPoll {
		t.Errorf("switchover leader WakeAt = %s, want now+%s", d.WakeAt, SwitchoverPoll)
	}
	v := plainView(self(RoleReplica, 500), with(cluster("b", mem("b", RolePrimary, 500)), func(s *dcs.ClusterState) {
		s.Switchover = &dcs.Switchover{From: "b", To: "c"}
	}))
	if d = Decide(v); d.WakeAt != 0 {
		t.Errorf("bystander WakeAt = %s, want 0", d.WakeAt)
	}
}

// TestSwitchoverOutcome: every clear_switchover records the outcome the
// API reports: empty when done, the reason when cancelled or aborted.
func TestSwitchoverOutcome(t *testing.T) {
	wasPrimary := func(s *Self) { s.WasPrimary = true }
	b100 := mem("b", RoleReplica, 100)
	sw := func(from, to string) func(*dcs.ClusterState) {
		return func(s *dcs.ClusterState) {
			s.Switchover, s.SwitchoverRevision = &dcs.Switchover{From: from, To: to}, 45
		}
	}
	tests := []struct {
		name    string
		v       View
		outcome string
	}{
		{"done", leaderView(self(RolePrimary, 500), with(cluster("a", mem("a", RolePrimary, 500)), sw("b", "a"))), ""},
		{"cancelled: unknown target", leaderView(self(RolePrimary, 500), with(cluster("a", b100), sw("a", "z"))), "target z is not a running member"},
		{"aborted: target not caught up in time",
			leaderView(self(RoleStopped, 500, wasPrimary, func(s *Self) { s.DownSince = now - time.Minute }), with(cluster("a", b100), sw("a", "b"))),
			"b did not replay up to 1F4 within the switchover timeout 30s (at 64)"},
		{"aborted: key not taken in time",
			plainView(self(RoleStopped, 500, wasPrimary, func(s *Self) { s.DownSince = now - time.Minute }), with(cluster("", b100), sw("a", "b"))),
			"b did not take the leader key within the switchover timeout 30s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.v)
			for _, a := range d.Actions {
				if a.Kind == ClearSwitchover {
					if a.Value != tc.outcome || a.Revision != 45 {
						t.Errorf("clear_switchover outcome %q revision %d, want %q revision 45", a.Value, a.Revision, tc.outcome)
					}
					return
				}
			}
			t.Errorf("no clear_switchover in %s", d)
		})
	}
}
