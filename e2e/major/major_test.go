package major

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgherd/pgherd/e2e/interrupt"
	"github.com/pgherd/pgherd/e2e/lab"
	"github.com/pgherd/pgherd/e2e/suite"
	"github.com/pgherd/pgherd/e2e/workload"
)

// pgherd runs the binary under test in dir and returns what it printed.
func pgherd(t *testing.T, dir string, args ...string) interrupt.Result {
	t.Helper()
	r, err := interrupt.Run(pgherdBin, dir, func(string) bool { return false }, 0, args...)
	if err != nil {
		t.Fatalf("pgherd %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("pgherd %s: exit %d\n--- stdout\n%s\n--- stderr\n%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	return r
}

// writeSpecs writes the two clusters' specs under dir.
func writeSpecs(t *testing.T, dir string) (newAddr string) {
	t.Helper()
	newAddr, err := WriteSpecs(theLab, labNet, dir)
	if err != nil {
		t.Fatal(err)
	}
	return newAddr
}

// sql runs a query as postgres on a host's server of the given major
// version, through docker exec.
func sql(t *testing.T, host string, version int, db, query string) string {
	t.Helper()
	out, err := Psql(context.Background(), theLab, host, version, db, query)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// oldPrimary is the old cluster's host that is not in recovery.
func oldPrimary(t *testing.T) lab.Host {
	t.Helper()
	for _, h := range theLab.Hosts()[:3] {
		if sql(t, h.Name, OldVersion, "postgres", "SELECT pg_is_in_recovery()") == "f" {
			return h
		}
	}
	t.Fatal("the old cluster has no primary")
	return lab.Host{}
}

var downtimeRE = regexp.MustCompile(`Downtime \(old read-only to new writable\): (\S+);`)

func TestMajorUpgrade(t *testing.T) {
	suite.JournalsOnFailure(t, theLab)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	dir := t.TempDir()
	newAddr := writeSpecs(t, dir)
	newHost := theLab.Hosts()[3].Name

	// Both clusters are built at once, on their own hosts; the new one's
	// PostgreSQL 17 comes from trixie, installed as the runbook says.
	var wg sync.WaitGroup
	codes := make([]int, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		codes[0] = pgherd(t, dir, "apply", "-auto-approve", "old").Code
	}()
	go func() {
		defer wg.Done()
		if out, err := theLab.Exec(ctx, newHost, "sh", "-c", TrixiePostgres); err != nil {
			t.Errorf("installing PostgreSQL 17 from trixie on %s: %v\n%s", newHost, err, out)
			return
		}
		codes[1] = pgherd(t, dir, "apply", "-auto-approve", "new").Code
	}()
	wg.Wait()
	if t.Failed() || codes[0] != 0 || codes[1] != 0 {
		t.Fatalf("building the clusters: apply exit codes %v", codes)
	}

	// Data of the old cluster: a table with a sequence in app, and the
	// writer's table in postgres.
	primary := oldPrimary(t)
	sql(t, primary.Name, OldVersion, "app", "CREATE TABLE items (id bigserial PRIMARY KEY, note text NOT NULL); "+
		"INSERT INTO items (note) SELECT 'item ' || g FROM generate_series(1, 1000) g")
	wctx, stopWriter := context.WithCancel(ctx)
	defer stopWriter()
	w, err := workload.Start(wctx, DSN(labNet, newAddr), "writes")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WaitAcks(ctx, 0, 30); err != nil {
		t.Fatal(err)
	}

	upgrade := []string{"upgrade", "major", "--from", "old", "--to", "new"}
	r := pgherd(t, dir, append(upgrade, "--dry-run")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "Steps:") {
		t.Fatalf("--dry-run: want exit 0 and the steps, got exit %d", r.Code)
	}
	if n := sql(t, primary.Name, OldVersion, "app", "SELECT count(*) FROM pg_publication"); n != "0" {
		t.Fatalf("--dry-run created %s publications on the old primary", n)
	}

	// Interrupted once the first database (app) is subscribed, while it
	// prepares the next (postgres), then run again: the second run goes on
	// from where the first stopped.
	ir, err := interrupt.Run(pgherdBin, dir, func(line string) bool { return strings.HasPrefix(line, "  app: schema loaded") }, 0,
		append(upgrade, "-auto-approve")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("interrupted run: exit %d\n--- stdout\n%s\n--- stderr\n%s", ir.Code, ir.Stdout, ir.Stderr)
	if !ir.Interrupted || ir.Code == 0 {
		t.Fatalf("the first run was not interrupted while it prepared (interrupted %v, exit %d)", ir.Interrupted, ir.Code)
	}

	// A switch whose last writes do not arrive in time (here: no time at
	// all) leaves the old cluster writable, and the writes go on there.
	r = pgherd(t, dir, append(upgrade, "--switch-timeout", "1ns", "-auto-approve")...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "the old cluster is writable again, nothing switched") {
		t.Fatalf("a switch that timed out: want exit 1 and the old cluster writable again, got exit %d", r.Code)
	}
	if v := sql(t, primary.Name, OldVersion, "app", "SHOW default_transaction_read_only"); v != "off" {
		t.Fatalf("after a switch that timed out the old cluster is read-only (%s)", v)
	}
	if err := w.WaitAcks(ctx, w.Mark(), 10); err != nil {
		t.Fatal(err)
	}

	mark := w.Mark()
	r = pgherd(t, dir, append(upgrade, "-auto-approve")...)
	if r.Code != 0 {
		t.Fatalf("upgrade major: exit %d", r.Code)
	}
	if strings.Contains(r.Stdout, "app: schema loaded") {
		t.Error("the second run loaded app's schema again: the interrupted run's work was not taken up")
	}
	m := downtimeRE.FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatal("upgrade major printed no downtime")
	}

	// Writes go on, on the new cluster.
	after := w.Mark()
	if err := w.WaitAcks(ctx, after, 30); err != nil {
		t.Fatal(err)
	}
	if last := w.Since(w.Mark() - 1)[0]; last.Server != newAddr {
		t.Fatalf("the last write was acknowledged by %s, want the new primary %s", last.Server, newAddr)
	}
	stopWriter()
	<-w.Done()
	acks := w.Since(0)
	missing, err := w.Missing(ctx, newAddr, acks)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged writes are missing on the new cluster: %v", len(missing), len(acks), missing)
	}
	gap := w.MaxGap(mark)
	t.Logf("major upgrade %s → %s: downtime reported by pgherd %s; the client's longest write gap %s; %d acknowledged writes, none lost",
		sql(t, primary.Name, OldVersion, "postgres", "SHOW server_version"), sql(t, newHost, NewVersion, "postgres", "SHOW server_version"),
		m[1], gap.Round(time.Millisecond), len(acks))
	if gap <= 0 {
		t.Error("no write gap recorded")
	}

	// The sequence continues on the new cluster.
	if n := sql(t, newHost, NewVersion, "app", "SELECT count(*) FROM items"); n != "1000" {
		t.Fatalf("items on the new cluster: %s rows, want 1000", n)
	}
	if id, _ := strconv.Atoi(sql(t, newHost, NewVersion, "app", "INSERT INTO items (note) VALUES ('after') RETURNING id")); id <= 1000 {
		t.Fatalf("the sequence of items restarted on the new cluster: id %d", id)
	}

	// A run after the switch has nothing to do.
	r = pgherd(t, dir, append(upgrade, "-auto-approve")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "The switch is done already") {
		t.Fatalf("a run after the switch: want exit 0 and nothing to do, got exit %d", r.Code)
	}
	if n := sql(t, primary.Name, OldVersion, "postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgherd\\_upgrade%'"); n != "0" {
		t.Errorf("%s replication slots left on the old primary", n)
	}

	// Rollback: the old cluster writable again, the new one read-only.
	r = pgherd(t, dir, append(upgrade, "--rollback", "-auto-approve")...)
	if r.Code != 0 {
		t.Fatalf("--rollback: exit %d", r.Code)
	}
	if v := sql(t, primary.Name, OldVersion, "app", "SHOW default_transaction_read_only"); v != "off" {
		t.Errorf("after --rollback the old cluster is read-only (%s)", v)
	}
	sql(t, primary.Name, OldVersion, "app", "INSERT INTO items (note) VALUES ('rolled back')")
	if v := sql(t, newHost, NewVersion, "app", "SHOW default_transaction_read_only"); v != "on" {
		t.Errorf("after --rollback the new cluster is writable (%s)", v)
	}
}
