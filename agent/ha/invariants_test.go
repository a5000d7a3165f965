package ha

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pgherd/pgherd/agent/dcs"
)

// TestDecideInvariants checks, over many generated views, the safety rules
// that must hold whatever the case: a primary without a valid lease fences
// first, except an adopted primary before its registration, which is never
// fenced (no other member can have led); nothing becomes primary without
// the leader key; nothing is decided on an unreachable DCS but fencing and
// renewing.
func TestDecideInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ra := rand.New(rand.NewPCG(3, 4))
	roles := []Role{RolePrimary, RoleReplica, RoleStopped, RoleCrashed, RoleUnknown}
	names := []string{"", "a", "b", "c"}
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	for i := range 20000 {
		v := View{Now: time.Duration(r.IntN(200)) * time.Second, Config: dcs.DefaultConfig()}
		v.Self = Self{Name: "a", Role: roles[r.IntN(len(roles))], Healthy: r.IntN(2) == 0,
			ReceivedLSN: uint64(r.IntN(5)), ReplayedLSN: uint64(r.IntN(5)), WrittenLSN: uint64(r.IntN(5)),
			DataDir: r.IntN(5) > 0, SystemID: "7000", WasPrimary: r.IntN(2) == 0, Diverged: r.IntN(3) == 0,
			CanRewind: r.IntN(2) == 0, Unstartable: r.IntN(5) == 0, ShuttingDown: r.IntN(8) == 0,
			NoFailover: r.IntN(5) == 0, Priority: r.IntN(2)}
		if r.IntN(2) == 0 {
			v.LeaseID = 1
			v.LeaseDeadline = time.Duration(r.IntN(200)) * time.Second
		}
		// Adoption draws from its own source, leaving the other cases as
		// they were.
		if ra.IntN(4) == 0 {
			v.Adopt, v.AdoptRegistered = names[1+ra.IntN(3)], ra.IntN(2) == 0
		}
		v.Config.Paused = r.IntN(6) == 0
		v.Config.SynchronousMode = []dcs.SyncMode{dcs.SyncOff, dcs.SyncOn, dcs.SyncStrict}[r.IntN(3)]
		if r.IntN(5) > 0 {
			st := &dcs.ClusterState{Config: v.Config, Initialize: []string{"7000", "7000", "7000", "", "pending:a", "6000"}[r.IntN(6)]}
			if l := pick(names); l != "" {
				st.Leader = &dcs.LeaderKey{Name: l, Lease: int64(r.IntN(2) + 1), ModRevision: 5}
			}
			for _, n := range []string{"b", "c"} {
				if r.IntN(2) == 0 {
					st.Members = append(st.Members, dcs.Member{Name: n, Role: string(roles[r.IntN(len(roles))]),
						Healthy: r.IntN(2) == 0, ReplayedLSN: uint64(r.IntN(5))})
				}
			}
			if r.IntN(3) == 0 {
				st.Sync = &dcs.Sync{Leader: pick(names), Standbys: []string{pick(names[1:])}, Quorum: r.IntN(2)}
			}
			if r.IntN(4) == 0 {
				st.Switchover = &dcs.Switchover{From: pick(names), To: pick(names)}
			}
			v.DCS = st
		}

		d := Decide(v)
		kinds := make([]Kind, len(d.Actions))
		for j, a := range d.Actions {
			kinds[j] = a.Kind
		}
		fail := func(msg string) {
			t.Fatalf("case %d: %s\nview: %+v\ndcs: %+v\ndecision: %s", i, msg, v, v.DCS, d)
		}
		adoptPending := v.Adopt == "a" && !v.AdoptRegistered && v.Self.Role == RolePrimary && !v.Self.ShuttingDown &&
			(v.DCS == nil || v.DCS.Initialize == "" && (v.DCS.Leader == nil || v.DCS.Leader.Name == "a"))
		if v.Self.Role == RolePrimary && !v.LeaseValid() && !adoptPending && (len(kinds) == 0 || kinds[0] != Fence) {
			fail("primary without a valid lease did not fence first")
		}
		if adoptPending && (slices.Contains(kinds, Fence) || slices.Contains(kinds, StopPostgres) || slices.Contains(kinds, Demote)) {
			fail("stopped an adopted primary before its registration")
		}
		if v.Self.Role == RoleUnknown && v.LeaseDeadline > 0 && !v.LeaseValid() && (len(kinds) == 0 || kinds[0] != Fence) {
			fail("leader past its deadline with postgres in an unknown state did not fence first")
		}
		becomesPrimary := -1
		for j, a := range d.Actions {
			if a.Kind == Promote || (a.Kind == StartPostgres && a.Primary) {
				becomesPrimary = j
				break
			}
		}
		if becomesPrimary >= 0 {
			acquired := slices.Contains(kinds[:becomesPrimary], AcquireLeader)
			ownValid := v.DCS != nil && v.DCS.Leader != nil && v.DCS.Leader.Name == "a" && v.DCS.Leader.Lease == v.LeaseID && v.LeaseValid()
			bootstrapping := v.DCS != nil && v.DCS.Initialize == InitializePending+"a"
			if !acquired && !ownValid && !bootstrapping {
				fail("becomes primary without the leader key")
			}
		}
		if v.DCS == nil {
			for _, k := range kinds {
				if k != Fence && k != RenewLeader && k != StopPostgres && k != ReleaseLeader {
					fail("acted on an unreachable DCS")
				}
			}
		}
		if v.Self.Role == RolePrimary {
			if j := slices.Index(kinds, ReleaseLeader); j >= 0 && !slices.Contains(kinds[:j], StopPostgres) && !slices.Contains(kinds[:j], Fence) {
				fail("released the leader key while still primary")
			}
		}
		if v.Self.Unstartable && v.Self.DataDir && v.Self.Role != RolePrimary && v.Self.Role != RoleReplica {
			for _, k := range kinds {
				if k == StartPostgres || k == AcquireLeader || k == Promote || k == Bootstrap {
					fail("started or led from an unusable data directory")
				}
			}
		}
		if d.Reason == "" {
			fail("empty reason")
		}
	}
}
