package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/e2e/lab"
)

// TestScale grows the HA cluster by a fourth PostgreSQL host and shrinks
// it back (issue 7): node4 is provisioned and joins as a streaming
// replica, HAProxy routes to it; removed from the spec (its host block
// kept), it is drained and detached, its slot dropped, its data left in
// place. It reuses the converged HA cluster and grows the lab for the test.
func TestScale(t *testing.T) {
	dir := haCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	grow := func(ctx context.Context, n int) *lab.Lab {
		t.Helper()
		l, err := lab.Up(ctx, lab.Config{Name: labName, Hosts: n, Subnet: labNet + ".0/24", Dir: theLab.Dir(), Log: log})
		if err != nil {
			t.Fatalf("lab with %d hosts: %v", n, err)
		}
		return l
	}
	big := grow(ctx, 4)
	// The lab goes back to the three hosts the other tests know.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		grow(ctx, 3)
	})
	node4 := big.Hosts()[3]
	on4 := func(script string) string {
		t.Helper()
		out, err := big.Exec(ctx, node4.Name, "sh", "-c", script)
		if err != nil {
			t.Fatalf("%s: %s: %v\n%s", node4.Name, script, err, out)
		}
		return strings.TrimSpace(out)
	}
	psql4 := func(sql string) string {
		return on4(`runuser -u postgres -- psql -XAtc "` + sql + `"`)
	}

	// The spec of the HA tests with node4's host block, and node4 among
	// the PostgreSQL hosts or not.
	hostBlock := fmt.Sprintf("host %q {\n  address = %q\n}\n", node4.Name, node4.Address)
	base, err := os.ReadFile(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	const pgHosts = `hosts                = ["node1", "node2", "node3"]`
	if !strings.Contains(string(base), pgHosts) {
		t.Fatalf("the HA spec no longer contains %q: adapt TestScale", pgHosts)
	}
	withNode4 := strings.Replace(string(base), pgHosts, `hosts                = ["node1", "node2", "node3", "node4"]`, 1)
	specDir := func(main string) string {
		return writeSpec(t, map[string]string{"lab.hcl": labSSH(theLab.KnownHostsFile(), hostBlock), "main.hcl": main})
	}
	outDir, inDir := specDir(string(base)), specDir(withNode4)

	t.Run("scale out", func(t *testing.T) {
		r := pgherd(t, inDir, "plan", "-detailed-exitcode", ".")
		if r.code != 2 || !planChanges(r.stdout, "node4", "service.pgherd-agent.service") || !strings.Contains(r.stdout, "node4 (not registered)") {
			t.Fatalf("want node4 provisioned and joining, exit 2: %s", r)
		}
		if r := pgherd(t, inDir, "apply", "-auto-approve", "."); r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
		if got := psql4("select status from pg_stat_wal_receiver"); got != "streaming" {
			t.Fatalf("node4's WAL receiver: %q, want streaming", got)
		}
		w := pgConnect(ctx, t, haPrimaryPort)
		defer w.Close(context.Background())
		marker := fmt.Sprintf("scale-%d", time.Now().UnixNano())
		for _, q := range []string{"CREATE TABLE IF NOT EXISTS e2e_scale (v text PRIMARY KEY)", "INSERT INTO e2e_scale VALUES ('" + marker + "')"} {
			if _, err := w.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		for psql4("select count(*) from e2e_scale where v = '"+marker+"'") != "1" {
			select {
			case <-ctx.Done():
				t.Fatal("the row written on the primary never showed on node4")
			case <-time.After(300 * time.Millisecond):
			}
		}
		if cfg := onHost(t, "node1", "cat /etc/haproxy/haproxy.cfg"); !strings.Contains(cfg, node4.Address+":5432") {
			t.Fatalf("haproxy.cfg has no backend for node4:\n%s", cfg)
		}
		if r := pgherd(t, inDir, "plan", "-detailed-exitcode", "."); r.code != 0 {
			t.Fatalf("after scale out: %s", r)
		}
	})

	t.Run("scale in", func(t *testing.T) {
		r := pgherd(t, outDir, "plan", "-detailed-exitcode", ".")
		if r.code != 2 || !planChanges(r.stdout, "node4", "detached_member.lab") || !strings.Contains(r.stdout, "(kept; -remove-data node4 deletes it)") {
			t.Fatalf("want node4 drained and detached, its data kept, exit 2: %s", r)
		}
		if r := pgherd(t, outDir, "apply", "-auto-approve", "."); r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
		if got := on4("systemctl is-enabled pgherd-agent; systemctl is-active pgherd-agent; true"); got != "disabled\ninactive" {
			t.Fatalf("node4's agent: %q, want disabled and inactive", got)
		}
		if got := on4("test -f /var/lib/postgresql/15/main/PG_VERSION && echo kept"); got != "kept" {
			t.Fatal("node4's data directory is gone")
		}
		if cfg := onHost(t, "node1", "cat /etc/haproxy/haproxy.cfg"); strings.Contains(cfg, node4.Address+":5432") {
			t.Fatalf("haproxy.cfg still routes to node4:\n%s", cfg)
		}
		// The leader drops the slot in its next loop once node4 has left
		// the DCS (the detach step waited for that).
		for {
			w := pgConnect(ctx, t, haPrimaryPort)
			var n int
			err := w.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgherd_node4'").Scan(&n)
			w.Close(context.Background())
			if err == nil && n == 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("node4's replication slot is still there: %d, %v", n, err)
			case <-time.After(300 * time.Millisecond):
			}
		}
		if r := pgherd(t, outDir, "plan", "-detailed-exitcode", "."); r.code != 0 {
			t.Fatalf("after scale in: %s", r)
		}
	})
}
