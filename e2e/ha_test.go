package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/e2e/suite"
)

// The HA cluster of examples/ha, moved onto the e2e lab's network.
var haVIP = labAddr(100)

const (
	haSuperuserPassword = "lab-superuser-pw" // the example's variable default
	haAPIToken          = "lab-api-token"    // the example's variable default
	haPrimaryPort       = 5000
	haReplicaPort       = 5001
)

// haDBHosts are the example's PostgreSQL hosts; the lab has more (node4,
// the backup repository's server).
var haDBHosts = []string{"node1", "node2", "node3"}

// haShared is the HA cluster TestHA converges and TestHAFailover reuses.
var haShared struct {
	mu  sync.Mutex
	dir string // the spec directory once an apply succeeded
}

// haSpec is examples/ha/main.hcl with its addresses moved from the
// default lab (10.77.0.0/24) to the e2e lab (10.79.0.0/24). The example
// stays the source of truth: a replacement that no longer matches fails
// the test rather than silently testing something else.
func haSpec(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", "ha", "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, r := range []struct{ old, new string }{
		{`vip       = "10.77.0.100/24"`, `vip       = "` + haVIP + `/24"`},
		{`address  = "10.77.0.0/24"`, `address  = "` + labAddr(0) + `/24"`},
		{`host        = "10.77.0.14"`, `host        = "` + labAddr(14) + `"`},
	} {
		if !strings.Contains(src, r.old) {
			t.Fatalf("examples/ha/main.hcl no longer contains %q: adapt haSpec", r.old)
		}
		src = strings.ReplaceAll(src, r.old, r.new)
	}
	if os.Getenv("PGHERD_E2E_SYNC") == "1" {
		const off = `synchronous_mode = "off"`
		if !strings.Contains(src, off) {
			t.Fatalf("examples/ha/main.hcl no longer contains %q", off)
		}
		src = strings.ReplaceAll(src, off, `synchronous_mode = "on"`)
	}
	for _, l := range strings.Split(src, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") && strings.Contains(l, "10.77.") {
			t.Fatalf("examples/ha/main.hcl has a 10.77. address haSpec does not move: %s", l)
		}
	}
	return src
}

// haSpecDir writes the HA spec and the lab's ssh and host blocks.
// haSpecDir writes the HA spec into a directory that outlives the test:
// later tests of the package reuse the applied cluster (haCluster).
func haSpecDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, "ha-spec-")
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"lab.hcl": labSSH(theLab.KnownHostsFile()), "main.hcl": haSpec(t)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// haCluster returns the directory of an applied HA spec: TestHA's when it
// ran, else one it applies now.
func haCluster(t *testing.T) string {
	t.Helper()
	suite.JournalsOnFailure(t, theLab)
	haShared.mu.Lock()
	defer haShared.mu.Unlock()
	if haShared.dir != "" {
		return haShared.dir
	}
	dir := haSpecDir(t)
	if r := pgherd(t, dir, "apply", "-auto-approve", "."); r.code != 0 {
		t.Fatalf("apply of the HA cluster: %s", r)
	}
	haShared.dir = dir
	return dir
}

// pgURL is a DSN for the superuser through the VIP's port.
func pgURL(port int) string {
	return fmt.Sprintf("postgres://postgres:%s@%s:%d/postgres?sslmode=disable&connect_timeout=2", haSuperuserPassword, haVIP, port)
}

