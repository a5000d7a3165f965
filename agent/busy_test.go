package agent

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/dcs/etcdtest"
	"github.com/pgherd/pgherd/agent/ha"
)

// TestKeepBusy: while a long action (a clone, a rewind, initdb) holds the
// loop for three times the ttl, the member key stays in the DCS showing
// the action, the API snapshot keeps being refreshed (/liveness), and the
// leader lease is renewed only when asked; a lease left alone meanwhile
// expires, which shows the action did outlast the ttl.
func TestKeepBusy(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	cfg := &Config{Cluster: "busy", Name: "node1", Address: "127.0.0.1"}
	cfg.Postgres.Port = 5432
	cfg.API.Listen = "127.0.0.1:8008"
	cfg.HA.TTL.Duration = 2 * time.Second
	cfg.HA.LoopWait.Duration = 500 * time.Millisecond
	a := New(cfg, slog.New(slog.DiscardHandler), "test")
	ctx := context.Background()
	cli, err := dcs.New(ctx, dcs.Options{Endpoints: etcd.Endpoints(), Cluster: "busy", RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	a.dcs = cli
	st, err := cli.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v := ha.View{DCS: st, Self: ha.Self{Name: "node1", Role: ha.RoleStopped}}

	for _, renewLeader := range []bool{true, false} {
		lease, err := cli.GrantLease(ctx, a.ttl(), a.safetyMargin())
		if err != nil {
			t.Fatal(err)
		}
		a.leaderLease = lease
		start := time.Now()
		var during []string
		err = a.keepBusy(ctx, v, "cloning", renewLeader, func() error {
			for time.Since(start) < 3*a.ttl() {
				s, err := cli.Read(ctx)
				if err != nil {
					return err
				}
				if m, ok := s.Member("node1"); !ok {
					during = append(during, "member key gone")
				} else if m.Pending != "cloning" {
					during = append(during, "member pending "+m.Pending)
				}
				time.Sleep(100 * time.Millisecond)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(during) > 0 {
			t.Errorf("renewLeader=%v: during the action: %v", renewLeader, during)
		}
		snap := a.Snapshot()
		if snap.State != "cloning" || !snap.LastLoop.After(start.Add(2*a.ttl())) {
			t.Errorf("renewLeader=%v: snapshot state %q, last loop %s after the start: not kept fresh",
				renewLeader, snap.State, snap.LastLoop.Sub(start))
		}
		_, err = lease.Renew(ctx)
		switch {
		case renewLeader && err != nil:
			t.Errorf("the leader lease was not kept: %v", err)
		case !renewLeader && !errors.Is(err, dcs.ErrLeaseExpired):
			t.Errorf("the leader lease outlived an action of 3 ttl without renewal (err %v): the action was too short to prove anything", err)
		}
	}
}
