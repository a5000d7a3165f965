package agent

import (
	"testing"

	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/pg"
)

// The chaos soak's case: node2, primary on timeline 3, was fenced
// (stopped immediately) with WAL up to 0/74133C8; node3 promoted at
// 0/74131A0 to timeline 4, but its member key still said timeline 3 when
// node2 restarted.
func TestDiverged(t *testing.T) {
	history := []dcs.HistoryEntry{{Timeline: 3, LSN: 0x7317CA8}, {Timeline: 4, LSN: 0x74131A0}}
	leader := func(tl uint32, h []dcs.HistoryEntry) *dcs.ClusterState {
		return &dcs.ClusterState{Leader: &dcs.LeaderKey{Name: "node3"}, History: h,
			Members: []dcs.Member{{Name: "node3", Role: "primary", Timeline: tl}}}
	}
	crashed := pg.Status{TimeLine: 3, ClusterState: "in production"}
	cleanBefore := pg.Status{TimeLine: 3, ClusterState: "shut down", CheckpointLSN: 0x7413000}
	cleanAfter := pg.Status{TimeLine: 3, ClusterState: "shut down", CheckpointLSN: 0x74133C8}
	a := &Agent{cfg: &Config{Name: "node2"}}
	for _, c := range []struct {
		name       string
		st         pg.Status
		cs         *dcs.ClusterState
		wasPrimary bool
		want       bool
	}{
		{"crashed former primary, leader published its new timeline", crashed, leader(4, history), true, true},
		{"crashed former primary, leader's member key still on the old timeline, history shows the promotion", crashed, leader(3, history), true, true},
		{"crashed former primary, neither key shows the promotion yet: unknown", crashed, leader(3, history[:1]), true, true},
		{"clean shutdown before the switch point: follows", cleanBefore, leader(4, history), true, false},
		{"clean shutdown past the switch point", cleanAfter, leader(4, history), true, true},
		{"clean shutdown, promotion not shown yet: unknown", cleanBefore, leader(3, history[:1]), true, true},
		{"never primary", crashed, leader(4, history), false, false},
		{"no leader", crashed, &dcs.ClusterState{History: history}, true, false},
	} {
		if got := a.diverged(c.st, c.cs, c.wasPrimary); got != c.want {
			t.Errorf("%s: diverged = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestReplicaDiverged(t *testing.T) {
	cs := &dcs.ClusterState{History: []dcs.HistoryEntry{{Timeline: 3, LSN: 0x7317CA8}, {Timeline: 4, LSN: 0x74131A0}}}
	for _, c := range []struct {
		name string
		st   pg.Status
		want bool
	}{
		{"replayed past the next timeline's switch point (the soak's node2)", pg.Status{TimeLine: 3, ReplayLSN: 0x74133C8}, true},
		{"at the switch point: follows", pg.Status{TimeLine: 3, ReplayLSN: 0x74131A0}, false},
		{"before it", pg.Status{TimeLine: 3, ReplayLSN: 0x7400000}, false},
		{"on the newest timeline", pg.Status{TimeLine: 4, ReplayLSN: 0x9000000}, false},
		{"nothing replayed yet", pg.Status{TimeLine: 3}, false},
	} {
		if got := replicaDiverged(c.st, cs); got != c.want {
			t.Errorf("%s: replicaDiverged = %v, want %v", c.name, got, c.want)
		}
	}
	if replicaDiverged(pg.Status{TimeLine: 3, ReplayLSN: 0x74133C8}, nil) {
		t.Error("diverged without a cluster state")
	}
}
