package ha

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/pgherd/pgherd/agent/dcs"
)

// Decide returns what the loop must do given what it observed. It is pure.
// The rules, in the order they are applied (the first that matches wins):
//
//  1. Fencing: a primary without a valid lease (Now ≥ LeaseDeadline, or no
//     lease at all, including after a freeze) fences before anything else,
//     whatever the DCS read says; so does a leader past its deadline whose
//     PostgreSQL state is unknown.
//  2. Clean shutdown: stop, and hand the leader key over at once.
//  3. DCS unreachable: a primary keeps its writes only until its deadline;
//     replicas keep serving reads; nothing else happens.
//  4. Pause: no automatic action beyond keeping the leader key.
//  5. Initialization: race for the initialize key, bootstrap, clone; a
//     member of another system never joins.
//  6. Leader key is mine: renew, restart or promote, run switchovers,
//     maintain synchronous standbys.
//  7. Leader key is another's: fence if primary, else follow, rewind or
//     reinitialize.
//  8. No leader key: the best eligible candidate races for it, others wait.
func Decide(v View) Decision {
	d := decideRules(v)
	if switchoverInFlight(v) {
		// Leader and target take part in a switchover that is due: the
		// leader waits for the target's replay to reach what it wrote,
		// which the target publishes at each pass. At loop_wait the
		// write pause would grow by up to a loop_wait on each side.
		if w := v.Now + SwitchoverPoll; d.WakeAt == 0 || w < d.WakeAt {
			d.WakeAt = w
		}
	}
	if v.LeaseValid() && d.WakeAt == 0 {
		d.WakeAt = v.LeaseDeadline
	}
	return d
}

// SwitchoverPoll is how often the leader and the target of a switchover
// pass while it is carried out.
const SwitchoverPoll = 25 * time.Millisecond

// switchoverInFlight: a switchover is requested and due, and this member
// holds the leader key or is its target.
func switchoverInFlight(v View) bool {
	if v.DCS == nil || v.DCS.Switchover == nil {
		return false
	}
	sw := v.DCS.Switchover
	if !sw.ScheduledAt.IsZero() && v.WallClock.Before(sw.ScheduledAt) {
		return false
	}
	me := v.Self.Name
	leader := v.DCS.Leader
	return leader != nil && leader.Name == me || sw.To == me
}

func decideRules(v View) Decision {
	me := v.Self.Name
	var leader *dcs.LeaderKey
	if v.DCS != nil {
		leader = v.DCS.Leader
	}
	leaderIsMe := leader != nil && leader.Name == me
	ownLease := leaderIsMe && v.LeaseID != 0 && leader.Lease == v.LeaseID
	running := v.Self.Role == RolePrimary || v.Self.Role == RoleReplica

	// 0. Adoption of a running postmaster into a new cluster.
	if d, ok := decideAdopt(v, leader, ownLease); ok {
		return d
	}

	// 1. Fencing first. Only a renewal sent after a thaw can restore
	// leadership, so a stale DCS read saying "leader: me" does not help.
	// A leader whose PostgreSQL could not be observed (it runs but did not
	// answer in time) may be a primary accepting writes: past its
	// deadline it fences too.
	if (v.Self.Role == RolePrimary || v.Self.Role == RoleUnknown && v.LeaseDeadline > 0) && !v.LeaseValid() {
		why := "lease deadline passed"
		if v.LeaseDeadline == 0 {
			why = "primary holds no leader lease"
		}
		switch {
		case v.DCS == nil:
			return decide(why+" and DCS unreachable: fencing", act(Fence))
		case ownLease:
			return decide(why+": fencing; a renewal sent now may restore leadership", act(Fence), act(RenewLeader))
		case leaderIsMe:
			return decide(why+": fencing; taking over own leader key",
				act(Fence), Action{Kind: TakeOverLeader, Revision: leader.ModRevision})
		case leader != nil:
			return decide(why+" and "+leader.Name+" holds the leader key: fencing", act(Fence))
		default:
			return decide(why+" and no leader key: fencing", act(Fence))
		}
	}

	// 2. Clean shutdown: a primary stops first (no writes after the key
	// is gone), then releases at once so failover need not wait for ttl.
	if v.Self.ShuttingDown {
		holds := leaderIsMe || v.LeaseDeadline > 0
		switch {
		case v.Self.Role == RolePrimary:
			return decide("shutting down: stopping primary and handing over the leader key", act(StopPostgres), act(ReleaseLeader))
		case holds && running:
			return decide("shutting down: stopping and releasing the leader key", act(StopPostgres), act(ReleaseLeader))
		case holds:
			return decide("shutting down: releasing the leader key", act(ReleaseLeader))
		case running:
			return decide("shutting down", act(StopPostgres))
		default:
			return decide("shutting down")
		}
	}

	// 3. DCS unreachable.
	if v.DCS == nil {
		switch v.Self.Role {
		case RolePrimary: // lease valid, else fenced above
			return decide("DCS unreachable: serving writes until the lease deadline", act(RenewLeader))
		case RoleReplica:
			return decide("DCS unreachable: replica keeps serving reads")
		default:
			return decide("DCS unreachable: waiting")
		}
	}
	// 4. Pause: keep (or retake) the key of a running primary, nothing else.
	if v.Config.Paused {
		switch {
		case v.Self.Role == RolePrimary && ownLease:
			return decide("paused: keeping the leader key", act(RenewLeader))
		case v.Self.Role == RolePrimary && leader == nil:
			return decide("paused: retaking the leader key", act(AcquireLeader))
		default:
			return decide("paused: no automatic action")
		}
	}

	// 5. Initialization and identity.
	if d, ok := decideInit(v, leader, leaderIsMe); ok {
		return d
	}

	// 6. The leader key is mine.
	if leaderIsMe {
		return decideLeaderIsMe(v, ownLease)
	}

	// 7. Another member holds the leader key.
	if leader != nil {
		return decideFollower(v, leader.Name)
	}

	// 8. No leader key.
	return decideNoLeader(v)
}

