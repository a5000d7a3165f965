package agent

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgherd/pgherd/agent/api"
	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/ha"
	"github.com/pgherd/pgherd/agent/pg"
)

// observe gathers one View: the local PostgreSQL, one linearizable read of
// the DCS (nil when it failed), and the agent's own lease.
func (a *Agent) observe(ctx context.Context) ha.View {
	// A leader's look at its own PostgreSQL is bounded by the fencing
	// deadline like its etcd calls: a server that accepts a connection
	// but does not answer must not hold the loop past the deadline (the
	// view is then "unknown", which fences past the deadline).
	pctx, cancel := a.untilFence(ctx)
	st, err := a.pg.Status(pctx)
	cancel()
	if err != nil {
		a.log.Warn("observing postgres", "err", err)
		st = pg.Status{State: pg.StateStarting, ConnError: err.Error()}
	}
	a.lastStatus = st
	pending := a.adoptPending()

	var cs *dcs.ClusterState
	if !pending && a.fenceDue(st) {
		// A primary past its fencing deadline fences before anything
		// else, etcd's answer or not: no read may delay it.
		err = errFenceFirst
	} else {
		rctx, cancel := a.untilFence(ctx)
		cs, err = a.dcs.Read(rctx)
		cancel()
	}
	// The view's instant is taken after the read: a read that ran into
	// the fencing deadline yields a view past it.
	now := a.now()
	if err != nil {
		a.log.Warn("reading the DCS", "err", err)
		cs = nil
	} else {
		a.lastState = cs
		if cs.ConfigRevision != 0 {
			a.lastConfig = cs.Config
		}
		if a.leaderLease != nil && cs.Leader != nil && cs.Leader.Name != a.cfg.Name {
			// Another member leads: a lease kept from this member's own
			// leadership (fenced while etcd was unreachable) is of no use
			// any more, and must not make a starting replica look like a
			// leader past its deadline.
			a.log.Info("dropping the old leader lease: " + cs.Leader.Name + " leads")
			a.leaderLease = nil
		}
	}

	self := a.self(st, cs, now)
	v := ha.View{
		Now:       now,
		WallClock: time.Now(),
		Self:      self,
		DCS:       cs,
		Config:    a.lastConfig,
		Adopt:     a.cfg.Postgres.Adopt,
		// Only the adopting member's own marker counts.
		AdoptRegistered: !pending,
	}
	if a.leaderLease != nil {
		v.LeaseID = a.leaderLease.ID()
		v.LeaseDeadline = a.mono(a.leaderLease.Deadline())
	}
	return v
}

// adoptPending reports that this member adopts a running primary whose
// data directory it has not registered as the cluster's yet
// (ha.View.AdoptRegistered): until then nothing fences it, so no pass
// skips its etcd read for a fencing that will not come. A marker that
// cannot be read counts as written: the ordinary rules, fencing first.
func (a *Agent) adoptPending() bool {
	if a.cfg.Postgres.Adopt != a.cfg.Name {
		return false
	}
	ok, err := a.pg.AdoptRegistered()
	if err != nil {
		a.log.Warn("reading the adoption marker", "err", err)
		return false
	}
	return !ok
}

// errFenceFirst is why a pass that must fence did not read etcd.
var errFenceFirst = errors.New("fencing deadline passed: fencing before reading etcd")

// fenceDue reports that PostgreSQL runs as a primary, or runs and did not
// say what it is, while this agent's leader lease is past its fencing
// deadline.
func (a *Agent) fenceDue(st pg.Status) bool {
	if a.leaderLease == nil {
		return false
	}
	if !(st.State == pg.StateRunning && !st.InRecovery || st.State == pg.StateStarting) {
		return false
	}
	d := a.leaderLease.Deadline()
	return !d.IsZero() && !time.Now().Before(d)
}

