package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/e2e/lab"
)

// TestScale grows the HA cluster by a fourth PostgreSQL host and shrinks
// it back (issue 7): a new host is provisioned and joins as a streaming
// replica, HAProxy routes to it; removed from the spec (its host block
// kept), it is drained and detached, its slot dropped, its data left in
// place. It reuses the converged HA cluster and grows the lab for the test.
func TestScale(t *testing.T) {
	dir := haCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// A host beyond the shared lab's, given back afterwards: the other
	// tests keep the hosts they know (node4 is the backup repository).
	before := len(theLab.Hosts())
	name := growLab(ctx, t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shrinkLab(ctx, t, before)
	})
	var node lab.Host
	for _, h := range theLab.Hosts() {
		if h.Name == name {
			node = h
		}
	}
	on := func(script string) string {
		t.Helper()
		out, err := theLab.Exec(ctx, node.Name, "sh", "-c", script)
		if err != nil {
			t.Fatalf("%s: %s: %v\n%s", node.Name, script, err, out)
		}
		return strings.TrimSpace(out)
	}
	psqlOn := func(sql string) string {
		return on(`runuser -u postgres -- psql -XAtc "` + sql + `"`)
	}

	// The spec of the HA tests (the lab's host blocks now name the new
	// host), with the new host among the PostgreSQL hosts or not.
	base, err := os.ReadFile(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	const pgHosts = `hosts                = ["node1", "node2", "node3"]`
	if !strings.Contains(string(base), pgHosts) {
		t.Fatalf("the HA spec no longer contains %q: adapt TestScale", pgHosts)
	}
	withNode := strings.Replace(string(base), pgHosts, fmt.Sprintf(`hosts                = ["node1", "node2", "node3", %q]`, name), 1)
	specDir := func(main string) string {
		return writeSpec(t, map[string]string{"lab.hcl": labSSH(theLab.KnownHostsFile()), "main.hcl": main})
	}
	outDir, inDir := specDir(string(base)), specDir(withNode)

	t.Run("scale out", func(t *testing.T) {
		r := pgherd(t, inDir, "plan", "-detailed-exitcode", ".")
		if r.code != 2 || !planChanges(r.stdout, name, "service.pgherd-agent.service") || !strings.Contains(r.stdout, name+" (not registered)") {
			t.Fatalf("want %s provisioned and joining, exit 2: %s", name, r)
		}
		if r := pgherd(t, inDir, "apply", "-auto-approve", "."); r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
		if got := psqlOn("select status from pg_stat_wal_receiver"); got != "streaming" {
			t.Fatalf("%s's WAL receiver: %q, want streaming", name, got)
		}
		w := pgConnect(ctx, t, haPrimaryPort)
		defer w.Close(context.Background())
		marker := fmt.Sprintf("scale-%d", time.Now().UnixNano())
		for _, q := range []string{"CREATE TABLE IF NOT EXISTS e2e_scale (v text PRIMARY KEY)", "INSERT INTO e2e_scale VALUES ('" + marker + "')"} {
			if _, err := w.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		for psqlOn("select count(*) from e2e_scale where v = '"+marker+"'") != "1" {
			select {
			case <-ctx.Done():
				t.Fatalf("the row written on the primary never showed on %s", name)
			case <-time.After(300 * time.Millisecond):
			}
		}
		if cfg := onHost(t, "node1", "cat /etc/haproxy/haproxy.cfg"); !strings.Contains(cfg, node.Address+":5432") {
			t.Fatalf("haproxy.cfg has no backend for %s:\n%s", name, cfg)
		}
		if r := pgherd(t, inDir, "plan", "-detailed-exitcode", "."); r.code != 0 {
			t.Fatalf("after scale out: %s", r)
		}
	})

	t.Run("scale in", func(t *testing.T) {
		r := pgherd(t, outDir, "plan", "-detailed-exitcode", ".")
		if r.code != 2 || !planChanges(r.stdout, name, "detached_member.lab") || !strings.Contains(r.stdout, "(kept; -remove-data "+name+" deletes it)") {
			t.Fatalf("want %s drained and detached, its data kept, exit 2: %s", name, r)
		}
		if r := pgherd(t, outDir, "apply", "-auto-approve", "."); r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
		if got := on("systemctl is-enabled pgherd-agent; systemctl is-active pgherd-agent; true"); got != "disabled\ninactive" {
			t.Fatalf("%s's agent: %q, want disabled and inactive", name, got)
		}
		if got := on("test -f /var/lib/postgresql/15/main/PG_VERSION && echo kept"); got != "kept" {
			t.Fatalf("%s's data directory is gone", name)
		}
		if cfg := onHost(t, "node1", "cat /etc/haproxy/haproxy.cfg"); strings.Contains(cfg, node.Address+":5432") {
			t.Fatalf("haproxy.cfg still routes to %s:\n%s", name, cfg)
		}
		// The leader drops the slot in its next loop once the host has left
		// the DCS (the detach step waited for that).
		for {
			w := pgConnect(ctx, t, haPrimaryPort)
			var n int
			err := w.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgherd_"+name+"'").Scan(&n)
			w.Close(context.Background())
			if err == nil && n == 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s's replication slot is still there: %d, %v", name, n, err)
			case <-time.After(300 * time.Millisecond):
			}
		}
		if r := pgherd(t, outDir, "plan", "-detailed-exitcode", "."); r.code != 0 {
			t.Fatalf("after scale in: %s", r)
		}
	})
}
