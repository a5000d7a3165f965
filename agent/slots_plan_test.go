package agent

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/pg"
)

func TestPlanSlotSync(t *testing.T) {
	slot := func(name, plugin string, lsn uint64, active bool) pg.LogicalSlot {
		return pg.LogicalSlot{Name: name, Plugin: plugin, Database: "app", ConfirmedFlushLSN: pg.LSN(lsn), Active: active}
	}
	leader := func(plugin string, lsn uint64) dcs.LogicalSlot {
		return dcs.LogicalSlot{Plugin: plugin, Database: "app", ConfirmedFlush: lsn}
	}
	tests := []struct {
		name string
		have []pg.LogicalSlot
		want map[string]dcs.LogicalSlot
		plan string
	}{
		{name: "nothing anywhere", plan: "drop [] advance [] copy []"},
		{
			name: "new slots on the leader are copied, in name order",
			want: map[string]dcs.LogicalSlot{"b": leader("pgoutput", 10), "a": leader("test_decoding", 10)},
			plan: "drop [] advance [] copy [a b]",
		},
		{
			name: "a copy behind is advanced, one level is left alone",
			have: []pg.LogicalSlot{slot("a", "pgoutput", 5, false), slot("b", "pgoutput", 10, false)},
			want: map[string]dcs.LogicalSlot{"a": leader("pgoutput", 10), "b": leader("pgoutput", 10)},
			plan: "drop [] advance [a] copy []",
		},
		{
			name: "a copy ahead of the leader (a former primary's own slot) is dropped and copied again",
			have: []pg.LogicalSlot{slot("a", "pgoutput", 20, false)},
			want: map[string]dcs.LogicalSlot{"a": leader("pgoutput", 10)},
			plan: "drop [a: it is ahead of the leader's (0/A)] advance [] copy [a]",
		},
		{
			name: "another plugin under the same name is replaced",
			have: []pg.LogicalSlot{slot("a", "wal2json", 10, false)},
			want: map[string]dcs.LogicalSlot{"a": leader("pgoutput", 10)},
			plan: "drop [a: the leader's slot of this name is another one] advance [] copy [a]",
		},
		{
			name: "a copy the leader no longer has is dropped",
			have: []pg.LogicalSlot{slot("gone", "pgoutput", 10, false)},
			want: map[string]dcs.LogicalSlot{},
			plan: "drop [gone: the leader no longer has it] advance [] copy []",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := planSlotSync(tc.have, tc.want)
			var drops, adv []string
			for _, d := range p.drop {
				drops = append(drops, d.slot.Name+": "+d.why)
			}
			for _, a := range p.advance {
				adv = append(adv, a.Name)
			}
			got := fmt.Sprintf("drop %v advance %v copy %v", drops, adv, p.copy)
			if diff := cmp.Diff(tc.plan, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}