// pgConnect connects through the VIP, retrying until ctx ends.
func pgConnect(ctx context.Context, t *testing.T, port int) *pgx.Conn {
	t.Helper()
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := pgx.Connect(cctx, pgURL(port))
		cancel()
		if err == nil {
			return conn
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("connecting to %s:%d: %v", haVIP, port, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func TestHA(t *testing.T) {
	suite.JournalsOnFailure(t, theLab)
	dir := haSpecDir(t)

	ok := t.Run("apply from bare hosts", func(t *testing.T) {
		start := time.Now()
		r := pgherd(t, dir, "apply", "-auto-approve", ".")
		t.Logf("HA apply from bare hosts took %s", time.Since(start).Round(100*time.Millisecond))
		if r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
		assertNoSecret(t, r, haSuperuserPassword)
		assertNoSecret(t, r, haAPIToken)
	})
	if !ok {
		t.FailNow()
	}
	haShared.mu.Lock()
	haShared.dir = dir
	haShared.mu.Unlock()

	t.Run("write through the VIP, read from a replica", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		w := pgConnect(ctx, t, haPrimaryPort)
		defer w.Close(context.Background())
		var inRecovery bool
		if err := w.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || inRecovery {
			t.Fatalf("port %d: in recovery %v, err %v; want the primary", haPrimaryPort, inRecovery, err)
		}
		marker := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
		for _, q := range []string{
			"CREATE TABLE IF NOT EXISTS e2e_ha_smoke (v text PRIMARY KEY)",
		} {
			if _, err := w.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if _, err := w.Exec(ctx, "INSERT INTO e2e_ha_smoke VALUES ($1)", marker); err != nil {
			t.Fatalf("insert: %v", err)
		}
		// Asynchronous replicas catch up soon; poll rather than sleep.
		for {
			r := pgConnect(ctx, t, haReplicaPort)
			var rec bool
			var n int
			err := r.QueryRow(ctx, "SELECT pg_is_in_recovery(), (SELECT count(*) FROM e2e_ha_smoke WHERE v = $1)", marker).Scan(&rec, &n)
			r.Close(context.Background())
			if err == nil && !rec {
				t.Fatalf("port %d reached a server not in recovery", haReplicaPort)
			}
			if err == nil && n == 1 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the row never showed on a replica through port %d: last err %v, count %d", haReplicaPort, err, n)
			case <-time.After(300 * time.Millisecond):
			}
		}
	})

	t.Run("second plan is empty", func(t *testing.T) {
		r := pgherd(t, dir, "plan", "-detailed-exitcode", ".")
		if r.code != 0 {
			t.Fatalf("want no changes and exit 0: %s", r)
		}
	})

	t.Run("archiving and a base backup", func(t *testing.T) {
		primary := ""
		for _, h := range haDBHosts {
			if onHost(t, h, `runuser -u postgres -- psql -XAtc "select pg_is_in_recovery()"`) == "f" {
				primary = h
			}
		}
		if primary == "" {
			t.Fatal("no primary found")
		}
		onHost(t, primary, `runuser -u postgres -- psql -XAtc "select pg_switch_wal()"`)
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := onHost(t, primary, `runuser -u postgres -- psql -XAtc "select archived_count > 0 and failed_count = 0 from pg_stat_archiver"`)
			if got == "t" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("WAL is not archived by pgherd wal-push: %s\n%s", onHost(t, primary,
					`runuser -u postgres -- psql -XAtc "select * from pg_stat_archiver"`),
					onHost(t, primary, `grep -A3 -i 'archive command failed' /var/log/postgresql/*.log | tail -12; true`))
			}
			time.Sleep(500 * time.Millisecond)
		}
		onHost(t, primary, "runuser -u postgres -- pgherd backup --from primary")
		if out := onHost(t, primary, "runuser -u postgres -- pgherd backup list"); !strings.Contains(out, "full") {
			t.Fatalf("backup list after a backup: %s", out)
		}
	})

	t.Run("drift", func(t *testing.T) {
		for _, tc := range []struct {
			name, host, script string
			resource           string // the changed resource the plan must name under host
		}{
			{"haproxy.cfg edited", "node1", "echo '# hand edit' >> /etc/haproxy/haproxy.cfg", "file./etc/haproxy/haproxy.cfg"},
			{"haproxy stopped", "node2", "systemctl stop haproxy", "service.haproxy"},
			{"keepalived stopped", "node1", "systemctl stop keepalived", "service.keepalived"},
			{"agent.json edited", "node3", "echo >> /etc/pgherd/agent.json", "file./etc/pgherd/agent.json"},
			{"etcd default line removed", "node2", "sed -i '0,/^ETCD_/{/^ETCD_/d}' /etc/default/etcd", "file./etc/default/etcd"},
			{"pg_hba.conf edited", "node2", "sed -i '/scram-sha-256/{$d}' /var/lib/postgresql/15/main/pg_hba.conf", "pg_hba"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				onHost(t, tc.host, tc.script)
				r := pgherd(t, dir, "plan", "-detailed-exitcode", ".")
				if r.code != 2 {
					t.Fatalf("want exit 2 for drift: %s", r)
				}
				if !planChanges(r.stdout, tc.host, tc.resource) {
					t.Fatalf("plan does not name %s on %s: %s", tc.resource, tc.host, r)
				}
				if r := pgherd(t, dir, "apply", "-auto-approve", "."); r.code != 0 {
					t.Fatalf("apply: %s", r)
				}
				if r := pgherd(t, dir, "plan", "-detailed-exitcode", "."); r.code != 0 {
					t.Fatalf("after repair: %s", r)
				}
			})
		}
		t.Run("postgres parameter via ALTER SYSTEM", func(t *testing.T) {
			// On the primary: ALTER SYSTEM is per host, and the plan names
			// the host where it was done.
			primary := ""
			for _, h := range haDBHosts {
				if onHost(t, h, `runuser -u postgres -- psql -XAtc "select pg_is_in_recovery()"`) == "f" {
					primary = h
				}
			}
			if primary == "" {
				t.Fatal("no primary found")
			}
			onHost(t, primary, `runuser -u postgres -- psql -XAtq -c "ALTER SYSTEM SET log_min_duration_statement = '5s'" -c "select pg_reload_conf()"`)
			r := pgherd(t, dir, "plan", "-detailed-exitcode", ".")
			if r.code != 2 || !planChanges(r.stdout, primary, "postgres_parameters") || !strings.Contains(r.stdout, "log_min_duration_statement") {
				t.Fatalf("want the parameter named under %s, exit 2: %s", primary, r)
			}
			if r := pgherd(t, dir, "apply", "-auto-approve", "."); r.code != 0 {
				t.Fatalf("apply: %s", r)
			}
			if got := onHost(t, primary, `runuser -u postgres -- psql -XAtc "show log_min_duration_statement"`); got != "1s" {
				t.Fatalf("after repair log_min_duration_statement = %q, want 1s", got)
			}
			if r := pgherd(t, dir, "plan", "-detailed-exitcode", "."); r.code != 0 {
				t.Fatalf("after repair: %s", r)
			}
		})
		t.Run("etcd member removed", func(t *testing.T) {
			// Removed by hand through the membership API: etcd on node2
			// exits, its data directory belongs to a removed member.
			etcdctl := "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 "
			id := onHost(t, "node1", etcdctl+"member list | awk -F', ' '$3 == \"node2\" {print $1}'")
			if id == "" {
				t.Fatal("node2 is not an etcd member before the test")
			}
			onHost(t, "node1", etcdctl+"member remove "+id)
			r := pgherd(t, dir, "plan", "-detailed-exitcode", ".")
			if r.code != 2 || !planChanges(r.stdout, "node2", "etcd_member.node2") || !strings.Contains(r.stdout, "member add node2") {
				t.Fatalf("want etcd_member.node2 with a member add, exit 2: %s", r)
			}
			if r := pgherd(t, dir, "apply", "-auto-approve", "."); r.code != 0 {
				t.Fatalf("apply: %s", r)
			}
			list := onHost(t, "node1", etcdctl+"member list")
			for _, n := range []string{"node1", "node2", "node3"} {
				if !strings.Contains(list, ", started, "+n+", ") {
					t.Fatalf("%s is not a started member after the repair:\n%s", n, list)
				}
			}
			if n := strings.Count(list, "\n") + 1; n != 3 {
				t.Fatalf("%d members after the repair, want 3:\n%s", n, list)
			}
			onHost(t, "node1", etcdctl+"endpoint health --cluster")
			// The removed member's data is kept, moved aside.
			if got := onHost(t, "node2", "ls -d /var/lib/etcd/pgherd.removed-* | wc -l"); got == "0" {
				t.Fatal("node2's old etcd data directory was not kept")
			}
			if r := pgherd(t, dir, "plan", "-detailed-exitcode", "."); r.code != 0 {
				t.Fatalf("after repair: %s", r)
			}
		})
	})

	t.Run("status", func(t *testing.T) {
		if r := pgherd(t, dir, "status", "--help"); r.code != 0 {
			t.Skip("pgherd status is not there yet (status --help failed)")
		}
		r := pgherd(t, dir, "status", ".")
		if r.code != 0 {
			t.Fatalf("status: %s", r)
		}
		for _, h := range haDBHosts {
			if !strings.Contains(r.stdout, h) {
				t.Errorf("status does not name %s: %s", h, r)
			}
		}
	})
}

// planChanges reports whether a rendered plan lists a change of resource
// (its address, "file./etc/…", "service.haproxy") in host's section.
func planChanges(plan, host, resource string) bool {
	in := false
	for _, l := range strings.Split(plan, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "#":
			in = strings.TrimSuffix(f[1], ":") == host && !strings.Contains(l, "no changes")
		case in && len(f) >= 2 && strings.ContainsAny(f[0], "+~-") && f[1] == resource:
			return true
		}
	}
	return false
}