// self maps the local PostgreSQL's status onto the decision's Self.
func (a *Agent) self(st pg.Status, cs *dcs.ClusterState, now time.Duration) ha.Self {
	s := ha.Self{
		Name:         a.cfg.Name,
		Priority:     a.cfg.HA.Priority,
		NoFailover:   a.cfg.HA.NoFailover,
		Timeline:     st.TimeLine,
		ShuttingDown: a.shuttingDown.Load(),
		// initdb always enables data checksums.
		CanRewind: st.DataChecksums || st.State == pg.StateRunning,
	}
	s.RestartNeeded = slices.ContainsFunc(st.PendingRestart, func(p string) bool { return restartForReplication[p] })
	if st.SystemID != 0 {
		s.SystemID = strconv.FormatUint(st.SystemID, 10)
	}
	switch st.State {
	case pg.StateUninitialized:
		s.Role = ha.RoleStopped
	case pg.StateRunning:
		s.DataDir = true
		s.Healthy = true
		if st.InRecovery {
			s.Role = ha.RoleReplica
			s.ReceivedLSN, s.ReplayedLSN = uint64(st.ReceiveLSN), uint64(st.ReplayLSN)
			// What it follows is what it is configured to follow: the WAL
			// receiver may be between two connection attempts.
			if host, _, err := a.pg.Upstream(); err == nil && host != "" {
				s.Following = a.memberAt(cs, host)
			}
			s.Diverged = replicaDiverged(st, cs)
		} else {
			s.Role = ha.RolePrimary
			s.WrittenLSN = uint64(st.WriteLSN)
			s.SyncStandbyNames = st.SyncStandbyNames
			for _, r := range st.Replicas {
				s.Streaming = append(s.Streaming, ha.Standby{
					Name: r.AppName, FlushLSN: uint64(r.FlushLSN), ReplayLSN: uint64(r.ReplayLSN),
					Sync: r.SyncState == "sync" || r.SyncState == "quorum", Streaming: r.State == "streaming",
					NoSync: a.memberNoSync(cs, r.AppName),
				})
			}
		}
	case pg.StateStopped:
		s.DataDir = true
		if st.Incomplete != "" {
			// Starting a half-rewritten directory, as a primary above
			// all, would lose the cluster's history.
			s.Unstartable = true
			if a.lastIncomplete != st.Incomplete {
				a.log.Warn("the data directory was left unusable by an unfinished operation: it will not be started, only reinitialized from a running leader",
					"operation", st.Incomplete)
			}
		}
		a.lastIncomplete = st.Incomplete
		s.WrittenLSN = uint64(st.CheckpointLSN)
		switch st.ClusterState {
		case "shut down":
			s.Role, s.WasPrimary = ha.RoleStopped, true
		case "shut down in recovery":
			s.Role = ha.RoleStopped
		case "in production":
			s.Role, s.WasPrimary = ha.RoleCrashed, true
		default:
			s.Role = ha.RoleCrashed
		}
		s.Diverged = a.diverged(st, cs, s.WasPrimary)
	default:
		s.DataDir = true
		s.Role = ha.RoleUnknown
	}
	if s.Role == ha.RolePrimary || s.Role == ha.RoleReplica {
		a.downSince = 0
	} else if a.downSince == 0 {
		a.downSince = now
	}
	s.DownSince = a.downSince
	return s
}

