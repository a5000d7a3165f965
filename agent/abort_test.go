package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/agent/api"
	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/pg"
)

// TestAgentSwitchoverTimeout: a switchover whose target cannot replay the
// old primary's last WAL (its replay is paused) is aborted after
// switchover_timeout: the caller is told why, the old primary resumes as
// leader and takes writes, and the target streams from it again.
func TestAgentSwitchoverTimeout(t *testing.T) {
	c := newTestCluster(t, 2, func(cfg *Config) { cfg.HA.SwitchoverTimeout.Duration = 3 * time.Second })
	for _, n := range c.names {
		c.start(n)
	}
	leader := c.waitRoles(90 * time.Second)
	target := c.others(leader)[0]
	c.exec(leader, "CREATE TABLE t (id int primary key)")
	c.waitCount(target, 0)
	c.exec(target, "SELECT pg_wal_replay_pause()")
	c.exec(leader, "INSERT INTO t SELECT generate_series(1, 100)")

	code, body := c.post(leader, "/switchover", fmt.Sprintf(`{"leader": %q, "candidate": %q}`, leader, target))
	if code != http.StatusPreconditionFailed || !strings.Contains(body, "switchover aborted") ||
		!strings.Contains(body, target+" did not replay") || !strings.Contains(body, "switchover timeout 3s") {
		t.Fatalf("switchover to a target that cannot replay: %d %q, want 412 saying it was aborted and why", code, body)
	}
	// The answer came once the old primary was back: it takes writes.
	c.exec(leader, "INSERT INTO t SELECT generate_series(101, 200)")
	// A standby whose replay is paused does not restart its WAL receiver.
	c.exec(target, "SELECT pg_wal_replay_resume()")
	if got := c.waitRoles(60 * time.Second); got != leader {
		t.Fatalf("leader is %s after an aborted switchover, want %s back", got, leader)
	}
	c.waitCount(target, 200)
	st, err := c.members[leader].agent.dcs.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Switchover != nil {
		t.Errorf("switchover key left behind: %+v", st.Switchover)
	}
}

// TestAgentBootstrapAfterDeadClaim: a bootstrapper died after it claimed
// the initialize key and ran initdb. Its claim expires with its lease and
// another member bootstraps the cluster; when the dead member's agent
// comes back, its data directory (another system identifier) never joins
// nor leads: one cluster only.
func TestAgentBootstrapAfterDeadClaim(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := context.Background()
	dead := c.members["node1"].cfg
	cli, err := dcs.New(ctx, dcs.Options{Endpoints: dead.Etcd.Endpoints, Cluster: dead.Cluster})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	in := &pg.Instance{Name: "node1", BinDir: testBinDir, DataDir: dead.Postgres.DataDir, Port: dead.Postgres.Port,
		SocketDir: dead.Postgres.SocketDir, User: "postgres"}
	if err := in.InitDB(ctx, pg.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	deadID := mustStatusID(t, in)
	lease, err := cli.GrantLease(ctx, dead.HA.TTL.Duration, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Initialize(ctx, "pending:node1", lease); err != nil {
		t.Fatal(err)
	}

	c.start("node2")
	c.start("node3")
	leader := c.waitRoles(120 * time.Second)
	st, err := cli.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(st.Initialize, "pending:") || st.Initialize == deadID || st.InitializeLease != 0 {
		t.Fatalf("initialize = %q on lease %x; want the new cluster's permanent system identifier (dead member's: %s)",
			st.Initialize, st.InitializeLease, deadID)
	}

	c.start("node1")
	// Let node1's agent make a few passes: it registers, sees another
	// system identifier and stays out.
	var m dcs.Member
	waitUntil(t, 60*time.Second, "node1 to register", func() bool {
		st, err := cli.Read(ctx)
		if err != nil {
			return false
		}
		var ok bool
		m, ok = st.Member("node1")
		return ok
	})
	for range 3 {
		last := c.members["node1"].agent.Snapshot().LastLoop
		waitUntil(t, 30*time.Second, "a pass of node1", func() bool {
			return c.members["node1"].agent.Snapshot().LastLoop.After(last)
		})
	}
	s := c.members["node1"].agent.Snapshot()
	if s.IsLeader || s.PostgresRunning || s.Role == api.RolePrimary {
		t.Fatalf("the dead bootstrapper's data directory came up: %+v", s)
	}
	if m.SystemID != deadID {
		t.Errorf("node1 published system id %s, want its own %s", m.SystemID, deadID)
	}
	// waitRoles counts every running agent: node1's stays out by design.
	c.stop("node1", false)
	if got := c.waitRoles(30 * time.Second); got != leader {
		t.Fatalf("leader changed from %s to %s", leader, got)
	}
}

func mustStatusID(t *testing.T, in *pg.Instance) string {
	t.Helper()
	st, err := in.Status(context.Background())
	if err != nil || st.SystemID == 0 {
		t.Fatalf("system identifier of %s: %v", in.DataDir, err)
	}
	return fmt.Sprint(st.SystemID)
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}
