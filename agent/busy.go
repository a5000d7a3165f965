package agent

import (
	"context"
	"sync"
	"time"

	"github.com/pgherd/pgherd/agent/ha"
)

// keepBusy runs a long action (pg_basebackup, pg_rewind, initdb) that
// holds the loop for longer than a pass should, keeping what depends on
// the loop's passes alive meanwhile: every loop_wait it renews the member
// key with the action as its pending state (so the member does not vanish
// from the cluster, and the leader keeps its replication slot), and it
// refreshes the API snapshot (so /liveness answers 200 and /patroni shows
// the action). With renewLeader it also renews the leader lease (as
// renewingWhile does for a primary's start): only for initdb under the
// initialize claim, where no write can be accepted at all, and never past
// the lease's deadline.
//
// The loop is blocked in fn meanwhile, so keepBusy's goroutine is the only
// one using the member lease; it ends before keepBusy returns.
func (a *Agent) keepBusy(ctx context.Context, v ha.View, state string, renewLeader bool, fn func() error) error {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(a.loopWait())
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			a.heartbeat(ctx, v, state, renewLeader)
		}
	}()
	a.heartbeat(ctx, v, state, false)
	err := fn()
	close(stop)
	wg.Wait()
	return err
}

// heartbeat is one beat of keepBusy.
func (a *Agent) heartbeat(ctx context.Context, v ha.View, state string, renewLeader bool) {
	if renewLeader && a.leaderLease != nil && time.Now().Before(a.leaderLease.Deadline()) {
		rctx, cancel := a.untilFence(ctx)
		if _, err := a.leaderLease.Renew(rctx); err != nil {
			a.log.Warn(state+": renewing the leader lease", "err", err)
		}
		cancel()
	}
	if v.DCS != nil {
		m := a.member(v)
		m.Pending = state
		if err := a.publishMember(ctx, m); err != nil {
			a.log.Warn(state+": publishing this member", "err", err)
		}
	}
	s := *a.snapshot.Load()
	s.State = state
	s.LastLoop = time.Now()
	a.snapshot.Store(&s)
}