// diverged tells, conservatively, whether a stopped member's history left
// the cluster's: a former primary whose timeline the cluster has moved past
// diverged unless it was shut down cleanly before the switch point of the
// next timeline (it then only needs to follow). Unknown counts as
// diverged; pg_rewind changes nothing when it was not.
//
// Another member holding the leader key must promote past this former
// primary's timeline before it can be followed; until its member key or
// the history key shows that promotion, whether this one diverged is
// unknown. The leader's member key lags its promotion (it is published on
// the next pass, and not at all while etcd is unreachable): trusting its
// old timeline started a former primary with WAL past the switch point as
// a replica that could never follow (found by the chaos soak).
func (a *Agent) diverged(st pg.Status, cs *dcs.ClusterState, wasPrimary bool) bool {
	if !wasPrimary || cs == nil || cs.Leader == nil || cs.Leader.Name == a.cfg.Name {
		return false
	}
	lm, ok := cs.Member(cs.Leader.Name)
	moved := ok && lm.Timeline > st.TimeLine
	for _, h := range cs.History {
		moved = moved || h.Timeline > st.TimeLine
	}
	if !moved || st.ClusterState != "shut down" {
		// Not shut down cleanly: WAL may go on past the last checkpoint,
		// so where it ends is unknown here.
		return true
	}
	for _, h := range cs.History {
		if h.Timeline == st.TimeLine+1 {
			// A clean shutdown's checkpoint is the end of its WAL.
			return uint64(st.CheckpointLSN) >= h.LSN
		}
	}
	return true
}

// replicaDiverged tells whether a running replica replayed WAL of its
// timeline past the point where the next timeline of the history key
// forked off: it can never follow that timeline (PostgreSQL logs "new
// timeline N forked off current database system timeline before current
// recovery point" and the WAL receiver retries forever) and must be
// rewound. Such a replica is a former primary with WAL it never
// replicated, or a replica that received WAL the promoted member never had.
func replicaDiverged(st pg.Status, cs *dcs.ClusterState) bool {
	if cs == nil || st.ReplayLSN == 0 {
		return false
	}
	for _, h := range cs.History {
		if h.Timeline == st.TimeLine+1 {
			return uint64(st.ReplayLSN) > h.LSN
		}
	}
	return false
}

// memberAt is the member whose address is host ("" if none).
func (a *Agent) memberAt(cs *dcs.ClusterState, host string) string {
	if cs == nil {
		return ""
	}
	for _, m := range cs.Members {
		if u, err := url.Parse(m.ConnURL); err == nil && u.Hostname() == host {
			return m.Name
		}
	}
	return ""
}

func (a *Agent) memberNoSync(cs *dcs.ClusterState, name string) bool {
	if cs == nil {
		return false
	}
	m, ok := cs.Member(name)
	return ok && m.NoSync
}

// member is what this agent publishes about itself.
func (a *Agent) member(v ha.View) dcs.Member {
	s := v.Self
	m := dcs.Member{
		Name:        s.Name,
		Role:        string(s.Role),
		State:       string(a.lastStatus.State),
		APIURL:      a.cfg.TLS.scheme() + "://" + hostPort(a.cfg.Address, apiPort(a.cfg.API.Listen)) + "/patroni",
		ConnURL:     "postgres://" + hostPort(a.cfg.Address, strconv.Itoa(a.cfg.Postgres.Port)) + "/postgres",
		Healthy:     s.Healthy,
		Timeline:    s.Timeline,
		WrittenLSN:  s.WrittenLSN,
		ReceivedLSN: s.ReceivedLSN,
		ReplayedLSN: s.ReplayedLSN,
		Priority:    s.Priority,
		NoFailover:  s.NoFailover,
		NoSync:      a.cfg.HA.NoSync,
		SystemID:    s.SystemID,
		Version:     a.version,
	}
	if v.DCS != nil && v.DCS.Status != nil && s.Role == ha.RoleReplica && v.DCS.Status.LastLSN > s.ReplayedLSN {
		m.LagBytes = v.DCS.Status.LastLSN - max(s.ReceivedLSN, s.ReplayedLSN)
	}
	return m
}

func hostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

func apiPort(listen string) string {
	if i := strings.LastIndex(listen, ":"); i >= 0 {
		return listen[i+1:]
	}
	return "8008"
}

