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
// the action). With renewLeader it also renews the leader lease: only
// while no write can be accepted yet (initdb; a primary's start, which
// returns within pg_ctl's 0.1 s poll of the server accepting
// connections), since the fencing invariant needs the loop that fences to
// be free by the deadline once writes are possible.
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
	if renewLeader && a.leaderLease != nil {
		if _, err := a.leaderLease.Renew(ctx); err != nil {
			a.log.Warn(state+": renewing the leader lease", "err", err)
		}
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
