package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgherd/pgherd/agent/api"
	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/ha"
	"github.com/pgherd/pgherd/agent/pg"
)

// controller carries out the API's write verbs. Switchover and failover
// are requests in the DCS that every member's loop acts on; the others act
// on the local PostgreSQL between two passes of the loop.
type controller struct{ a *Agent }

func (c *controller) Switchover(ctx context.Context, leader, candidate string, at time.Time) error {
	return c.request(ctx, dcs.Switchover{From: leader, To: candidate, ScheduledAt: at}, leader)
}

func (c *controller) Failover(ctx context.Context, candidate string) error {
	return c.request(ctx, dcs.Switchover{To: candidate}, "")
}

// request writes the switchover key and, unless it is scheduled for
// later, waits until a member other than from leads a running primary, or
// until the request's outcome says it was cancelled or aborted, and why.
// The leader aborts a switchover that does not complete within
// switchover_timeout, so the wait is bounded even when ctx allows more.
func (c *controller) request(ctx context.Context, sw dcs.Switchover, from string) error {
	a := c.a
	st, err := a.dcs.Read(ctx)
	if err != nil {
		return err
	}
	if st.Switchover != nil {
		return fmt.Errorf("a switchover is already pending: %w", api.ErrConflict)
	}
	sw.RequestedAt = time.Now().UTC()
	rev, err := a.dcs.SetSwitchover(ctx, sw, 0)
	if err != nil {
		if errors.Is(err, dcs.ErrConflict) {
			return fmt.Errorf("a switchover is already pending: %w", api.ErrConflict)
		}
		return err
	}
	a.poke()
	if !sw.ScheduledAt.IsZero() && sw.ScheduledAt.After(time.Now()) {
		return nil
	}
	if from == "" && st.Leader != nil {
		from = st.Leader.Name
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	aborted := ""
	for {
		select {
		case <-ctx.Done():
			if aborted != "" {
				return fmt.Errorf("switchover aborted: %s; %s is not running as primary yet: %w", aborted, from, ctx.Err())
			}
			return fmt.Errorf("switchover requested but not finished in time: %w", ctx.Err())
		case <-tick.C:
		}
		st, err := a.dcs.Read(ctx)
		if err != nil {
			continue
		}
		if st.Switchover != nil {
			continue
		}
		if r := st.SwitchoverResult; r != nil && r.Revision == rev && r.Aborted {
			if aborted == "" {
				aborted = r.Reason
			}
			// Cancelled after the handover, while the target was taking
			// the key after all: it is done.
			if st.Leader != nil && st.Leader.Name != from && (sw.To == "" || st.Leader.Name == sw.To) {
				if m, ok := st.Member(st.Leader.Name); ok && m.Role == string(ha.RolePrimary) && m.Healthy {
					return nil
				}
			}
			// The caller learns of the abort once the old primary takes
			// writes again (or when ctx ends, saying so).
			if m, ok := st.Member(from); from == "" || ok && st.Leader != nil && st.Leader.Name == from && m.Role == string(ha.RolePrimary) && m.Healthy {
				return fmt.Errorf("switchover aborted: %s: %w", aborted, api.ErrNotPossible)
			}
			continue
		}
		if st.Leader != nil && st.Leader.Name != from {
			if m, ok := st.Member(st.Leader.Name); ok && m.Role == string(ha.RolePrimary) && m.Healthy {
				if sw.To != "" && st.Leader.Name != sw.To {
					return fmt.Errorf("%s became leader instead of %s: %w", st.Leader.Name, sw.To, api.ErrConflict)
				}
				return nil
			}
		}
		if r := st.SwitchoverResult; (r == nil || r.Revision != rev) && st.Leader != nil && st.Leader.Name == from {
			// Cleared without an outcome: an agent of an earlier version.
			if m, ok := st.Member(from); ok && m.Role == string(ha.RolePrimary) {
				return fmt.Errorf("the leader cancelled the switchover (see its log): %w", api.ErrNotPossible)
			}
		}
	}
}

// Restart restarts PostgreSQL between two passes of the loop. On the
// leader, the server takes no write from the stop until the start ends,
// and the next pass fences it if the lease's deadline passed meanwhile.
func (c *controller) Restart(ctx context.Context) error {
	a := c.a
	a.actMu.Lock()
	defer a.actMu.Unlock()
	return a.pg.Restart(ctx)
}

func (c *controller) Reload(ctx context.Context) error {
	a := c.a
	a.actMu.Lock()
	defer a.actMu.Unlock()
	return a.pg.Reload(ctx)
}

func (c *controller) Pause(ctx context.Context, paused bool) error {
	a := c.a
	for range 5 {
		st, err := a.dcs.Read(ctx)
		if err != nil {
			return err
		}
		cfg := st.Config
		cfg.Paused = paused
		err = a.dcs.SetConfig(ctx, cfg, st.ConfigRevision)
		if !errors.Is(err, dcs.ErrConflict) {
			a.poke()
			return err
		}
	}
	return fmt.Errorf("the configuration kept changing: %w", api.ErrConflict)
}

func (c *controller) Reinitialize(ctx context.Context) error {
	a := c.a
	a.actMu.Lock()
	defer a.actMu.Unlock()
	// A full view, as a pass takes it: the clone publishes this member
	// from it while it runs (keepBusy).
	v := a.observe(ctx)
	st := v.DCS
	if st == nil {
		return errors.New("the DCS is unreachable")
	}
	if st.Leader == nil || st.Leader.Name == a.cfg.Name {
		return fmt.Errorf("only a replica of a running leader can be reinitialized: %w", api.ErrNotPossible)
	}
	if err := a.pg.Stop(ctx, pg.Fast); err != nil {
		return err
	}
	return a.do(ctx, v, ha.Action{Kind: ha.Reinitialize, Target: st.Leader.Name})
}
