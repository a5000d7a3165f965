package agent

import (
	"context"
	"slices"
	"time"

	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/ha"
	"github.com/pgherd/pgherd/agent/pg"
)

// slotCopyRetry is how long a replica waits before it tries again to copy
// logical slots from the leader after a failed attempt (each attempt
// restarts the replica).
const slotCopyRetry = time.Minute

// syncLogicalSlots keeps this replica's copies of the leader's logical
// slots (published in the status key every pass) so that they survive a
// failover: change-data-capture consumers then resume on the new primary
// with duplicates at worst, never a gap. See docs/ha.md, "Logical
// replication slots".
//
//   - A slot the leader has and this replica lacks is copied: PostgreSQL
//     15 cannot create a logical slot on a standby, so the slot's state
//     file is read from the leader (pg_read_binary_file), the replica is
//     stopped, the file installed in pg_replslot, and the replica started
//     again. The copy holds the slot's catalog_xmin, which
//     hot_standby_feedback carries to this replica's physical slot on the
//     leader, so the leader keeps the catalog rows the copy may decode.
//   - A copy behind the leader's confirmed position is advanced to it
//     (pg_replication_slot_advance, clamped to what was replayed), never
//     beyond: a consumer has confirmed at least that much on the leader.
//   - A copy ahead of the leader's slot (this member's own slot from when
//     it was primary) or of another plugin or database is dropped and
//     copied again; a copy whose slot the leader no longer has is dropped.
func (a *Agent) syncLogicalSlots(ctx context.Context, v ha.View) {
	st := v.DCS.Status
	if st == nil || st.Slots == nil {
		return // a leader that does not publish its slots: leave ours alone
	}
	// This replica's slots as observed at the start of the pass.
	plan := planSlotSync(a.lastStatus.LogicalSlots, st.Slots)
	for _, d := range plan.drop {
		a.dropSlotCopy(ctx, d.slot, d.why)
	}
	for _, h := range plan.advance {
		want := pg.LSN(st.Slots[h.Name].ConfirmedFlush)
		to, err := a.pg.AdvanceSlot(ctx, h.Database, h.Name, want)
		if err != nil {
			a.log.Warn("logical slots: advancing a copy", "slot", h.Name, "err", err)
			continue
		}
		a.log.Debug("logical slot copy advanced", "slot", h.Name, "to", to, "leader", want)
	}
	if len(plan.copy) == 0 || time.Since(a.slotCopyFailed) < slotCopyRetry {
		return
	}
	if err := a.copyLogicalSlots(ctx, v, plan.copy); err != nil {
		a.slotCopyFailed = time.Now()
		a.log.Warn("logical slots: copying from the leader", "slots", plan.copy, "err", err)
	}
}

// slotSync is what a replica does to its logical slot copies.
type slotSync struct {
	drop    []slotDrop
	advance []pg.LogicalSlot
	copy    []string // sorted
}

type slotDrop struct {
	slot pg.LogicalSlot
	why  string
}

// planSlotSync compares a replica's logical slots with the leader's.
func planSlotSync(have []pg.LogicalSlot, want map[string]dcs.LogicalSlot) slotSync {
	var p slotSync
	for _, h := range have {
		w, ok := want[h.Name]
		switch {
		case !ok:
			p.drop = append(p.drop, slotDrop{h, "the leader no longer has it"})
		case w.Plugin != h.Plugin || w.Database != h.Database:
			p.drop = append(p.drop, slotDrop{h, "the leader's slot of this name is another one"})
			p.copy = append(p.copy, h.Name)
		case uint64(h.ConfirmedFlushLSN) > w.ConfirmedFlush:
			p.drop = append(p.drop, slotDrop{h, "it is ahead of the leader's (" + pg.LSN(w.ConfirmedFlush).String() + ")"})
			p.copy = append(p.copy, h.Name)
		case uint64(h.ConfirmedFlushLSN) < w.ConfirmedFlush:
			p.advance = append(p.advance, h)
		}
	}
	for name := range want {
		if !slices.ContainsFunc(have, func(h pg.LogicalSlot) bool { return h.Name == name }) {
			p.copy = append(p.copy, name)
		}
	}
	slices.Sort(p.copy)
	return p
}

func (a *Agent) dropSlotCopy(ctx context.Context, h pg.LogicalSlot, why string) {
	if h.Active {
		a.log.Warn("logical slot copy in use on a replica: not dropped", "slot", h.Name, "why", why)
		return
	}
	if err := a.pg.DropSlot(ctx, h.Name); err != nil {
		a.log.Warn("logical slots: dropping a copy", "slot", h.Name, "err", err)
		return
	}
	a.log.Info("logical slot copy dropped", "slot", h.Name, "why", why)
}

// copyLogicalSlots reads the named slots' state files from the leader and
// installs them here, restarting this replica once for all of them.
func (a *Agent) copyLogicalSlots(ctx context.Context, v ha.View, names []string) error {
	params := a.parameters()
	if params["wal_level"] != "logical" || params["hot_standby_feedback"] != "on" {
		// Without wal_level = logical this replica would refuse to start
		// with a logical slot; without hot_standby_feedback the leader
		// could remove catalog rows the copy needs.
		a.log.Warn("logical slots: not copied: the replicas need wal_level = logical and hot_standby_feedback = on",
			"slots", names, "wal_level", params["wal_level"], "hot_standby_feedback", params["hot_standby_feedback"])
		a.slotCopyFailed = time.Now()
		return nil
	}
	src := a.connInfo(v, v.DCS.Leader.Name)
	src.User, src.Password = a.cfg.Postgres.Superuser.User, a.cfg.Postgres.Superuser.Password
	states := map[string][]byte{}
	for _, n := range names {
		b, err := pg.ReadSlotState(ctx, src, n)
		if err != nil {
			return err
		}
		states[n] = b
	}
	a.log.Info("logical slots: restarting this replica to install copies of the leader's slots", "slots", names)
	if err := a.pg.Stop(ctx, pg.Fast); err != nil {
		return err
	}
	var installErr error
	for _, n := range names {
		if err := a.pg.InstallSlotState(n, states[n]); err != nil {
			installErr = err
			break
		}
	}
	if err := a.pg.Start(ctx); err != nil {
		return err
	}
	return installErr
}
