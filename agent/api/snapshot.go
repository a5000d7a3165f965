// Package api is the agent's HTTP API: Patroni-compatible health checks for
// load balancers (/primary, /replica?lag=, /read-only, ...), status and
// cluster JSON, authenticated write verbs (switchover, failover, restart,
// reload, pause, reinitialize) and Prometheus metrics.
//
// The API never talks to PostgreSQL or etcd itself. It serves from the
// Snapshot the agent loop published at the end of its last pass (Source),
// and hands write verbs to the loop (Controller). Both interfaces are
// defined here and implemented by the loop.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Roles a member may report in Snapshot.Role.
const (
	RolePrimary       = "primary"
	RoleReplica       = "replica"
	RoleStandbyLeader = "standby_leader"
	RoleUninitialized = "uninitialized"
	RoleStopped       = "stopped"
	RoleFenced        = "fenced"
)

// StateRunning is the Snapshot.State of a member whose PostgreSQL accepts
// connections. Other states ("starting", "stopped", "crashed", "restarting",
// "fenced", ...) are passed through to clients as they are.
const StateRunning = "running"

// Snapshot is what the loop knows at the end of its last pass. The API
// serves from it and never blocks on PostgreSQL or etcd.
type Snapshot struct {
	Member          string
	Role            string // one of the Role* constants
	State           string // "running", "starting", "stopped", "crashed", "restarting", "fenced", ...
	PostgresRunning bool
	ServerVersion   int // server_version_num, e.g. 170002; 0 unknown
	Timeline        int
	XLogLocation    uint64 // primary: current WAL LSN; replica: replayed LSN
	ReceivedLSN     uint64 // replica: last WAL received
	ReplayedLSN     uint64 // replica: last WAL replayed
	LagBytes        int64  // replica: bytes behind the leader's last published LSN; -1 unknown
	Streaming       bool   // replica: the WAL receiver streams from the leader
	// IsLeader: this member holds the leader key. The API trusts it only
	// until LeaseDeadline, the fencing deadline (t_send of the last
	// acknowledged keepalive + ttl - safety margin). The loop should derive
	// LeaseDeadline from time.Now() so that it carries a monotonic reading.
	IsLeader       bool
	LeaseDeadline  time.Time
	Paused         bool
	SyncStandby    bool              // this member is listed in the sync key
	Tags           map[string]string // nofailover, noloadbalance, ...
	PendingRestart bool
	LastLoop       time.Time // when the loop last finished a pass (for /liveness)
	DCSReachable   bool
	Cluster        ClusterView
	Version        string // pgherd's version
}

// ClusterView is the cluster as the loop last read it from the DCS.
type ClusterView struct {
	Scope   string // the cluster's name
	Leader  string // member holding the leader key; "" when unlocked
	Members []Member
	// SynchronousMode: only a member listed in SyncStandbys may be promoted.
	SynchronousMode bool
	SyncStandbys    []string
	// LeaderLSN is the leader's last published WAL position; 0 unknown.
	LeaderLSN uint64
	// MaximumLagOnFailover is the default lag, in bytes, /readiness
	// accepts on a replica; 0 means 1 MiB as in Patroni.
	MaximumLagOnFailover int64
	ScheduledSwitchover  *ScheduledSwitchover
	History              []HistoryEntry
	// Config is the dynamic configuration stored in the DCS, served by
	// GET /config; nil when it has not been read.
	Config json.RawMessage
}

// Member is one member of the cluster as published in the DCS.
type Member struct {
	Name           string
	Role           string // "leader", "standby_leader", "sync_standby", "replica" (Patroni's /cluster roles)
	State          string // "running", "streaming", "stopped", ...
	APIURL         string
	Host           string
	Port           int
	Timeline       int
	LagBytes       int64 // -1 unknown; ignored for the leader
	Tags           map[string]string
	PendingRestart bool
}

// ScheduledSwitchover is a switchover waiting for its time.
type ScheduledSwitchover struct {
	At   time.Time
	From string
	To   string
}

// HistoryEntry is one timeline switch of the cluster. It is served as
// Patroni does: [timeline, lsn, reason, timestamp, new_leader].
type HistoryEntry struct {
	Timeline int
	LSN      uint64
	Reason   string
	Time     time.Time
	Leader   string
}

// MarshalJSON renders the entry as Patroni's history line.
func (h HistoryEntry) MarshalJSON() ([]byte, error) {
	var ts any
	if !h.Time.IsZero() {
		ts = h.Time.Format(time.RFC3339Nano)
	}
	return json.Marshal([]any{h.Timeline, h.LSN, h.Reason, ts, h.Leader})
}

// Source gives the loop's last Snapshot. Snapshot must not block: it
// returns a copy of what the loop stored.
type Source interface {
	Snapshot() Snapshot
}

// Controller carries out the write verbs. Each method blocks until the
// action is done (or, for a scheduled switchover, recorded) or ctx ends.
// Errors wrapping ErrNotPossible are answered 412, ErrConflict 409, any
// other error 503; the error text is sent to the client.
type Controller interface {
	Switchover(ctx context.Context, leader, candidate string, at time.Time) error
	Failover(ctx context.Context, candidate string) error
	Restart(ctx context.Context) error
	Reload(ctx context.Context) error
	Pause(ctx context.Context, paused bool) error
	Reinitialize(ctx context.Context) error
}

// Errors a Controller may wrap to choose the HTTP status.
var (
	// ErrNotPossible: the action cannot be carried out in the cluster's
	// present state (no healthy candidate, candidate not in sync, ...): 412.
	ErrNotPossible = errors.New("action not possible")
	// ErrConflict: another action is in progress or scheduled: 409.
	ErrConflict = errors.New("another action is in progress")
)