func decideInit(v View, leader *dcs.LeaderKey, leaderIsMe bool) (Decision, bool) {
	me, init := v.Self.Name, v.DCS.Initialize
	switch {
	case init == "":
		if v.Self.DataDir {
			if leader == nil || leaderIsMe {
				return decide("no initialize key: registering this data directory's system identifier",
					Action{Kind: RaceInitialize, Value: v.Self.SystemID}), true
			}
			return decide("no initialize key: waiting for leader " + leader.Name + " to write it"), true
		}
		if v.Adopt != "" && v.Adopt != me {
			return decide("no initialize key: waiting for " + v.Adopt + "'s adopted primary to initialize the cluster"), true
		}
		// The leader key is taken before the new primary starts: a primary
		// never runs without a valid lease (rule 1 would fence it).
		return decide("cluster not initialized: racing to bootstrap it",
			Action{Kind: RaceInitialize, Value: InitializePending + me}, act(AcquireLeader), act(Bootstrap)), true
	case init == InitializePending+me && v.DCS.InitializeLease != 0 && v.DCS.InitializeLease != v.LeaseID:
		// A claim of an earlier run of this agent, on a lease nobody
		// renews any more: bootstrapping under it would let it expire
		// half-way and another member claim the cluster meanwhile.
		return decide("initialize claim of a previous run of this agent: waiting for its lease to expire"), true
	case init == InitializePending+me:
		lead := act(AcquireLeader)
		if leaderIsMe && v.LeaseValid() && v.LeaseID != 0 && leader.Lease == v.LeaseID {
			lead = act(RenewLeader)
		}
		switch {
		case !v.Self.DataDir:
			return decide("won the initialize race: bootstrapping", lead, act(Bootstrap)), true
		case v.Self.Role == RolePrimary && v.LeaseValid() && leaderIsMe:
			return decide("bootstrapped: storing the system identifier",
				act(RenewLeader), Action{Kind: SetInitialize, Value: v.Self.SystemID, Revision: v.DCS.InitializeRevision}), true
		case v.Self.Role == RolePrimary && leader == nil:
			return decide("bootstrapped: taking the leader key", act(AcquireLeader)), true
		case v.Self.Unstartable:
			return decide("bootstrapped, but the data directory is unusable: not starting it"), true
		case v.Self.Role == RoleStopped || v.Self.Role == RoleCrashed:
			return decide("bootstrapped: starting the new cluster", lead, Action{Kind: StartPostgres, Primary: true}), true
		}
		return Decision{}, false
	case strings.HasPrefix(init, InitializePending):
		return decide("waiting for " + strings.TrimPrefix(init, InitializePending) + " to bootstrap the cluster"), true
	case !v.Self.DataDir:
		if leader != nil && !leaderIsMe {
			if m, ok := v.DCS.Member(leader.Name); ok && m.Healthy && m.Role == string(RolePrimary) {
				return decide("empty data directory: cloning from leader "+leader.Name, actTo(CloneFromLeader, leader.Name)), true
			}
			return decide("empty data directory: waiting for leader " + leader.Name + " to be running"), true
		}
		return decide("empty data directory: waiting for a leader to clone from"), true
	case v.Self.SystemID != "" && v.Self.SystemID != init:
		why := fmt.Sprintf("system identifier %s differs from the cluster's %s: never joining", v.Self.SystemID, init)
		var acts []Action
		if v.Self.Role == RolePrimary || v.Self.Role == RoleReplica {
			acts = append(acts, act(StopPostgres))
		}
		if v.AllowReinitialize && leader != nil && !leaderIsMe {
			return decide(why+"; reinitializing from "+leader.Name, append(acts, actTo(Reinitialize, leader.Name))...), true
		}
		return decide(why, acts...), true
	}
	return Decision{}, false
}