// publishSnapshot stores what the API serves until the next pass.
func (a *Agent) publishSnapshot(v ha.View) {
	st := a.lastStatus
	s := api.Snapshot{
		Member:          a.cfg.Name,
		State:           string(st.State),
		PostgresRunning: st.State == pg.StateRunning,
		Timeline:        int(st.TimeLine),
		LastLoop:        time.Now(),
		DCSReachable:    v.DCS != nil,
		Version:         a.version,
		Paused:          a.lastConfig.Paused,
		PendingRestart:  len(st.PendingRestart) > 0,
		ServerVersion:   st.ServerVersion,
		LagBytes:        -1,
		Tags:            map[string]string{},
	}
	if a.cfg.HA.NoFailover {
		s.Tags["nofailover"] = "true"
	}
	switch {
	case st.State == pg.StateUninitialized:
		s.Role = api.RoleUninitialized
	case st.State != pg.StateRunning:
		s.Role = api.RoleStopped
	case st.InRecovery:
		s.Role = api.RoleReplica
		s.ReceivedLSN, s.ReplayedLSN = uint64(st.ReceiveLSN), uint64(st.ReplayLSN)
		s.XLogLocation = uint64(st.ReplayLSN)
		s.Streaming = st.WALReceiver != nil && st.WALReceiver.Status == "streaming"
		if v.DCS != nil && v.DCS.Status != nil {
			s.LagBytes = max(0, int64(v.DCS.Status.LastLSN)-int64(max(st.ReceiveLSN, st.ReplayLSN)))
		}
	default:
		s.Role = api.RolePrimary
		s.XLogLocation = uint64(st.WriteLSN)
		s.LagBytes = 0
	}
	if a.leaderLease != nil && v.DCS != nil && v.DCS.Leader != nil && v.DCS.Leader.Name == a.cfg.Name && v.DCS.Leader.Lease == a.leaderLease.ID() {
		s.IsLeader = true
		s.LeaseDeadline = a.leaderLease.Deadline()
	} else if a.leaderLease != nil && v.DCS == nil {
		// The DCS is unreachable: the lease still counts until its deadline.
		s.IsLeader = true
		s.LeaseDeadline = a.leaderLease.Deadline()
	}
	if cs := v.DCS; cs != nil {
		s.Cluster = clusterView(a.cfg.Cluster, cs)
		s.SyncStandby = cs.Sync != nil && slices.Contains(cs.Sync.Standbys, a.cfg.Name)
	}
	a.snapshot.Store(&s)
}

func clusterView(scope string, cs *dcs.ClusterState) api.ClusterView {
	cv := api.ClusterView{Scope: scope, MaximumLagOnFailover: int64(cs.Config.MaximumLagOnFailover),
		SynchronousMode: cs.Config.SynchronousMode == dcs.SyncOn || cs.Config.SynchronousMode == dcs.SyncStrict}
	if cs.Leader != nil {
		cv.Leader = cs.Leader.Name
	}
	if cs.Sync != nil {
		cv.SyncStandbys = cs.Sync.Standbys
	}
	if cs.Status != nil {
		cv.LeaderLSN = cs.Status.LastLSN
	}
	if sw := cs.Switchover; sw != nil {
		cv.ScheduledSwitchover = &api.ScheduledSwitchover{At: sw.ScheduledAt, From: sw.From, To: sw.To}
	}
	for _, h := range cs.History {
		cv.History = append(cv.History, api.HistoryEntry{Timeline: int(h.Timeline), LSN: h.LSN, Reason: h.Reason, Time: h.Time, Leader: h.Leader})
	}
	for _, m := range cs.Members {
		role := "replica"
		switch {
		case m.Name == cv.Leader:
			role = "leader"
		case slices.Contains(cv.SyncStandbys, m.Name):
			role = "sync_standby"
		}
		host, port := "", 0
		if u, err := url.Parse(m.ConnURL); err == nil {
			host = u.Hostname()
			port, _ = strconv.Atoi(u.Port())
		}
		state := m.State
		if state == "running" && m.Role == "replica" {
			state = "streaming"
		}
		cv.Members = append(cv.Members, api.Member{Name: m.Name, Role: role, State: state, APIURL: m.APIURL,
			Host: host, Port: port, Timeline: int(m.Timeline), LagBytes: int64(m.LagBytes)})
	}
	return cv
}
