package ha

import (
	"fmt"
	"strings"
	"time"
)

// Kind is what an Action does.
type Kind string

// Action kinds. The loop carries them out in the Decision's order and stops
// at the first that fails (a lost race is a failure: AcquireLeader losing
// stops a following Promote).
const (
	// Fence makes PostgreSQL acknowledge no further write, now (an
	// immediate stop). It must take less than the lease's safety margin.
	Fence Kind = "fence"
	// Demote stops a primary cleanly (shutdown checkpoint, all WAL sent to
	// the standbys) for a switchover, keeping the leader key.
	Demote Kind = "demote"
	// Promote promotes the running replica.
	Promote Kind = "promote"
	// StartPostgres starts PostgreSQL as primary (Primary) or as a replica
	// following Target ("" when there is no leader yet).
	StartPostgres Kind = "start"
	// StopPostgres stops PostgreSQL cleanly.
	StopPostgres Kind = "stop"
	// AcquireLeader takes the leader key (txn on create_revision == 0).
	AcquireLeader Kind = "acquire_leader"
	// TakeOverLeader moves the leader key, which holds this member's name
	// under a lease it cannot renew, to its current lease (Revision is the
	// key's mod revision as read).
	TakeOverLeader Kind = "take_over_leader"
	// RenewLeader sends one keepalive of the leader lease; the new
	// deadline counts from when it was sent.
	RenewLeader Kind = "renew_leader"
	// ReleaseLeader deletes the leader key (if ours) and revokes the lease.
	ReleaseLeader Kind = "release_leader"
	// RaceInitialize creates the initialize key with Value if absent.
	RaceInitialize Kind = "race_initialize"
	// Bootstrap runs initdb and starts the new cluster as primary.
	Bootstrap Kind = "bootstrap"
	// SetInitialize stores the system identifier Value in the initialize
	// key (CAS on Revision).
	SetInitialize Kind = "set_initialize"
	// CloneFromLeader makes a new data directory from Target (base backup).
	CloneFromLeader Kind = "clone"
	// FollowLeader points the running replica at Target.
	FollowLeader Kind = "follow"
	// Rewind runs pg_rewind against Target, then starts as its replica.
	Rewind Kind = "rewind"
	// Reinitialize wipes the data directory and clones from Target. Only
	// decided when View.AllowReinitialize is set.
	Reinitialize Kind = "reinitialize"
	// SetSyncStandbyNames sets synchronous_standby_names to Value and
	// reloads; the loop reports it as in effect only once pg_settings
	// shows it.
	SetSyncStandbyNames Kind = "set_sync_standby_names"
	// PublishSync writes the sync key {leader: self, Standbys, Quorum},
	// CAS on Revision.
	PublishSync Kind = "publish_sync"
	// ClearSwitchover deletes the switchover key (CAS on Revision) and
	// records its outcome: Value is why it was cancelled or aborted, ""
	// when it is done.
	ClearSwitchover Kind = "clear_switchover"
	// RestartPostgres stops the running server (fast) and starts it again
	// under the agent.
	RestartPostgres Kind = "restart"
)

// Action is one step of a Decision.
type Action struct {
	Kind Kind
	// Target is the member to follow, clone, rewind from, or hand over to.
	Target string
	// Primary: StartPostgres starts (and if needed promotes) a primary.
	Primary bool
	// Value: the setting or key value to write.
	Value string
	// Standbys and Quorum: the sync key to publish.
	Standbys []string
	Quorum   int
	// Revision guards CAS writes.
	Revision int64
}

// String renders the action compactly for logs and tests:
// "follow(b)", "start(primary)", "publish_sync([b c] any 1)".
func (a Action) String() string {
	switch a.Kind {
	case StartPostgres:
		if a.Primary {
			return "start(primary)"
		}
		if a.Target == "" {
			return "start(replica)"
		}
		return "start(replica of " + a.Target + ")"
	case SetSyncStandbyNames, RaceInitialize, SetInitialize:
		return fmt.Sprintf("%s(%s)", a.Kind, a.Value)
	case PublishSync:
		s := fmt.Sprintf("%s(%v", a.Kind, a.Standbys)
		if a.Quorum > 0 {
			s += fmt.Sprintf(" any %d", a.Quorum)
		}
		return s + ")"
	}
	if a.Target != "" {
		return fmt.Sprintf("%s(%s)", a.Kind, a.Target)
	}
	return string(a.Kind)
}

// Decision is what the loop must do in this pass.
type Decision struct {
	Actions []Action
	// Reason says why, in words, for the log and the API.
	Reason string
	// WakeAt, when non-zero, is the monotonic instant by which the loop
	// must run its next pass even if loop_wait has not elapsed: the lease
	// deadline, so a primary fences on time.
	WakeAt time.Duration
}

// String is "reason: a, b, c".
func (d Decision) String() string {
	if len(d.Actions) == 0 {
		return d.Reason + ": nothing to do"
	}
	s := make([]string, len(d.Actions))
	for i, a := range d.Actions {
		s[i] = a.String()
	}
	return d.Reason + ": " + strings.Join(s, ", ")
}

func act(k Kind) Action                  { return Action{Kind: k} }
func actTo(k Kind, target string) Action { return Action{Kind: k, Target: target} }
func decide(reason string, a ...Action) Decision {
	return Decision{Actions: a, Reason: reason}
}
func decidef(format string, args ...any) func(a ...Action) Decision {
	return func(a ...Action) Decision { return decide(fmt.Sprintf(format, args...), a...) }
}