func decideLeaderIsMe(v View, ownLease bool) Decision {
	st := v.DCS
	if !ownLease {
		return decide("leader key holds my name under a lease I cannot renew: taking it over",
			Action{Kind: TakeOverLeader, Revision: st.Leader.ModRevision})
	}
	if !v.LeaseValid() {
		return decide("leader lease deadline passed: renewing before acting as leader", act(RenewLeader))
	}
	switch v.Self.Role {
	case RoleReplica:
		return decide("holding the leader key: promoting", act(RenewLeader), act(Promote))
	case RoleStopped, RoleCrashed:
		if sw := st.Switchover; sw != nil && v.Self.Role == RoleStopped && v.Self.WasPrimary && (sw.From == "" || sw.From == v.Self.Name) {
			return decideSwitchoverHandover(v)
		}
		limit := time.Duration(v.Config.MasterStartTimeout) * time.Second
		switch {
		case v.Self.Unstartable:
			return decide("postgres cannot be started here: releasing the leader key for failover", act(ReleaseLeader))
		case v.Self.Role == RoleCrashed && limit == 0:
			return decide("primary crashed and master_start_timeout is 0: releasing the leader key for failover", act(ReleaseLeader))
		case v.Self.DownSince > 0 && v.Now-v.Self.DownSince > limit:
			return decide(fmt.Sprintf("postgres down for %s > master_start_timeout %s: releasing the leader key for failover", v.Now-v.Self.DownSince, limit), act(ReleaseLeader))
		}
		return decide("postgres down while holding the leader key: restarting as primary",
			act(RenewLeader), Action{Kind: StartPostgres, Primary: true})
	case RolePrimary:
		return decidePrimary(v)
	}
	return decide("postgres state unknown: keeping the leader key", act(RenewLeader))
}

// decidePrimary: a running primary holding the key with a valid lease.
func decidePrimary(v View) Decision {
	st, me := v.DCS, v.Self.Name
	acts := []Action{act(RenewLeader)}
	if sw := st.Switchover; sw != nil {
		clear := func(outcome string) Action {
			return Action{Kind: ClearSwitchover, Revision: st.SwitchoverRevision, Value: outcome}
		}
		switch {
		case sw.To == me:
			return decide("switchover to me done: clearing the request", append(acts, clear(""))...)
		case sw.From != "" && sw.From != me:
			why := sw.From + " is not the leader (" + me + " is)"
			return decide("switchover request from "+sw.From+", not the leader: clearing it", append(acts, clear(why))...)
		case !sw.ScheduledAt.IsZero() && v.WallClock.Before(sw.ScheduledAt):
			acts = append(acts, syncActions(v)...)
			return decide("switchover scheduled at "+sw.ScheduledAt.UTC().Format(time.RFC3339), acts...)
		}
		target, why := switchoverTarget(v)
		if target == "" && switchoverMayWait(v) {
			// A replica whose published position trails (it publishes
			// once per pass; a WAL switch jumps the primary 16 MB ahead)
			// may catch up: the request stands until switchover_timeout.
			if t, _ := switchoverTarget(withoutLagLimit(v)); t != "" {
				acts = append(acts, syncActions(v)...)
				return decide("switchover to "+t+": waiting for it to catch up ("+why+")", acts...)
			}
		}
		if target == "" {
			return decide("switchover cancelled: "+why, append(acts, clear(why))...)
		}
		return decide("switchover to "+target+": stopping writes", append(acts, actTo(Demote, target))...)
	}
	acts = append(acts, syncActions(v)...)
	return decide("leader: renewing the lease", acts...)
}

