package dcs

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is what each agent publishes about itself under members/<name>.
type Member struct {
	Name string `json:"name"`
	// Role is PostgreSQL's role as the agent sees it: "primary",
	// "replica", "stopped", "crashed" or "unknown".
	Role string `json:"role"`
	// State is a free-form state for humans and the API ("running",
	// "starting", "rewinding", "fenced", …).
	State    string `json:"state,omitempty"`
	APIURL   string `json:"api_url,omitempty"`
	ConnURL  string `json:"conn_url,omitempty"`
	Healthy  bool   `json:"healthy"`
	Timeline uint32 `json:"timeline,omitempty"`
	// WrittenLSN is the primary's current WAL position; ReceivedLSN and
	// ReplayedLSN a replica's (as uint64).
	WrittenLSN  uint64 `json:"written_lsn,omitempty"`
	ReceivedLSN uint64 `json:"received_lsn,omitempty"`
	ReplayedLSN uint64 `json:"replayed_lsn,omitempty"`
	// LagBytes is the replica's lag behind the leader's last published
	// position.
	LagBytes   uint64 `json:"lag_bytes,omitempty"`
	Priority   int    `json:"priority,omitempty"`
	NoFailover bool   `json:"nofailover,omitempty"`
	NoSync     bool   `json:"nosync,omitempty"`
	// SystemID is PostgreSQL's database system identifier.
	SystemID string `json:"system_id,omitempty"`
	// Pending says what the member is in the middle of (e.g. "switchover
	// demoting") so peers can reason about it.
	Pending string `json:"pending,omitempty"`
	// Version is the agent's version.
	Version string `json:"version,omitempty"`

	// ModRevision and Lease come from etcd, not from the JSON.
	ModRevision int64 `json:"-"`
	Lease       int64 `json:"-"`
}

// SyncMode is the dynamic configuration's synchronous_mode.
type SyncMode string

// Synchronous replication modes.
const (
	SyncOff    SyncMode = "off"
	SyncOn     SyncMode = "on"
	SyncStrict SyncMode = "strict"
)

// Config is the cluster's dynamic configuration (the config key). Durations
// are in seconds in JSON, as in Patroni.
type Config struct {
	TTL                  int      `json:"ttl"`
	LoopWait             int      `json:"loop_wait"`
	RetryTimeout         int      `json:"retry_timeout"`
	MaximumLagOnFailover uint64   `json:"maximum_lag_on_failover"`
	SynchronousMode      SyncMode `json:"synchronous_mode,omitempty"`
	// SynchronousNodeCount is how many standbys must confirm a commit
	// (FIRST n or ANY n, see SynchronousQuorum).
	SynchronousNodeCount int `json:"synchronous_node_count,omitempty"`
	// SynchronousQuorum selects "ANY n (…)" instead of "FIRST n (…)".
	SynchronousQuorum bool `json:"synchronous_quorum,omitempty"`
	Paused            bool `json:"paused,omitempty"`
	// MasterStartTimeout is how long a crashed primary may take to restart
	// while holding the leader key before it releases it (seconds).
	MasterStartTimeout int `json:"master_start_timeout,omitempty"`
	// SwitchoverTimeout bounds a switchover from the old primary's
	// demotion (seconds): when the target has not replayed everything by
	// then, or has not taken the leader key after the handover, the
	// switchover is aborted and the old primary resumes (or, once the key
	// is released, the cluster fails over as usual). 0: DefaultConfig's.
	SwitchoverTimeout int `json:"switchover_timeout,omitempty"`
	// UsePgRewind allows a diverged former primary to rejoin by pg_rewind.
	UsePgRewind bool `json:"use_pg_rewind,omitempty"`
	// RemoveDataDirectoryOnDivergence allows reinitializing (re-cloning) a
	// member that cannot rejoin otherwise.
	RemoveDataDirectoryOnDivergence bool `json:"remove_data_directory_on_diverged_timelines,omitempty"`
}

// DefaultConfig is Patroni's defaults.
func DefaultConfig() Config {
	return Config{TTL: 30, LoopWait: 10, RetryTimeout: 10, MaximumLagOnFailover: 1 << 20,
		SynchronousMode: SyncOff, SynchronousNodeCount: 1, MasterStartTimeout: 300, UsePgRewind: true,
		SwitchoverTimeout: 30}
}

// Sync is the sync key: the standbys the leader has made synchronous.
// Only a member named here may be promoted in synchronous mode.
type Sync struct {
	Leader   string   `json:"leader"`
	Standbys []string `json:"standbys"`
	// Quorum is k of "ANY k (…)"; 0 for "FIRST n (…)".
	Quorum int `json:"quorum,omitempty"`
}

// Switchover is a requested switchover (or failover, when From is empty).
type Switchover struct {
	From        string    `json:"from,omitempty"`
	To          string    `json:"to,omitempty"`
	ScheduledAt time.Time `json:"scheduled_at,omitzero"`
	// RequestedAt is when the request was made: a target that lags is
	// waited for until switchover_timeout after it (or after ScheduledAt).
	RequestedAt time.Time `json:"requested_at,omitzero"`
}

