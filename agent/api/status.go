package api

import (
	"time"
)

// memberStatus is the JSON of GET /patroni and of the health checks, in
// the shape of Patroni's so that patronictl and existing tools read it.
type memberStatus struct {
	State            string            `json:"state"`
	Role             string            `json:"role"`
	ServerVersion    int               `json:"server_version,omitempty"`
	XLog             *xlogStatus       `json:"xlog,omitempty"`
	Timeline         int               `json:"timeline,omitempty"`
	ReplicationState string            `json:"replication_state,omitempty"`
	ClusterUnlocked  bool              `json:"cluster_unlocked"`
	SyncStandby      bool              `json:"sync_standby,omitempty"`
	Pause            bool              `json:"pause,omitempty"`
	Tags             map[string]string `json:"tags,omitempty"`
	PendingRestart   bool              `json:"pending_restart,omitempty"`
	Patroni          patroniInfo       `json:"patroni"`
	Pgherd           pgherdStatus      `json:"pgherd"`
}

type xlogStatus struct {
	Location         *uint64 `json:"location,omitempty"`
	ReceivedLocation *uint64 `json:"received_location,omitempty"`
	ReplayedLocation *uint64 `json:"replayed_location,omitempty"`
}

type patroniInfo struct {
	Version string `json:"version"`
	Scope   string `json:"scope"`
	Name    string `json:"name"`
}

// pgherdStatus is what pgherd adds to Patroni's status.
type pgherdStatus struct {
	IsLeader              bool     `json:"is_leader"`
	LeaseValid            bool     `json:"lease_valid"`
	LeaseRemainingSeconds *float64 `json:"lease_remaining_seconds,omitempty"`
	LagBytes              *int64   `json:"lag_bytes,omitempty"`
	Streaming             bool     `json:"streaming,omitempty"`
	DCSReachable          bool     `json:"dcs_reachable"`
	LastLoop              string   `json:"last_loop,omitempty"`
}

// Patroni names the primary role "primary" since 3.0; older tools accept it.
func statusOf(s *Snapshot, now time.Time) memberStatus {
	st := memberStatus{
		State:            s.State,
		Role:             s.Role,
		ServerVersion:    s.ServerVersion,
		Timeline:         s.Timeline,
		ReplicationState: replicationState(s),
		ClusterUnlocked:  s.Cluster.Leader == "",
		SyncStandby:      s.SyncStandby,
		Pause:            s.Paused,
		Tags:             s.Tags,
		PendingRestart:   s.PendingRestart,
		Patroni:          patroniInfo{Version: s.Version, Scope: s.Cluster.Scope, Name: s.Member},
	}
	if st.State == "" {
		st.State = "unknown"
	}
	if s.PostgresRunning {
		switch s.Role {
		case RolePrimary:
			loc := s.XLogLocation
			st.XLog = &xlogStatus{Location: &loc}
		case RoleReplica, RoleStandbyLeader:
			rcv, rep := s.ReceivedLSN, s.ReplayedLSN
			st.XLog = &xlogStatus{ReceivedLocation: &rcv, ReplayedLocation: &rep}
		}
	}
	valid, _ := leaseValid(s, now)
	st.Pgherd = pgherdStatus{
		IsLeader:     s.IsLeader,
		LeaseValid:   valid,
		Streaming:    s.Streaming,
		DCSReachable: s.DCSReachable,
	}
	if valid {
		r := s.LeaseDeadline.Sub(now).Seconds()
		st.Pgherd.LeaseRemainingSeconds = &r
	}
	if s.Role == RoleReplica {
		lag := s.LagBytes
		st.Pgherd.LagBytes = &lag
	}
	if !s.LastLoop.IsZero() {
		st.Pgherd.LastLoop = s.LastLoop.UTC().Format(time.RFC3339Nano)
	}
	return st
}

// clusterStatus is the JSON of GET /cluster, in the shape of Patroni's.
type clusterStatus struct {
	Scope               string          `json:"scope"`
	Members             []clusterMember `json:"members"`
	Pause               bool            `json:"pause,omitempty"`
	ScheduledSwitchover *scheduledJSON  `json:"scheduled_switchover,omitempty"`
	SynchronousMode     bool            `json:"synchronous_mode,omitempty"`
	SyncStandbys        []string        `json:"sync_standbys,omitempty"`
	Leader              string          `json:"leader,omitempty"`
}

type clusterMember struct {
	Name           string            `json:"name"`
	Role           string            `json:"role"`
	State          string            `json:"state"`
	APIURL         string            `json:"api_url,omitempty"`
	Host           string            `json:"host,omitempty"`
	Port           int               `json:"port,omitempty"`
	Timeline       int               `json:"timeline,omitempty"`
	Lag            any               `json:"lag,omitempty"` // bytes, or "unknown"
	Tags           map[string]string `json:"tags,omitempty"`
	PendingRestart bool              `json:"pending_restart,omitempty"`
}

type scheduledJSON struct {
	At   string `json:"at"`
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

func clusterOf(s *Snapshot) clusterStatus {
	c := s.Cluster
	out := clusterStatus{
		Scope:           c.Scope,
		Members:         make([]clusterMember, 0, len(c.Members)),
		Pause:           s.Paused,
		SynchronousMode: c.SynchronousMode,
		SyncStandbys:    c.SyncStandbys,
		Leader:          c.Leader,
	}
	for _, m := range c.Members {
		cm := clusterMember{
			Name: m.Name, Role: m.Role, State: m.State, APIURL: m.APIURL,
			Host: m.Host, Port: m.Port, Timeline: m.Timeline,
			Tags: m.Tags, PendingRestart: m.PendingRestart,
		}
		if m.Role != "leader" && m.Role != RoleStandbyLeader {
			if m.LagBytes < 0 {
				cm.Lag = "unknown"
			} else {
				cm.Lag = m.LagBytes
			}
		}
		out.Members = append(out.Members, cm)
	}
	if sw := c.ScheduledSwitchover; sw != nil {
		out.ScheduledSwitchover = &scheduledJSON{At: sw.At.Format(time.RFC3339), From: sw.From, To: sw.To}
	}
	return out
}