// switchoverMayWait: the switchover was requested (or scheduled) less than
// switchover_timeout ago.
func switchoverMayWait(v View) bool {
	sw := v.DCS.Switchover
	since := sw.RequestedAt
	if sw.ScheduledAt.After(since) {
		since = sw.ScheduledAt
	}
	return !since.IsZero() && v.WallClock.Sub(since) < switchoverTimeout(v)
}

// withoutLagLimit is v with no maximum_lag_on_failover.
func withoutLagLimit(v View) View {
	v.Config.MaximumLagOnFailover = math.MaxInt64
	return v
}

// switchoverTarget returns the requested target, or the best candidate,
// when it is a healthy, caught-up replica; else "" and why.
func switchoverTarget(v View) (string, string) {
	st, me := v.DCS, v.Self.Name
	to := st.Switchover.To
	if to == "" {
		best, ok := bestCandidate(v, me)
		if !ok {
			return "", "no eligible replica"
		}
		return best.Name, ""
	}
	m, ok := st.Member(to)
	if !ok {
		return "", "target " + to + " is not a running member"
	}
	if why := ineligible(v, m); why != "" {
		return "", "target " + to + " " + why
	}
	return to, ""
}

// decideSwitchoverHandover: the demoted primary still holds the key and
// waits for the target to replay everything it wrote, then hands over. A
// switchover that cannot complete within switchover_timeout of the
// demotion is aborted: the old primary resumes, and the request's outcome
// says why.
func decideSwitchoverHandover(v View) Decision {
	st := v.DCS
	abort := func(why string) Decision {
		clear := Action{Kind: ClearSwitchover, Revision: st.SwitchoverRevision, Value: why}
		if v.Self.Unstartable {
			return decide("switchover aborted ("+why+"), and this data directory cannot be started: releasing the leader key for failover",
				act(RenewLeader), clear, act(ReleaseLeader))
		}
		return decide("switchover aborted ("+why+"): resuming as primary", act(RenewLeader), clear, Action{Kind: StartPostgres, Primary: true})
	}
	// Writes have stopped: the target is waited for until it replays
	// everything (bounded by switchover_timeout), whatever its lag.
	target, why := switchoverTarget(withoutLagLimit(v))
	if target == "" {
		return abort(why)
	}
	m, _ := st.Member(target)
	if m.ReplayedLSN >= v.Self.WrittenLSN {
		return decide(fmt.Sprintf("switchover: %s replayed up to %X: handing over the leader key", target, v.Self.WrittenLSN), act(ReleaseLeader))
	}
	if limit := switchoverTimeout(v); switchoverOverdue(v) {
		return abort(fmt.Sprintf("%s did not replay up to %X within the switchover timeout %s (at %X)", target, v.Self.WrittenLSN, limit, m.ReplayedLSN))
	}
	return decide(fmt.Sprintf("switchover: waiting for %s to replay %X (at %X)", target, v.Self.WrittenLSN, m.ReplayedLSN), act(RenewLeader))
}

// switchoverTimeout is the dynamic configuration's switchover_timeout.
func switchoverTimeout(v View) time.Duration {
	s := v.Config.SwitchoverTimeout
	if s <= 0 {
		s = dcs.DefaultConfig().SwitchoverTimeout
	}
	return time.Duration(s) * time.Second
}

// switchoverOverdue: the old primary, stopped since its demotion, has
// waited longer than switchover_timeout.
func switchoverOverdue(v View) bool {
	return v.Self.DownSince > 0 && v.Now-v.Self.DownSince > switchoverTimeout(v)
}