// SwitchoverResult is how the last switchover request ended, written by
// the member that cleared it, so that whoever asked can report why.
type SwitchoverResult struct {
	// Revision is the request's revision (the switchover key's mod
	// revision when it was written).
	Revision int64 `json:"revision"`
	// Aborted: the switchover was cancelled or aborted, for Reason.
	Aborted bool      `json:"aborted,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Time    time.Time `json:"time"`
}

// HistoryEntry records one promotion.
type HistoryEntry struct {
	Timeline uint32    `json:"timeline"`
	LSN      uint64    `json:"lsn"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
	Leader   string    `json:"leader"`
}

// Status is what the leader publishes about the cluster's progress.
type Status struct {
	// LastLSN is the leader's last written WAL position.
	LastLSN uint64 `json:"optime"`
	// Slots are the leader's logical replication slots, which the
	// replicas keep copies of so that they survive a failover; nil when
	// the leader does not publish them (an older agent), empty when it
	// has none.
	Slots map[string]LogicalSlot `json:"slots"`
}

// LogicalSlot is a logical slot's identity and position on the leader.
type LogicalSlot struct {
	Plugin   string `json:"plugin"`
	Database string `json:"database"`
	// ConfirmedFlush is how far its consumer has confirmed (LSN).
	ConfirmedFlush uint64 `json:"confirmed_flush_lsn"`
}

// LeaderKey is the leader key as read.
type LeaderKey struct {
	Name           string
	Lease          int64
	ModRevision    int64
	CreateRevision int64
}

// ClusterState is the whole cluster as read by one linearizable request.
// Each *Revision field is the key's mod revision (0 when the key is absent),
// for compare-and-swap writes.
type ClusterState struct {
	// Revision is the etcd store revision the read was served at.
	Revision int64
	// Leader is nil when there is no leader key.
	Leader *LeaderKey
	// Members, sorted by name.
	Members []Member
	// Config is DefaultConfig when the key is absent.
	Config             Config
	ConfigRevision     int64
	Sync               *Sync
	SyncRevision       int64
	Switchover         *Switchover
	SwitchoverRevision int64
	SwitchoverResult   *SwitchoverResult
	// Initialize is the system identifier ("" when not initialized yet),
	// or "pending:<member>" while that member bootstraps, on the lease
	// InitializeLease (0: permanent).
	Initialize         string
	InitializeRevision int64
	InitializeLease    int64
	History            []HistoryEntry
	HistoryRevision    int64
	Status             *Status
}

// Member returns the named member, if it is registered.
func (s *ClusterState) Member(name string) (Member, bool) {
	for _, m := range s.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// Read reads the whole cluster in one linearizable range request. Decisions
// must be made only on what Read returns, never on a serializable read.
func (c *Client) Read(ctx context.Context) (*ClusterState, error) {
	var resp *clientv3.GetResponse
	err := c.call(ctx, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Get(ctx, c.prefix, clientv3.WithPrefix())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dcs: read cluster: %w", classify(ctx, err))
	}
	s := &ClusterState{Revision: resp.Header.Revision, Config: DefaultConfig()}
	for _, kv := range resp.Kvs {
		k := strings.TrimPrefix(string(kv.Key), c.prefix)
		var derr error
		switch {
		case k == KeyLeader:
			s.Leader = &LeaderKey{Name: string(kv.Value), Lease: kv.Lease, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision}
		case strings.HasPrefix(k, KeyMembers):
			var m Member
			if derr = json.Unmarshal(kv.Value, &m); derr == nil {
				m.Name = strings.TrimPrefix(k, KeyMembers)
				m.ModRevision, m.Lease = kv.ModRevision, kv.Lease
				s.Members = append(s.Members, m)
			}
		case k == KeyConfig:
			derr = json.Unmarshal(kv.Value, &s.Config)
			s.ConfigRevision = kv.ModRevision
		case k == KeySync:
			s.Sync = &Sync{}
			derr = json.Unmarshal(kv.Value, s.Sync)
			s.SyncRevision = kv.ModRevision
		case k == KeySwitchover:
			s.Switchover = &Switchover{}
			derr = json.Unmarshal(kv.Value, s.Switchover)
			s.SwitchoverRevision = kv.ModRevision
		case k == KeySwitchoverResult:
			s.SwitchoverResult = &SwitchoverResult{}
			derr = json.Unmarshal(kv.Value, s.SwitchoverResult)
		case k == KeyInitialize:
			s.Initialize = string(kv.Value)
			s.InitializeRevision = kv.ModRevision
			s.InitializeLease = kv.Lease
		case k == KeyHistory:
			derr = json.Unmarshal(kv.Value, &s.History)
			s.HistoryRevision = kv.ModRevision
		case k == KeyStatus:
			s.Status = &Status{}
			derr = json.Unmarshal(kv.Value, s.Status)
		}
		if derr != nil {
			// A malformed key must not stop the agent; it is reported and
			// read as absent/zero.
			c.log.Warn("malformed dcs key", "key", string(kv.Key), "err", derr)
		}
	}
	sort.Slice(s.Members, func(i, j int) bool { return s.Members[i].Name < s.Members[j].Name })
	return s, nil
}
