package ha

import "github.com/pgherd/pgherd/agent/dcs"

// decideAdopt is rule 0, the adoption of a running postmaster (a
// migration): while the cluster is not initialized, the adopting member
// takes the leader key for the primary someone else started, rather than
// fencing a primary it holds no lease for; once it leads, it restarts the
// server only when a parameter replication needs waits for a restart
// (wal_level = minimal before the migration), and the plan said so, and
// renews again after it so that the restarted primary has a whole lease
// ahead. Then
// the ordinary initialization rules register the data directory's system
// identifier. Fencing stays first for everything else: once the leader
// key exists, an adopted primary is a primary like any other.
func decideAdopt(v View, leader *dcs.LeaderKey, ownLease bool) (Decision, bool) {
	me := v.Self.Name
	if v.Adopt != me || v.DCS == nil || v.DCS.Initialize != "" || v.Self.Role != RolePrimary || v.Self.ShuttingDown {
		return Decision{}, false
	}
	switch {
	case leader == nil && v.LeaseDeadline == 0:
		return decide("adopting the running primary: taking the leader key", act(AcquireLeader)), true
	case leader != nil && leader.Name == me && ownLease && v.LeaseValid() && v.Self.RestartNeeded:
		return decide("adopted primary: restarting for the parameters replication needs",
			act(RenewLeader), act(RestartPostgres), act(RenewLeader)), true
	}
	return Decision{}, false
}