func decideFollower(v View, leader string) Decision {
	st := v.DCS
	lm, alive := st.Member(leader)
	leaderUp := alive && lm.Healthy && lm.Role == string(RolePrimary)
	switch {
	case v.Self.Role == RolePrimary:
		return decide(leader+" holds the leader key: fencing this primary", act(Fence))
	case v.Self.Unstartable && v.Self.Role != RoleReplica:
		// What is there cannot be started (an interrupted pg_rewind or
		// clone): only a new copy of the leader's helps. Reinitializing
		// moves the directory aside, it never deletes it.
		if !leaderUp {
			return decide("data directory unusable: waiting for leader " + leader + " to be running to reinitialize from it")
		}
		return decide("data directory unusable: reinitializing from "+leader, actTo(Reinitialize, leader))
	case v.Self.Diverged:
		var acts []Action
		if v.Self.Role == RoleReplica {
			acts = append(acts, act(StopPostgres))
		}
		if !leaderUp {
			return decide("diverged from the leader's history: waiting for leader "+leader+" to be running", acts...)
		}
		if v.Self.CanRewind && v.Config.UsePgRewind {
			return decide("diverged from the leader's history: rewinding from "+leader, append(acts, actTo(Rewind, leader))...)
		}
		if v.AllowReinitialize {
			return decide("diverged and cannot rewind: reinitializing from "+leader, append(acts, actTo(Reinitialize, leader))...)
		}
		return decide("diverged, cannot rewind and reinitialize is not allowed: staying stopped", acts...)
	case v.Self.Role == RoleStopped || v.Self.Role == RoleCrashed:
		return decide("starting as a replica of "+leader, Action{Kind: StartPostgres, Target: leader})
	case v.Self.Role == RoleReplica && v.Self.Following != leader:
		return decide("following the new leader "+leader, actTo(FollowLeader, leader))
	case v.Self.Role == RoleReplica:
		return decide("replicating from " + leader)
	}
	return decide("postgres state unknown")
}

func decideNoLeader(v View) Decision {
	st, me := v.DCS, v.Self.Name
	if v.Self.Role == RolePrimary { // lease still valid: the key was removed under us
		return decide("no leader key while primary with a valid lease: retaking it", act(AcquireLeader))
	}
	if sw := st.Switchover; sw != nil && sw.From == me && v.Self.WasPrimary && switchoverOverdue(v) {
		// The old primary handed the key over and nobody took it: the
		// request goes, so that the failover rules apply again.
		why := fmt.Sprintf("%s did not take the leader key within the switchover timeout %s", sw.To, switchoverTimeout(v))
		if sw.To == "" {
			why = fmt.Sprintf("no member took the leader key within the switchover timeout %s", switchoverTimeout(v))
		}
		return decide("switchover aborted ("+why+"): cancelling it, failover rules apply",
			Action{Kind: ClearSwitchover, Revision: st.SwitchoverRevision, Value: why})
	}
	if sw := st.Switchover; sw != nil && sw.To != "" && sw.To != me {
		if m, ok := st.Member(sw.To); ok && ineligible(v, m) == "" {
			return decide("switchover to " + sw.To + " in progress: not racing")
		}
	}
	self := selfAsMember(v)
	switch v.Self.Role {
	case RoleReplica:
		if sw := st.Switchover; sw != nil && sw.To == me {
			if why := ineligible(v, self); why != "" {
				return decide("switchover target, but " + why)
			}
			return decide("switchover target: taking the leader key", act(AcquireLeader), act(Promote))
		}
		if v.Self.Diverged {
			// Its WAL left the cluster's history: promoting it would drop
			// the writes of the timeline it cannot follow.
			return decide("no leader: not a failover candidate: diverged from the cluster's history")
		}
		if why := ineligible(v, self); why != "" {
			return decide("no leader: not a failover candidate: " + why)
		}
		if best, ok := bestCandidate(v, ""); ok && best.Name != me {
			return decide("no leader: deferring to the better candidate " + best.Name)
		}
		return decide(fmt.Sprintf("no leader: most advanced eligible replica (%X): taking the leader key", lsn(self)),
			act(AcquireLeader), act(Promote))
	case RoleStopped, RoleCrashed:
		if !v.Self.DataDir {
			return decide("no leader and no data: waiting")
		}
		if v.Self.WasPrimary {
			if sw := st.Switchover; sw != nil && sw.From == me {
				return decide("handed over by switchover: waiting for the new leader")
			}
			if v.Self.Diverged || v.Self.Unstartable {
				return decide("former primary cannot resume (diverged or unstartable): waiting")
			}
			if n := len(st.History); n > 0 && st.History[n-1].Timeline > v.Self.Timeline {
				return decide(fmt.Sprintf("former primary on timeline %d, cluster reached %d: not resuming", v.Self.Timeline, st.History[n-1].Timeline))
			}
			if best, ok := bestCandidate(v, ""); ok {
				return decide("former primary down: deferring to the replica " + best.Name)
			}
			return decide("no leader and no eligible replica: former primary restarting as primary",
				act(AcquireLeader), Action{Kind: StartPostgres, Primary: true})
		}
		if v.Self.Unstartable {
			return decide("no leader, and the data directory is unusable: waiting for a leader to reinitialize from")
		}
		return decide("no leader: starting as a replica", Action{Kind: StartPostgres})
	}
	return decide("no leader: postgres state unknown")
}

