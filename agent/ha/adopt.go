package ha

import "github.com/pgherd/pgherd/agent/dcs"

// decideAdopt is rule 0, the adoption of a running postmaster (a
// migration). Until the adopting member has registered the data
// directory's system identifier (View.AdoptRegistered), no other member
// can lead or even clone: they wait for the initialize key, and none
// bootstraps. Fencing then protects nothing and would only stop the
// production database pgherd was asked to take over, so the adopting
// member never fences its primary before registration: with etcd
// unreachable (its other members not started yet, say) the primary runs
// on as before the migration; otherwise the member takes the leader key
// (or its own key back, after an agent restart, or renews a lapsed
// lease), restarts the server only when a parameter replication needs
// waits for a restart (wal_level = minimal before the migration), and the
// plan said so, renewing again after it so that the restarted primary has
// a whole lease ahead. Then the ordinary initialization rules register
// the system identifier. From registration on, an adopted primary is a
// primary like any other: fencing comes first.
func decideAdopt(v View, leader *dcs.LeaderKey, ownLease bool) (Decision, bool) {
	me := v.Self.Name
	if v.Adopt != me || v.AdoptRegistered || v.Self.Role != RolePrimary || v.Self.ShuttingDown {
		return Decision{}, false
	}
	if v.DCS == nil {
		return decide("DCS unreachable before the adopted primary is registered: it runs on as before the migration (no other member can lead yet)"), true
	}
	if v.DCS.Initialize != "" {
		return Decision{}, false
	}
	switch {
	case leader == nil:
		return decide("adopting the running primary: taking the leader key", act(AcquireLeader)), true
	case leader.Name == me && !ownLease:
		return decide("adopting the running primary: taking over the leader key of a previous run of this agent",
			Action{Kind: TakeOverLeader, Revision: leader.ModRevision}), true
	case leader.Name == me && !v.LeaseValid():
		return decide("adopting the running primary: renewing a lapsed lease", act(RenewLeader)), true
	case leader.Name == me && v.Self.RestartNeeded:
		return decide("adopted primary: restarting for the parameters replication needs",
			act(RenewLeader), act(RestartPostgres), act(RenewLeader)), true
	}
	return Decision{}, false
}
