package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgherd/pgherd/e2e/interrupt"
)

// The repository of examples/ha, on node4, as the SFTP server sees it.
const (
	repoHost = "node4"
	repoRoot = "/srv/pgherd-backup"
	dataDir  = "/var/lib/postgresql/15/main"
)

// TestBackupRestore checks backups on the HA cluster TestHA converged (or
// one it applies now), with examples/ha's SFTP repository on node4: WAL
// archiving goes on across a switchover (a new timeline), the cluster is
// restored to a point in time between two known commits on a new lab
// host, a member is rebuilt from the repository
// (create_replica_from_backup) and streams again, and the whole cluster is
// rolled back to a point in time by pgherd restore --host, interrupted
// once and resumed.
//
// It runs after TestHAFailover (files run in name order), so that TestHA
// applies the cluster from bare hosts.
func TestBackupRestore(t *testing.T) {
	dir := haCluster(t)
	all := hostNames()
	primary := waitSettled(t, all, 3*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	// A full backup, from a standby, by the scheduled unit (which also
	// applies the retention); then rows 1..50 on its timeline.
	onHost(t, other(all, primary), "systemctl start pgherd-backup-full.service && journalctl -u pgherd-backup-full.service -o cat | grep -q 'Expired [0-9]* backups'")
	c := primaryConn(ctx, t, primary)
	execSQL(ctx, t, c, "DROP TABLE IF EXISTS e2e_pitr",
		"CREATE TABLE e2e_pitr (id int PRIMARY KEY)",
		"INSERT INTO e2e_pitr SELECT generate_series(1, 50)")
	c.Close(context.Background())

	var target string // a time after row 100's commit and before row 101's
	ok := t.Run("archiving goes on across a switchover", func(t *testing.T) {
		candidate := other(all, primary)
		switchover(t, primary, candidate)
		if primary = waitSettled(t, all, 2*time.Minute); primary != candidate {
			t.Fatalf("switched over to %s, want %s", primary, candidate)
		}
		st, err := memberState(ctx, hostAddr(t, primary))
		if err != nil {
			t.Fatal(err)
		}
		c := primaryConn(ctx, t, primary)
		defer c.Close(context.Background())
		execSQL(ctx, t, c, "INSERT INTO e2e_pitr SELECT generate_series(51, 100)")
		target = queryText(ctx, t, c, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'`)
		execSQL(ctx, t, c, "INSERT INTO e2e_pitr SELECT generate_series(101, 150)")
		seg := queryText(ctx, t, c, "SELECT pg_walfile_name(pg_current_wal_lsn())")
		execSQL(ctx, t, c, "SELECT pg_switch_wal()")
		// The new primary archives: the segment holding the last commit
		// reaches the repository, on the new timeline.
		if !strings.HasPrefix(seg, fmt.Sprintf("%08X", st.Timeline)) {
			t.Fatalf("segment %s is not on the new primary's timeline %d", seg, st.Timeline)
		}
		for {
			last := queryText(ctx, t, c, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
			if len(last) == len(seg) && last >= seg {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s never archived %s: %s", primary, seg, queryText(context.Background(), t, c, "SELECT pg_stat_archiver::text FROM pg_stat_archiver"))
			case <-time.After(500 * time.Millisecond):
			}
		}
		// The timeline's history file is in the repository.
		history := fmt.Sprintf("%08X.history-", st.Timeline)
		if out := onHost(t, repoHost, "ls "+repoRoot+"/wal"); !strings.Contains(out, history) {
			t.Fatalf("no %s* in the repository's wal/: %s", history, out)
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("point-in-time restore into a new host", func(t *testing.T) {
		before := len(theLab.Hosts())
		host := growLab(ctx, t)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			shrinkLab(ctx, t, before)
		})
		onHost(t, host, `mkdir -p /etc/postgresql-common && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf &&
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null`)
		// The new host gets pgherd and the backup section of a member's
		// configuration, with the repository's key.
		if out, err := exec.Command("docker", "cp", pgherdBin, hostContainer(t, host)+":/usr/local/bin/pgherd").CombinedOutput(); err != nil {
			t.Fatalf("docker cp: %v: %s", err, out)
		}
		onHost(t, host, "install -d -o root -g postgres -m 0750 /etc/pgherd && install -d -o postgres -g postgres -m 2775 /var/run/postgresql")
		for _, f := range []string{"agent.json", "backup-sftp.key", "backup-sftp.known_hosts"} {
			p := "/etc/pgherd/" + f
			content := onHost(t, primary, "cat "+p)
			onHost(t, host, fmt.Sprintf("cat > %s <<'EOF'\n%s\nEOF\nchown postgres:postgres %s && chmod 0600 %s", p, content, p, p))
		}
		const pitr, port = "/var/lib/postgresql/15/pitr", "5499"
		out := onHost(t, host, fmt.Sprintf("runuser -u postgres -- pgherd restore --data-dir %s --target-time '%s'", pitr, target))
		t.Logf("restore on %s:\n%s", host, out)
		// archive_mode off: a restored copy must never archive into the
		// cluster's repository (its new timeline would clash with the
		// cluster's next one).
		onHost(t, host, fmt.Sprintf(`runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D %s -l %s.log -w -t 300 \
			-o "-p %s -c archive_mode=off -c listen_addresses=''" start`, pitr, pitr, port))
		psql := fmt.Sprintf(`runuser -u postgres -- psql -p %s -XAtc `, port)
		for onHost(t, host, psql+`"select pg_is_in_recovery()"`) != "f" {
			select {
			case <-ctx.Done():
				t.Fatalf("the restored server never promoted: %s", onHost(t, host, "tail -20 "+pitr+".log"))
			case <-time.After(500 * time.Millisecond):
			}
		}
		// Exactly the rows committed before the target: 1..100, across
		// the switchover's timeline change since the backup.
		if got := onHost(t, host, psql+`"select count(*), min(id), max(id) from e2e_pitr"`); got != "100|1|100" {
			t.Errorf("restored to %s: count|min|max = %s, want 100|1|100", target, got)
		}
		onHost(t, host, "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "+pitr+" -m fast -w stop")
	})

	t.Run("a member rebuilt from the repository", func(t *testing.T) {
		// create_replica_from_backup on: the agent restores the latest
		// backup instead of copying the primary.
		applyFromBackup(t, dir)
		victim := other(without(all, primary), primary)
		since := onHost(t, victim, "date -u '+%Y-%m-%d %H:%M:%S'")
		onHost(t, victim, "systemctl stop pgherd-agent && mv "+dataDir+" "+dataDir+".e2e-lost && systemctl start pgherd-agent")
		waitSettled(t, all, 3*time.Minute)
		journal := onHost(t, victim, "journalctl -u pgherd-agent --no-pager -o cat --since '"+since+"'")
		if !strings.Contains(journal, "replica created from the repository") || strings.Contains(journal, "cloning from the leader instead") {
			t.Fatalf("%s was not rebuilt from the repository:\n%s", victim, journal)
		}
		// It streams: a row committed now shows there.
		c := primaryConn(ctx, t, primary)
		execSQL(ctx, t, c, "INSERT INTO e2e_pitr VALUES (151)")
		c.Close(context.Background())
		psql := `runuser -u postgres -- psql -XAtc "select count(*) from e2e_pitr"`
		for onHost(t, victim, psql) != "151" {
			select {
			case <-ctx.Done():
				t.Fatalf("%s has %s rows, want 151", victim, onHost(t, victim, psql))
			case <-time.After(300 * time.Millisecond):
			}
		}
		onHost(t, victim, "rm -rf "+dataDir+".e2e-lost")
	})

	t.Run("the whole cluster rolled back to a point in time", func(t *testing.T) {
		primary := waitSettled(t, all, 3*time.Minute)
		host := other(without(all, primary), primary) // a replica becomes the primary
		c := primaryConn(ctx, t, primary)
		execSQL(ctx, t, c, "DROP TABLE IF EXISTS e2e_cluster_pitr",
			"CREATE TABLE e2e_cluster_pitr (id int PRIMARY KEY)",
			"INSERT INTO e2e_cluster_pitr SELECT generate_series(1, 50)")
		target := queryText(ctx, t, c, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'`)
		execSQL(ctx, t, c, "INSERT INTO e2e_cluster_pitr SELECT generate_series(51, 100)")
		c.Close(context.Background())
		args := []string{"restore", "--host", host, "--target-time", target, "-auto-approve", "."}

		// Interrupted while the new primary recovers: the same command
		// run again resumes the restore where it stopped.
		out, errOut, code := interruptAt(t, dir, "replay the archived WAL", args...)
		if code == 0 {
			t.Fatalf("an interrupted restore exited 0:\n%s\n%s", out, errOut)
		}
		if !strings.Contains(errOut, "interrupted") || !strings.Contains(errOut, "run the same command again") {
			t.Fatalf("the interrupted restore does not say how to go on:\n%s", errOut)
		}
		start := time.Now()
		r := pgherd(t, dir, args...)
		if r.code != 0 {
			t.Fatalf("resumed restore: %s", r)
		}
		t.Logf("the resumed restore took %s", time.Since(start).Round(time.Second))
		if !strings.Contains(r.stdout, "resuming restore") || !strings.Contains(r.stdout, "Restore complete") {
			t.Fatalf("the second run did not resume the restore:\n%s", r.stdout)
		}
		rolledBack(ctx, t, dir, host, "e2e_cluster_pitr")

		// The same command once more has nothing to do; the spec has
		// nothing to change either.
		if r := pgherd(t, dir, args...); r.code != 0 || !strings.Contains(r.stdout, "finished already") {
			t.Fatalf("restore run again: %s", r)
		}
		if r := pgherd(t, dir, "plan", "-detailed-exitcode", "."); r.code != 0 {
			t.Errorf("plan after the restore: %s", r)
		}
		// The data directories as they were are kept, moved aside.
		for _, h := range all {
			if out := onHost(t, h, "ls -d "+dataDir+".pgherd-before-restore-* 2>/dev/null || true"); out == "" {
				t.Errorf("%s: no data directory moved aside", h)
			}
			onHost(t, h, "rm -rf "+dataDir+".pgherd-before-restore-*")
		}
	})

	t.Run("the whole cluster rolled back to a WAL location, members rebuilt from the repository", func(t *testing.T) {
		// create_replica_from_backup: the restore takes a full backup of
		// the new timeline, which the other members restore. The primary
		// stays the primary, restored over its own data directory.
		fromBackup := applyFromBackup(t, dir)
		primary := waitSettled(t, all, 3*time.Minute)
		c := primaryConn(ctx, t, primary)
		execSQL(ctx, t, c, "DROP TABLE IF EXISTS e2e_cluster_lsn",
			"CREATE TABLE e2e_cluster_lsn (id int PRIMARY KEY)",
			"INSERT INTO e2e_cluster_lsn SELECT generate_series(1, 50)")
		target := queryText(ctx, t, c, "SELECT pg_current_wal_lsn()::text")
		execSQL(ctx, t, c, "INSERT INTO e2e_cluster_lsn SELECT generate_series(51, 100)")
		c.Close(context.Background())
		since := onHost(t, primary, "date -u '+%Y-%m-%d %H:%M:%S'")

		start := time.Now()
		r := pgherd(t, fromBackup, "restore", "--host", primary, "--target-lsn", target, "--delta", "-auto-approve", ".")
		if r.code != 0 {
			t.Fatalf("restore: %s", r)
		}
		t.Logf("the restore took %s", time.Since(start).Round(time.Second))
		if !strings.Contains(r.stdout, "take a full backup") || !strings.Contains(r.stdout, "(delta)") {
			t.Fatalf("the restore did not take a backup, or did not restore over the data directory:\n%s", r.stdout)
		}
		rolledBack(ctx, t, fromBackup, primary, "e2e_cluster_lsn")
		for _, h := range without(all, primary) {
			journal := onHost(t, h, "journalctl -u pgherd-agent --no-pager -o cat --since '"+since+"'")
			if !strings.Contains(journal, "replica created from the repository") {
				t.Errorf("%s was not rebuilt from the repository:\n%s", h, journal)
			}
			onHost(t, h, "rm -rf "+dataDir+".pgherd-before-restore-*")
		}
	})
}

// rolledBack checks a cluster restored to the point where table held ids
// 1 to 50: primary leads a healthy cluster, the VIP reaches it, the table
// holds exactly those rows, and a row written now reaches every replica.
func rolledBack(ctx context.Context, t *testing.T, dir, primary, table string) {
	t.Helper()
	all := hostNames()
	if got := waitSettled(t, all, 2*time.Minute); got != primary {
		t.Fatalf("the primary is %s, want %s", got, primary)
	}
	waitHealthy(t, dir, 2*time.Minute)
	c := primaryConn(ctx, t, primary)
	defer c.Close(context.Background())
	if got := queryText(ctx, t, c, "SELECT count(*) || '|' || min(id) || '|' || max(id) FROM "+table); got != "50|1|50" {
		t.Fatalf("%s after the restore: count|min|max = %s, want 50|1|50", table, got)
	}
	execSQL(ctx, t, c, "INSERT INTO "+table+" VALUES (101)")
	psql := `runuser -u postgres -- psql -XAtc "select count(*) from ` + table + `"`
	for _, h := range without(all, primary) {
		for onHost(t, h, psql) != "51" {
			select {
			case <-ctx.Done():
				t.Fatalf("%s has %s rows of %s, want 51", h, onHost(t, h, psql), table)
			case <-time.After(300 * time.Millisecond):
			}
		}
	}
}

// applyFromBackup applies the spec of dir with create_replica_from_backup
// on (the agents restore the latest backup instead of copying the
// primary) and returns its directory; the spec of dir is applied again
// when the test ends.
func applyFromBackup(t *testing.T, dir string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "    compression_level     = 3\n"
	if !strings.Contains(string(src), anchor) {
		t.Fatalf("examples/ha/main.hcl no longer contains %q", anchor)
	}
	fromBackup := writeSpec(t, map[string]string{
		"lab.hcl":  labSSH(theLab.KnownHostsFile()),
		"main.hcl": strings.Replace(string(src), anchor, anchor+"    create_replica_from_backup = true\n", 1),
	})
	if r := pgherd(t, fromBackup, "apply", "-auto-approve", "."); r.code != 0 {
		t.Fatalf("apply with create_replica_from_backup: %s", r)
	}
	t.Cleanup(func() {
		if r := pgherd(t, dir, "apply", "-auto-approve", "."); r.code != 0 {
			t.Errorf("apply of the example again: %s", r)
		}
	})
	return fromBackup
}

// interruptAt runs pgherd with args in dir, sends it SIGINT a second after
// it starts the step that says what ("[6/11] ... what ..."), and returns what it printed and its
// exit code.
func interruptAt(t *testing.T, dir, what string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	// SIGINT a second after the step starts: once it is under way on the
	// host.
	r, err := interrupt.Run(pgherdBin, dir, func(line string) bool {
		return strings.HasPrefix(line, "[") && strings.Contains(line, what)
	}, time.Second, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pgherd %s, interrupted at %q:\n%s\n--- stderr\n%s", strings.Join(args, " "), what, r.Stdout, r.Stderr)
	if !r.Interrupted {
		t.Fatalf("never saw %q", what)
	}
	return r.Stdout, r.Stderr, r.Code
}

// primaryConn connects through the VIP's primary port and checks that it
// reached primary out of recovery (HAProxy follows a switchover within
// its check interval).
func primaryConn(ctx context.Context, t *testing.T, primary string) *pgx.Conn {
	t.Helper()
	want := hostAddr(t, primary)
	for {
		c := pgConnect(ctx, t, haPrimaryPort)
		var addr string
		var rec bool
		err := c.QueryRow(ctx, "SELECT host(inet_server_addr()), pg_is_in_recovery()").Scan(&addr, &rec)
		if err == nil && addr == want && !rec {
			return c
		}
		c.Close(context.Background())
		select {
		case <-ctx.Done():
			t.Fatalf("port %d never reached the primary %s: got %s, in recovery %v, err %v", haPrimaryPort, primary, addr, rec, err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func execSQL(ctx context.Context, t *testing.T, c *pgx.Conn, sqls ...string) {
	t.Helper()
	for _, q := range sqls {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func queryText(ctx context.Context, t *testing.T, c *pgx.Conn, q string) string {
	t.Helper()
	var s string
	if err := c.QueryRow(ctx, q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

func hostContainer(t *testing.T, name string) string {
	t.Helper()
	for _, h := range theLab.Hosts() {
		if h.Name == name {
			return h.Container
		}
	}
	t.Fatalf("no host %s", name)
	return ""
}