func selfAsMember(v View) dcs.Member {
	s := v.Self
	return dcs.Member{Name: s.Name, Role: string(s.Role), Healthy: s.Healthy, Timeline: s.Timeline,
		ReceivedLSN: s.ReceivedLSN, ReplayedLSN: s.ReplayedLSN, Priority: s.Priority, NoFailover: s.NoFailover}
}

func lsn(m dcs.Member) uint64 { return max(m.ReceivedLSN, m.ReplayedLSN) }

// ineligible says why m cannot become leader by failover ("" if it can).
func ineligible(v View, m dcs.Member) string {
	st := v.DCS
	switch {
	case m.Role != string(RoleReplica):
		return "not a running replica (" + m.Role + ")"
	case !m.Healthy:
		return "not healthy"
	case m.NoFailover:
		return "nofailover is set"
	}
	if st.Status != nil && st.Status.LastLSN > lsn(m) && st.Status.LastLSN-lsn(m) > v.Config.MaximumLagOnFailover {
		return fmt.Sprintf("lag %d bytes > maximum_lag_on_failover %d", st.Status.LastLSN-lsn(m), v.Config.MaximumLagOnFailover)
	}
	if v.Config.SynchronousMode == dcs.SyncOn || v.Config.SynchronousMode == dcs.SyncStrict {
		if st.Sync == nil || !slices.Contains(st.Sync.Standbys, m.Name) {
			return "not a synchronous standby"
		}
		if q := st.Sync.Quorum; q > 0 {
			// ANY q of n: an acknowledged commit is on q of the n, so
			// n−q+1 of them must be visible for the most advanced to
			// hold every acknowledged commit.
			need := len(st.Sync.Standbys) - q + 1
			seen := 0
			for _, n := range st.Sync.Standbys {
				if n == v.Self.Name || hasMember(st, n) {
					seen++
				}
			}
			if seen < need {
				return fmt.Sprintf("only %d of the %d synchronous standbys needed for quorum are visible", seen, need)
			}
		}
	}
	return ""
}

func hasMember(st *dcs.ClusterState, name string) bool { _, ok := st.Member(name); return ok }

// bestCandidate is the eligible replica that should win a failover: the
// most advanced (received or replayed LSN), then the highest priority,
// then the smallest name. Self is included (with its fresh local state)
// unless exclude names it.
func bestCandidate(v View, exclude string) (dcs.Member, bool) {
	var cands []dcs.Member
	for _, m := range v.DCS.Members {
		if m.Name == v.Self.Name || m.Name == exclude {
			continue
		}
		cands = append(cands, m)
	}
	if v.Self.Name != exclude {
		cands = append(cands, selfAsMember(v))
	}
	var best dcs.Member
	found := false
	for _, m := range cands {
		if ineligible(v, m) != "" {
			continue
		}
		if !found || better(m, best) {
			best, found = m, true
		}
	}
	return best, found
}

func better(a, b dcs.Member) bool {
	if lsn(a) != lsn(b) {
		return lsn(a) > lsn(b)
	}
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Name < b.Name
}
