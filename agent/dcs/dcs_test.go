package dcs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pgherd/pgherd/agent/dcs/etcdtest"
)

func newClient(t *testing.T, endpoints []string, cluster string) *Client {
	t.Helper()
	c, err := New(context.Background(), Options{
		Endpoints:      endpoints,
		Cluster:        cluster,
		DialTimeout:    time.Second,
		RequestTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func grant(t *testing.T, c *Client, ttl time.Duration) *Lease {
	t.Helper()
	l, err := c.GrantLease(context.Background(), ttl, ttl/4)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func read(t *testing.T, c *Client) *ClusterState {
	t.Helper()
	s, err := c.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSingleMember runs the DCS operations against one real etcd member;
// each subtest uses its own cluster prefix.
func TestSingleMember(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	eps := etcd.Endpoints()
	ctx := context.Background()

	t.Run("acquire race has exactly one winner", func(t *testing.T) {
		for round := range 10 {
			cluster := fmt.Sprintf("race%d", round)
			names := []string{"a", "b", "c"}
			var wg sync.WaitGroup
			errs := make([]error, len(names))
			holders := make([]*LeaderKey, len(names))
			clients := make([]*Client, len(names))
			leases := make([]*Lease, len(names))
			for i := range names {
				clients[i] = newClient(t, eps, cluster)
				leases[i] = grant(t, clients[i], 10*time.Second)
			}
			start := make(chan struct{})
			for i, n := range names {
				wg.Go(func() {
					<-start
					holders[i], errs[i] = clients[i].AcquireLeader(ctx, n, leases[i])
				})
			}
			close(start)
			wg.Wait()
			winners := 0
			winner := ""
			for i, err := range errs {
				switch {
				case err == nil:
					winners++
					winner = names[i]
				case errors.Is(err, ErrLeaderExists):
				default:
					t.Fatalf("%s: unexpected error %v", names[i], err)
				}
			}
			if winners != 1 {
				t.Fatalf("round %d: %d winners, want 1 (%v)", round, winners, errs)
			}
			for i, err := range errs {
				if err != nil && (holders[i] == nil || holders[i].Name != winner) {
					t.Errorf("loser %s sees holder %+v, want %s", names[i], holders[i], winner)
				}
			}
			if s := read(t, clients[0]); s.Leader == nil || s.Leader.Name != winner {
				t.Errorf("read leader %+v, want %s", s.Leader, winner)
			}
		}
	})

	t.Run("lease expiry removes leader and member keys", func(t *testing.T) {
		c := newClient(t, eps, "expiry")
		ttl := 2 * time.Second
		l := grant(t, c, ttl)
		ml := grant(t, c, ttl)
		if _, err := c.AcquireLeader(ctx, "a", l); err != nil {
			t.Fatal(err)
		}
		if err := c.RegisterMember(ctx, Member{Name: "a", Role: "primary", Healthy: true}, ml); err != nil {
			t.Fatal(err)
		}
		s := read(t, c)
		if s.Leader == nil || s.Leader.Lease != l.ID() || len(s.Members) != 1 {
			t.Fatalf("before expiry: leader %+v members %+v", s.Leader, s.Members)
		}
		start := time.Now()
		for {
			s = read(t, c)
			if s.Leader == nil && len(s.Members) == 0 {
				break
			}
			// Generous slack: etcd checks expiry periodically.
			if time.Since(start) > ttl+8*time.Second {
				t.Fatalf("keys still present %s after ttl %s", time.Since(start), ttl)
			}
			time.Sleep(100 * time.Millisecond)
		}
		before := l.Deadline()
		d, err := l.Renew(ctx)
		if !errors.Is(err, ErrLeaseExpired) {
			t.Fatalf("renew of expired lease: %v, want ErrLeaseExpired", err)
		}
		if !d.Equal(before) {
			t.Errorf("failed renew moved the deadline from %v to %v", before, d)
		}
	})

	t.Run("renew deadline is t_send plus ttl minus margin", func(t *testing.T) {
		c := newClient(t, eps, "renew")
		ttl, margin := 5*time.Second, 1500*time.Millisecond
		l, err := c.GrantLease(ctx, ttl, margin)
		if err != nil {
			t.Fatal(err)
		}
		// Real clock: the deadline is bracketed by the call.
		before := time.Now()
		d, err := l.Renew(ctx)
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if d.Before(before.Add(ttl-margin)) || d.After(after.Add(ttl-margin)) {
			t.Errorf("deadline %v not within [%v, %v]", d, before.Add(ttl-margin), after.Add(ttl-margin))
		}
		// Injected clock: exactly t_send + ttl − margin.
		tSend := time.Now().Add(time.Minute)
		l.now = func() time.Time { return tSend }
		d, err = l.Renew(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := tSend.Add(ttl - margin); !d.Equal(want) || !l.Deadline().Equal(want) {
			t.Errorf("deadline %v, want %v", d, want)
		}
		// A deadline never moves backwards (an older t_send).
		l.now = func() time.Time { return tSend.Add(-time.Second) }
		if d2, err := l.Renew(ctx); err != nil || !d2.Equal(d) {
			t.Errorf("renew with an earlier t_send: %v %v, want %v", d2, err, d)
		}
	})

	t.Run("lease arguments are validated", func(t *testing.T) {
		c := newClient(t, eps, "args")
		for _, tc := range []struct{ ttl, margin time.Duration }{
			{500 * time.Millisecond, 0}, {1500 * time.Millisecond, 0}, {2 * time.Second, 2 * time.Second}, {2 * time.Second, -1},
		} {
			if _, err := c.GrantLease(ctx, tc.ttl, tc.margin); err == nil {
				t.Errorf("GrantLease(%s, %s) accepted", tc.ttl, tc.margin)
			}
		}
	})

	t.Run("release deletes own key and revokes", func(t *testing.T) {
		c := newClient(t, eps, "release")
		l := grant(t, c, 10*time.Second)
		if _, err := c.AcquireLeader(ctx, "a", l); err != nil {
			t.Fatal(err)
		}
		// Someone else releasing does not touch our key.
		other := grant(t, c, 10*time.Second)
		if err := c.ReleaseLeader(ctx, "b", other); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("release by non-holder: %v, want ErrNotLeader", err)
		}
		if s := read(t, c); s.Leader == nil || s.Leader.Name != "a" {
			t.Fatalf("leader after foreign release: %+v", s.Leader)
		}
		if err := c.ReleaseLeader(ctx, "a", l); err != nil {
			t.Fatal(err)
		}
		if s := read(t, c); s.Leader != nil {
			t.Fatalf("leader after release: %+v", s.Leader)
		}
		if _, err := l.Renew(ctx); !errors.Is(err, ErrLeaseExpired) {
			t.Errorf("renew after release: %v, want ErrLeaseExpired", err)
		}
		// The key is free for the next leader at once.
		l2 := grant(t, c, 10*time.Second)
		if _, err := c.AcquireLeader(ctx, "b", l2); err != nil {
			t.Errorf("acquire after release: %v", err)
		}
	})

	t.Run("take over own key after restart", func(t *testing.T) {
		old := newClient(t, eps, "takeover")
		oldLease := grant(t, old, 30*time.Second)
		if _, err := old.AcquireLeader(ctx, "a", oldLease); err != nil {
			t.Fatal(err)
		}
		// The restarted agent: new client, new lease, the key still ours
		// under the old lease.
		c := newClient(t, eps, "takeover")
		l := grant(t, c, 30*time.Second)
		if _, err := c.AcquireLeader(ctx, "a", l); !errors.Is(err, ErrLeaderExists) {
			t.Fatalf("acquire over own old key: %v, want ErrLeaderExists", err)
		}
		s := read(t, c)
		if _, err := c.TakeOverLeader(ctx, "a", l, s.Leader.ModRevision-1); !errors.Is(err, ErrLeaderExists) {
			t.Errorf("take over with stale revision: %v, want ErrLeaderExists", err)
		}
		if _, err := c.TakeOverLeader(ctx, "b", l, s.Leader.ModRevision); !errors.Is(err, ErrLeaderExists) {
			t.Errorf("take over someone else's key: %v, want ErrLeaderExists", err)
		}
		k, err := c.TakeOverLeader(ctx, "a", l, s.Leader.ModRevision)
		if err != nil {
			t.Fatal(err)
		}
		// The old lease no longer holds the key: revoking it leaves it.
		if err := oldLease.Revoke(ctx); err != nil {
			t.Fatal(err)
		}
		s = read(t, c)
		if s.Leader == nil || s.Leader.Name != "a" || s.Leader.Lease != l.ID() || s.Leader.ModRevision != k.ModRevision {
			t.Errorf("leader after take over: %+v, want a under lease %x", s.Leader, l.ID())
		}
	})

	t.Run("watch fires on delete", func(t *testing.T) {
		c := newClient(t, eps, "watch")
		w := newClient(t, eps, "watch")
		l := grant(t, c, 10*time.Second)
		if _, err := c.AcquireLeader(ctx, "a", l); err != nil {
			t.Fatal(err)
		}
		s := read(t, w)
		wctx, cancel := context.WithCancel(ctx)
		ch := w.WatchLeader(wctx, s.Revision+1)
		if err := c.ReleaseLeader(ctx, "a", l); err != nil {
			t.Fatal(err)
		}
		ev := nextEvent(t, ch)
		if want := (LeaderEvent{Deleted: true, Name: "a", Revision: ev.Revision}); ev != want {
			t.Errorf("event %+v, want %+v", ev, want)
		}
		cancel()
		// The channel is closed once ctx is done.
		for range ch {
		}
	})

	t.Run("watch fires on a switchover request", func(t *testing.T) {
		c := newClient(t, eps, "watchsw")
		s := read(t, c)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch := c.WatchSwitchover(wctx, s.Revision+1)
		if _, err := c.SetSwitchover(ctx, Switchover{From: "a", To: "b"}, 0); err != nil {
			t.Fatal(err)
		}
		if ev := nextEvent(t, ch); ev.Deleted || !strings.Contains(ev.Name, `"b"`) {
			t.Fatalf("event %+v, want the request to b", ev)
		}
	})

	t.Run("watch fires on a new member only", func(t *testing.T) {
		c := newClient(t, eps, "watchmembers")
		s := read(t, c)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch := c.WatchNewMembers(wctx, s.Revision+1)
		l := grant(t, c, 10*time.Second)
		// a registers, and rewrites its key as every pass does; then b
		// registers: two events, a's and b's.
		for _, name := range []string{"a", "a", "a", "b"} {
			if err := c.RegisterMember(ctx, Member{Name: name, Role: "replica"}, l); err != nil {
				t.Fatal(err)
			}
		}
		for _, want := range []string{"a", "b"} {
			if ev := nextEvent(t, ch); ev.Deleted || ev.Name != want {
				t.Fatalf("event %+v, want member %s created", ev, want)
			}
		}
	})

	t.Run("initialize is created once", func(t *testing.T) {
		a, b := newClient(t, eps, "init"), newClient(t, eps, "init")
		if id, err := a.Initialize(ctx, "7001", nil); err != nil || id != "7001" {
			t.Fatalf("first initialize: %q %v", id, err)
		}
		id, err := b.Initialize(ctx, "7002", nil)
		if !errors.Is(err, ErrAlreadyInitialized) || id != "7001" {
			t.Fatalf("second initialize: %q %v, want 7001 ErrAlreadyInitialized", id, err)
		}
		s := read(t, b)
		if err := a.SetInitialize(ctx, "7003", s.InitializeRevision); err != nil {
			t.Fatal(err)
		}
		if err := a.SetInitialize(ctx, "7004", s.InitializeRevision); !errors.Is(err, ErrConflict) {
			t.Errorf("stale SetInitialize: %v, want ErrConflict", err)
		}
		if got := read(t, b).Initialize; got != "7003" {
			t.Errorf("initialize = %q, want 7003", got)
		}
	})

	t.Run("a pending initialize claim expires with its lease, the system identifier does not", func(t *testing.T) {
		a, b := newClient(t, eps, "init-lease"), newClient(t, eps, "init-lease")
		la := grant(t, a, time.Second)
		if _, err := a.Initialize(ctx, "pending:a", la); err != nil {
			t.Fatal(err)
		}
		s := read(t, b)
		if s.Initialize != "pending:a" || s.InitializeLease != la.ID() {
			t.Fatalf("initialize = %q on lease %x, want pending:a on %x", s.Initialize, s.InitializeLease, la.ID())
		}
		if id, err := b.Initialize(ctx, "pending:b", nil); !errors.Is(err, ErrAlreadyInitialized) || id != "pending:a" {
			t.Fatalf("claim while a's is alive: %q %v, want pending:a ErrAlreadyInitialized", id, err)
		}
		// a dies: nobody renews its lease, and the claim goes with it.
		eventually(t, 10*time.Second, func() error {
			if s := read(t, b); s.Initialize != "" {
				return fmt.Errorf("initialize still %q", s.Initialize)
			}
			return nil
		})
		lb := grant(t, b, time.Second)
		if _, err := b.Initialize(ctx, "pending:b", lb); err != nil {
			t.Fatal(err)
		}
		// a's late write of its system identifier is refused: the claim
		// it read is gone.
		if err := a.SetInitialize(ctx, "7001", s.InitializeRevision); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale bootstrapper's SetInitialize: %v, want ErrConflict", err)
		}
		s = read(t, b)
		if err := b.SetInitialize(ctx, "7002", s.InitializeRevision); err != nil {
			t.Fatal(err)
		}
		if err := lb.Revoke(ctx); err != nil {
			t.Fatal(err)
		}
		if s := read(t, a); s.Initialize != "7002" || s.InitializeLease != 0 {
			t.Fatalf("initialize = %q on lease %x after the lease was revoked, want 7002 on none", s.Initialize, s.InitializeLease)
		}
	})

	t.Run("compare and swap helpers", func(t *testing.T) {
		c := newClient(t, eps, "cas")
		s := read(t, c)
		if diff := cmp.Diff(DefaultConfig(), s.Config); diff != "" {
			t.Errorf("config of an empty cluster (-want +got):\n%s", diff)
		}
		cfg := DefaultConfig()
		cfg.SynchronousMode = SyncStrict
		cfg.TTL = 20
		if err := c.SetConfig(ctx, cfg, 0); err != nil {
			t.Fatal(err)
		}
		if err := c.SetConfig(ctx, cfg, 0); !errors.Is(err, ErrConflict) {
			t.Errorf("second create of config: %v, want ErrConflict", err)
		}
		s = read(t, c)
		if diff := cmp.Diff(cfg, s.Config); diff != "" {
			t.Errorf("config (-want +got):\n%s", diff)
		}

		sync := Sync{Leader: "a", Standbys: []string{"b"}}
		if err := c.SetSync(ctx, "a", sync, 0); !errors.Is(err, ErrNotLeader) {
			t.Errorf("sync without leader key: %v, want ErrNotLeader", err)
		}
		l := grant(t, c, 10*time.Second)
		if _, err := c.AcquireLeader(ctx, "a", l); err != nil {
			t.Fatal(err)
		}
		if err := c.SetSync(ctx, "b", sync, 0); !errors.Is(err, ErrNotLeader) {
			t.Errorf("sync by non-leader: %v, want ErrNotLeader", err)
		}
		if err := c.SetSync(ctx, "a", sync, 0); err != nil {
			t.Fatal(err)
		}
		if err := c.SetSync(ctx, "a", sync, 0); !errors.Is(err, ErrConflict) {
			t.Errorf("stale sync: %v, want ErrConflict", err)
		}
		if err := c.SetStatus(ctx, "a", Status{LastLSN: 42}); err != nil {
			t.Fatal(err)
		}
		h := []HistoryEntry{{Timeline: 1, LSN: 100, Reason: "failover", Leader: "a", Time: time.Unix(1, 0).UTC()}}
		if err := c.SetHistory(ctx, "a", h, 0); err != nil {
			t.Fatal(err)
		}

		sw := Switchover{From: "a", To: "b"}
		swRev, err := c.SetSwitchover(ctx, sw, 0)
		if err != nil {
			t.Fatal(err)
		}
		s = read(t, c)
		if diff := cmp.Diff(&sync, s.Sync); diff != "" {
			t.Errorf("sync (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(&sw, s.Switchover); diff != "" {
			t.Errorf("switchover (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(h, s.History); diff != "" {
			t.Errorf("history (-want +got):\n%s", diff)
		}
		if s.Status == nil || s.Status.LastLSN != 42 {
			t.Errorf("status %+v", s.Status)
		}
		if s.SwitchoverRevision != swRev {
			t.Errorf("switchover revision %d, SetSwitchover said %d", s.SwitchoverRevision, swRev)
		}
		if err := c.ClearSwitchover(ctx, s.SwitchoverRevision-1, "stale"); !errors.Is(err, ErrConflict) {
			t.Errorf("stale clear: %v, want ErrConflict", err)
		}
		if err := c.ClearSwitchover(ctx, s.SwitchoverRevision, "b is not healthy"); err != nil {
			t.Fatal(err)
		}
		if s = read(t, c); s.Switchover != nil {
			t.Errorf("switchover after clear: %+v", s.Switchover)
		}
		if r := s.SwitchoverResult; r == nil || r.Revision != swRev || !r.Aborted || r.Reason != "b is not healthy" {
			t.Errorf("switchover result %+v, want aborted request %d for \"b is not healthy\"", r, swRev)
		}
	})

	t.Run("members are read sorted with their lease", func(t *testing.T) {
		c := newClient(t, eps, "members")
		l := grant(t, c, 10*time.Second)
		for _, n := range []string{"c", "a", "b"} {
			if err := c.RegisterMember(ctx, Member{Name: n, Role: "replica", ReplayedLSN: 7, Priority: 1}, l); err != nil {
				t.Fatal(err)
			}
		}
		s := read(t, c)
		var names []string
		for _, m := range s.Members {
			names = append(names, m.Name)
			if m.Lease != l.ID() || m.ReplayedLSN != 7 || m.ModRevision == 0 {
				t.Errorf("member %+v", m)
			}
		}
		if diff := cmp.Diff([]string{"a", "b", "c"}, names); diff != "" {
			t.Errorf("members (-want +got):\n%s", diff)
		}
		if m, ok := s.Member("b"); !ok || m.Name != "b" {
			t.Errorf("Member(b) = %+v %v", m, ok)
		}
	})

	t.Run("reset keeps the initialize key and clears the rest", func(t *testing.T) {
		const sysid = "7301234567890123456"
		// A cluster as a running one leaves it: "reset" shares its name's
		// start with "reset2", which must not be touched.
		populate := func(c *Client, withInit bool) {
			t.Helper()
			if withInit {
				if _, err := c.Initialize(ctx, sysid, nil); err != nil {
					t.Fatal(err)
				}
			}
			l := grant(t, c, 10*time.Second)
			if _, err := c.AcquireLeader(ctx, "a", l); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"a", "b"} {
				if err := c.RegisterMember(ctx, Member{Name: n, Role: "replica"}, l); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.SetConfig(ctx, DefaultConfig(), 0); err != nil {
				t.Fatal(err)
			}
			if err := c.SetStatus(ctx, "a", Status{LastLSN: 42}); err != nil {
				t.Fatal(err)
			}
			if err := c.SetHistory(ctx, "a", []HistoryEntry{{Timeline: 2, LSN: 7}}, 0); err != nil {
				t.Fatal(err)
			}
		}
		c, neighbour := newClient(t, eps, "reset"), newClient(t, eps, "reset2")
		populate(c, true)
		populate(neighbour, true)

		if _, err := c.Reset(ctx, "42"); !errors.Is(err, ErrOtherSystem) {
			t.Fatalf("reset with another system identifier: %v, want ErrOtherSystem", err)
		}
		if s := read(t, c); s.Leader == nil || len(s.Members) != 2 {
			t.Fatalf("a refused reset deleted keys: %+v", s)
		}
		n, err := c.Reset(ctx, sysid)
		if err != nil {
			t.Fatal(err)
		}
		s := read(t, c)
		if n != 6 || s.Initialize != sysid || s.InitializeLease != 0 || s.Leader != nil || len(s.Members) != 0 ||
			s.ConfigRevision != 0 || s.Status != nil || s.History != nil {
			t.Fatalf("after a reset that deleted %d keys: %+v", n, s)
		}
		if s := read(t, neighbour); s.Initialize != sysid || s.Leader == nil || len(s.Members) != 2 || s.History == nil {
			t.Fatalf("the reset touched another cluster: %+v", s)
		}
		if n, err := c.Reset(ctx, sysid); err != nil || n != 0 {
			t.Fatalf("a second reset = %d, %v; want 0, nil", n, err)
		}

		// Without an initialize key (cleared by hand), the reset writes it.
		bare := newClient(t, eps, "reset3")
		populate(bare, false)
		if _, err := bare.Reset(ctx, sysid); err != nil {
			t.Fatal(err)
		}
		if s := read(t, bare); s.Initialize != sysid || s.InitializeLease != 0 || s.Leader != nil {
			t.Fatalf("after a reset without an initialize key: %+v", s)
		}

		// A bootstrap under way is not this cluster's.
		pending := newClient(t, eps, "reset4")
		if _, err := pending.Initialize(ctx, "pending:b", grant(t, pending, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := pending.Reset(ctx, sysid); !errors.Is(err, ErrOtherSystem) {
			t.Fatalf("reset over a pending bootstrap: %v, want ErrOtherSystem", err)
		}
	})
}

// TestEtcdDown checks that every call returns by its own deadline, with
// ErrNoQuorum, when etcd is gone, and that a renewal that failed leaves the
// deadline where the last acknowledged one put it.
func TestEtcdDown(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	c := newClient(t, etcd.Endpoints(), "down")
	ctx := context.Background()
	l := grant(t, c, 10*time.Second)
	if _, err := c.AcquireLeader(ctx, "a", l); err != nil {
		t.Fatal(err)
	}
	deadline := l.Deadline()
	etcd.Members[0].Kill()

	// RequestTimeout is 1 s; allow generous slack, but a hang fails.
	const limit = 5 * time.Second
	calls := map[string]func() error{
		"read":    func() error { _, err := c.Read(ctx); return err },
		"renew":   func() error { _, err := l.Renew(ctx); return err },
		"acquire": func() error { _, err := c.AcquireLeader(ctx, "a", l); return err },
		"release": func() error { return c.ReleaseLeader(ctx, "a", l) },
		"grant":   func() error { _, err := c.GrantLease(ctx, 10*time.Second, time.Second); return err },
		"member":  func() error { return c.RegisterMember(ctx, Member{Name: "a"}, l) },
		"config":  func() error { return c.SetConfig(ctx, DefaultConfig(), 0) },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := call()
			if !errors.Is(err, ErrNoQuorum) {
				t.Errorf("error %v, want ErrNoQuorum", err)
			}
			if el := time.Since(start); el > limit {
				t.Errorf("returned after %s, want within %s", el, limit)
			}
		})
	}
	if !l.Deadline().Equal(deadline) {
		t.Errorf("failed renewals moved the deadline from %v to %v", deadline, l.Deadline())
	}

	t.Run("caller cancellation is not ErrNoQuorum", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := c.Read(cctx)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrNoQuorum) {
			t.Errorf("error %v, want context.Canceled only", err)
		}
	})

	t.Run("watch channel closes with ctx", func(t *testing.T) {
		wctx, cancel := context.WithCancel(ctx)
		ch := c.WatchLeader(wctx, 0)
		cancel()
		select {
		case <-drain(ch):
		case <-time.After(limit):
			t.Fatal("watch channel not closed after cancel")
		}
	})
}

func drain(ch <-chan LeaderEvent) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	return done
}

// TestThreeMembers checks linearizable reads across members and that the
// client keeps working through the remaining endpoints when one member dies,
// and refuses to answer (rather than answer stale) without quorum.
func TestThreeMembers(t *testing.T) {
	etcd := etcdtest.Start(t, 3)
	ctx := context.Background()
	eps := etcd.Endpoints()

	// A writer on member 0 and a reader pinned to member 2: the read
	// sees the write at once (linearizable, not served from a lagging
	// member's local state).
	w := newClient(t, eps[:1], "three")
	r := newClient(t, eps[2:], "three")
	for i := range 20 {
		cfg := DefaultConfig()
		cfg.TTL = 10 + i
		s := read(t, w)
		if err := w.SetConfig(ctx, cfg, s.ConfigRevision); err != nil {
			t.Fatal(err)
		}
		if got := read(t, r).Config.TTL; got != cfg.TTL {
			t.Fatalf("read on another member after write: ttl %d, want %d", got, cfg.TTL)
		}
	}

	c := newClient(t, eps, "three")
	l := grant(t, c, 10*time.Second)
	if _, err := c.AcquireLeader(ctx, "a", l); err != nil {
		t.Fatal(err)
	}
	etcd.Members[0].Kill()
	// The client fails over to the other endpoints; allow it a few tries
	// while it notices the dead connection.
	eventually(t, 15*time.Second, func() error { _, err := l.Renew(ctx); return err })
	eventually(t, 15*time.Second, func() error {
		s, err := c.Read(ctx)
		if err == nil && (s.Leader == nil || s.Leader.Name != "a") {
			return fmt.Errorf("leader %+v", s.Leader)
		}
		return err
	})
	l2 := grant(t, c, 10*time.Second)
	if _, err := c.AcquireLeader(ctx, "b", l2); !errors.Is(err, ErrLeaderExists) {
		t.Errorf("acquire on a held key with 2 of 3 members: %v, want ErrLeaderExists", err)
	}

	// Without quorum, a member still running must not answer a
	// linearizable read from its local state.
	etcd.Members[1].Kill()
	start := time.Now()
	if _, err := r.Read(ctx); !errors.Is(err, ErrNoQuorum) {
		t.Errorf("read without quorum: %v, want ErrNoQuorum", err)
	}
	if _, err := l.Renew(ctx); !errors.Is(err, ErrNoQuorum) {
		t.Errorf("renew without quorum: %v, want ErrNoQuorum", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("calls without quorum took %s", el)
	}
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Since(start) > timeout {
			t.Fatalf("still failing after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFrozenMember: a frozen etcd member keeps its connections open (its
// kernel still acknowledges) and answers nothing. Every request of a
// client that lists it must still be answered by the others within the
// request timeout, not a share of them time out for as long as the
// freeze lasts.
func TestFrozenMember(t *testing.T) {
	etcd := etcdtest.Start(t, 3)
	ctx := context.Background()
	eps := etcd.Endpoints()
	c := newClient(t, eps, "frozen")
	l := grant(t, c, 10*time.Second)
	if _, err := c.AcquireLeader(ctx, "a", l); err != nil {
		t.Fatal(err)
	}
	if err := etcd.Members[0].Pause(); err != nil {
		t.Fatal(err)
	}
	defer etcd.Members[0].Resume()
	// Wait until the two others serve (an election if the frozen member
	// led etcd), asking them only.
	others := newClient(t, eps[1:], "frozen")
	eventually(t, 15*time.Second, func() error { _, err := others.Read(ctx); return err })
	for i := range 30 {
		s, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d with a frozen member: %v", i, err)
		}
		if s.Leader == nil || s.Leader.Name != "a" {
			t.Fatalf("read %d: leader %+v, want a", i, s.Leader)
		}
		if _, err := l.Renew(ctx); err != nil {
			t.Fatalf("renewal %d with a frozen member: %v", i, err)
		}
	}
	// A txn repeated on another member after the first one carried it
	// out finds its own write: acquiring a key already held under the
	// same lease is a success.
	if _, err := c.AcquireLeader(ctx, "a", l); err != nil {
		t.Errorf("acquire again on the own lease: %v", err)
	}
}

// nextEvent is the watch's next event; it fails t when the watch closes
// or nothing comes within 10 s.
func nextEvent(t *testing.T, ch <-chan LeaderEvent) LeaderEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	return LeaderEvent{}
}
