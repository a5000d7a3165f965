package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/dcs/etcdtest"
)

// TestRenewingWhileOutlastsTheLease: a start that takes longer than the
// lease's whole ttl leaves the leader with a valid lease (found in the
// bench lab: pg_ctl start took 3–19 s on a loaded host, and every new
// primary was fenced as soon as it had started), while a lease nobody
// renews has passed its deadline by then.
func TestRenewingWhileOutlastsTheLease(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	cli, err := dcs.New(ctx, dcs.Options{Endpoints: etcd.Endpoints(), Cluster: "test", RequestTimeout: time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cfg := &Config{}
	cfg.HA.TTL.Duration, cfg.HA.LoopWait.Duration = 3*time.Second, 500*time.Millisecond
	a := &Agent{cfg: cfg, log: log, dcs: cli, lastConfig: dcs.Config{TTL: 3, LoopWait: 1}}
	if a.leaderLease, err = cli.GrantLease(ctx, a.ttl(), a.safetyMargin()); err != nil {
		t.Fatal(err)
	}
	alone, err := cli.GrantLease(ctx, a.ttl(), a.safetyMargin())
	if err != nil {
		t.Fatal(err)
	}
	slow := func(ctx context.Context) error {
		time.Sleep(a.ttl() + time.Second)
		return nil
	}
	if err := a.renewingWhile(ctx, slow); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if d := a.leaderLease.Deadline(); !now.Before(d) {
		t.Errorf("after a start of %s the leader's deadline %s has passed", a.ttl()+time.Second, d.Sub(now))
	}
	if d := alone.Deadline(); now.Before(d) {
		t.Errorf("a lease nobody renewed is still valid for %s after %s", d.Sub(now), a.ttl()+time.Second)
	}
}
