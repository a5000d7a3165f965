// Package ha is the HA agent's decision: a pure function from what the
// agent observed in one loop pass (a View) to what it must do (a Decision).
// It does no I/O and reads no clock: the loop gathers the View (local
// PostgreSQL state, one linearizable DCS read or the fact that it failed,
// its own lease deadline, monotonic "now") and carries out the Decision's
// actions in order, stopping at the first that fails. Decisions are level
// based: they depend only on the current View, never on the event that
// woke the loop, so a repeated or missed pass is harmless.
//
// The decision table is documented in docs/ha.md.
package ha

import (
	"time"

	"github.com/pgherd/pgherd/agent/dcs"
)

// Role is PostgreSQL's role as observed locally.
type Role string

// PostgreSQL roles.
const (
	RolePrimary Role = "primary" // running, not in recovery
	RoleReplica Role = "replica" // running, in recovery
	RoleStopped Role = "stopped" // not running, shut down cleanly
	RoleCrashed Role = "crashed" // not running, not shut down cleanly
	RoleUnknown Role = "unknown" // could not tell
)

// Self is the local member as observed by the loop.
type Self struct {
	Name string
	Role Role
	// Healthy: PostgreSQL answers queries (and, for a replica, streams).
	Healthy  bool
	Timeline uint32
	// WrittenLSN is a primary's current WAL position, or for a stopped
	// member its last checkpoint's redo position (pg_controldata).
	WrittenLSN  uint64
	ReceivedLSN uint64
	ReplayedLSN uint64
	Priority    int
	NoFailover  bool
	// DataDir says the data directory holds an initialized cluster.
	DataDir  bool
	SystemID string
	// WasPrimary: a stopped or crashed member last ran as primary
	// (pg_controldata: "shut down" / "in production").
	WasPrimary bool
	// Following is the member a replica streams from ("" if none).
	Following string
	// Diverged: this member's history has diverged from the leader's
	// (timeline switch after its last LSN). The loop must compute it
	// conservatively: unknown counts as diverged.
	Diverged bool
	// CanRewind: pg_rewind is possible (data checksums or wal_log_hints).
	CanRewind bool
	// RestartNeeded: a parameter replication needs (wal_level,
	// max_wal_senders, …) waits for a restart of the running server.
	RestartNeeded bool
	// DownSince is the monotonic instant the loop first saw PostgreSQL
	// not running (0 while running).
	DownSince time.Duration
	// Unstartable: the loop knows a local start must not be tried: an
	// operation that rewrites the data directory in place (pg_rewind, a
	// clone) stopped midway. It is never started, never a candidate, and
	// is reinitialized from a running leader.
	Unstartable bool
	// ShuttingDown: the agent is stopping cleanly (SIGTERM).
	ShuttingDown bool
	// SyncStandbyNames is synchronous_standby_names as currently in
	// effect in PostgreSQL (pg_settings, after reload).
	SyncStandbyNames string
	// Streaming are the standbys in pg_stat_replication (primary only).
	Streaming []Standby
}

// Standby is one row of the primary's pg_stat_replication.
type Standby struct {
	Name      string // application_name = member name
	FlushLSN  uint64
	ReplayLSN uint64
	Sync      bool // sync_state is "sync" or "quorum"
	NoSync    bool // the member asked never to be synchronous
	Streaming bool // state = "streaming"
}

// View is everything one decision is made from.
type View struct {
	// Now is the loop's monotonic instant (time since an arbitrary
	// origin, the same origin as every other instant in the View).
	Now time.Duration
	// WallClock is the wall-clock time, used only for scheduled
	// switchovers.
	WallClock time.Time
	Self      Self
	// DCS is the cluster as read by one linearizable read in this pass;
	// nil when the read failed (no quorum, unreachable).
	DCS *dcs.ClusterState
	// LeaseID is the agent's own leader lease id (0: none granted).
	LeaseID int64
	// LeaseDeadline is the fencing deadline of the agent's leader lease
	// (dcs.Lease.Deadline on the same monotonic origin); 0 when the agent
	// holds no leader lease.
	LeaseDeadline time.Duration
	// Config is the dynamic configuration: the DCS's when the read
	// succeeded, else the last one known.
	Config dcs.Config
	// AllowReinitialize lets the agent wipe and re-clone its data
	// directory when it cannot rejoin otherwise. Off by default: pgherd
	// deletes a data directory only when asked to.
	AllowReinitialize bool
	// Adopt names the member whose running PostgreSQL becomes the first
	// primary of a new cluster (a migration): that member takes the
	// leader key for the postmaster it did not start instead of fencing
	// it, and no member bootstraps a cluster of its own.
	Adopt string
	// AdoptRegistered: the adopting member has registered (or begun to
	// register) its data directory's system identifier as the cluster's,
	// which it records in the data directory first; from then on other
	// members may clone and lead, and its primary is fenced like any.
	AdoptRegistered bool
}

// InitializePending prefixes the initialize key's value while its winner
// bootstraps: "pending:<member>". The real system identifier replaces it.
const InitializePending = "pending:"

// LeaseValid reports whether the agent holds a leader lease whose fencing
// deadline has not passed.
func (v View) LeaseValid() bool { return v.LeaseDeadline > 0 && v.Now < v.LeaseDeadline }
