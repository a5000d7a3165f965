package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgherd/pgherd/agent/pg"
)

const pgBinDir = "/usr/lib/postgresql/15/bin"

// pgEnv is a directory every user can traverse, with this test binary
// copied in as the archive/restore helper and a repository postgres can
// write to.
type pgEnv struct {
	base, helper, repoDir, pass string
	uid, gid                    int
}

func newPGEnv(t testing.TB) *pgEnv {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBinDir, "postgres")); err != nil {
		t.Skipf("PostgreSQL 15 is not installed (apt-get install postgresql-15): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("the PostgreSQL tests run as root (binaries run as postgres)")
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("no postgres user: %v", err)
	}
	e := &pgEnv{pass: "test passphrase"}
	e.uid, _ = strconv.Atoi(u.Uid)
	e.gid, _ = strconv.Atoi(u.Gid)
	e.base, err = os.MkdirTemp("", "pgherd-backup-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(e.base, 0o755)
	t.Cleanup(func() { os.RemoveAll(e.base) })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e.helper = filepath.Join(e.base, "helper")
	copyFileTo(t, self, e.helper, 0o755)
	e.repoDir = e.mkdir(t, "repo")
	return e
}

func copyFileTo(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// mkdir makes a directory owned by postgres.
func (e *pgEnv) mkdir(t testing.TB, name string) string {
	p := filepath.Join(e.base, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, e.uid, e.gid)
	return p
}

// command is an archive_command or restore_command running the helper.
func (e *pgEnv) command(verb, spool string, args string) string {
	return fmt.Sprintf("PGHERD_BACKUP_HELPER=1 PGHERD_REPO=%s PGHERD_PASS='%s' PGHERD_SPOOL=%s %s %s %s",
		e.repoDir, e.pass, spool, e.helper, verb, args)
}

func freeTCPPort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (e *pgEnv) instance(t testing.TB, name string) *pg.Instance {
	dir := e.mkdir(t, name)
	i := &pg.Instance{Name: name, BinDir: pgBinDir, DataDir: filepath.Join(dir, "data"), SocketDir: dir,
		Port: freeTCPPort(t), ListenAddresses: "127.0.0.1", User: "postgres",
		Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	t.Cleanup(func() { i.Stop(context.Background(), pg.Immediate) })
	return i
}

func connString(i *pg.Instance) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", i.SocketDir, i.Port)
}

func connect(t testing.TB, i *pg.Instance) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), connString(i))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func mustExec(t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryString(t testing.TB, c *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := c.QueryRow(t.Context(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// waitArchivedUpTo switches WAL and waits until the segment holding
// everything so far is archived.
func waitArchivedUpTo(t *testing.T, c *pgx.Conn) {
	t.Helper()
	seg := queryString(t, c, "SELECT pg_walfile_name(pg_switch_wal())")
	deadline := time.Now().Add(60 * time.Second)
	for {
		last := queryString(t, c, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if last >= seg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not archived; last archived %q", seg, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restoreAndStart restores into a new (or, delta, the same) instance and
// starts it with archiving off, so that the copies do not push into the
// repository the test reads.
func (e *pgEnv) restoreAndStart(t *testing.T, st *Store, i *pg.Instance, opts RestoreOptions) *RestoreResult {
	t.Helper()
	opts.DataDir = i.DataDir
	spool := e.mkdir(t, i.Name+"-spool")
	opts.RestoreCommand = e.command("wal-fetch", spool, "%f %p")
	opts.Parallel = 2
	if !opts.Delta {
		os.MkdirAll(i.DataDir, 0o700)
		os.Chown(i.DataDir, e.uid, e.gid)
	}
	res, err := st.Restore(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	archiveOff(t, i)
	if err := i.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Wait for the end of recovery (promotion).
	c := connect(t, i)
	deadline := time.Now().Add(60 * time.Second)
	for queryString(t, c, "SELECT pg_is_in_recovery()::text") == "true" {
		if time.Now().After(deadline) {
			t.Fatal("restored server did not finish recovery")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return res
}

// archiveOff turns archiving off in a restored copy, so that it does not
// push into the repository the test reads.
func archiveOff(t *testing.T, i *pg.Instance) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(i.DataDir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "archive_mode = off")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, i *pg.Instance, sql string) int64 {
	t.Helper()
	c := connect(t, i)
	var n int64
	if err := c.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	c.Close(t.Context())
	return n
}

// TestPostgres drives a real PostgreSQL 15 through archiving, a full backup
// taken while writing, an incremental one, restores of each, point-in-time
// recovery, delta restore, verification, corruption and expiry. Steps
// depend on each other and stop at the first failure.
func TestPostgres(t *testing.T) {
	e := newPGEnv(t)
	outer := t
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	repo, err := NewLocal(e.repoDir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Init(ctx, repo, Options{Passphrase: e.pass, ScryptN: 1 << 12, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(e.repoDir, ConfigKey), e.uid, e.gid)
	p := e.instance(t, "primary")
	var c *pgx.Conn
	var full, incr *Manifest
	var rowsAtIncr, rowsAtTarget, rowsAtEnd int64
	var target time.Time

	step := func(name string, fn func(t *testing.T)) {
		if !t.Run(name, fn) {
			t.FailNow()
		}
	}
	step("archive", func(t *testing.T) {
		err := p.InitDB(ctx, pg.InitOptions{AuthLocal: "trust", AuthHost: "trust", Parameters: map[string]string{
			"wal_level": "replica", "archive_mode": "on", "fsync": "off", "shared_buffers": "16MB",
			"archive_command": e.command("wal-push", e.mkdir(t, "push-spool"), "%p"),
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		c = connect(outer, p)
		mustExec(t, c, "CREATE TABLE t (id int PRIMARY KEY, v text)")
		mustExec(t, c, "INSERT INTO t SELECT g, 'initial' FROM generate_series(1, 1000) g")
		mustExec(t, c, "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g")
		mustExec(t, c, "CREATE TABLE w (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
		// Hint bits and the visibility map set now, not after the full
		// backup (with checksums, setting them changes every page).
		mustExec(t, c, "VACUUM ANALYZE")
		waitArchivedUpTo(t, c)
		wal, err := st.walObjects(ctx, "wal/")
		if err != nil || len(wal) == 0 {
			t.Fatalf("archived WAL = %v, %v", wal, err)
		}
	})
	step("full backup while writing", func(t *testing.T) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			wc, err := pgx.Connect(ctx, connString(p))
			if err != nil {
				return
			}
			defer wc.Close(context.Background())
			for {
				select {
				case <-stop:
					return
				default:
				}
				wc.Exec(ctx, "INSERT INTO w DEFAULT VALUES")
			}
		})
		full, err = st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: connString(p), Type: Full, Parallel: 2})
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if full.Type != Full || full.Timeline != 1 || full.StopLSN <= full.StartLSN || full.StartWAL == "" {
			t.Fatalf("manifest = %+v", full.info())
		}
		for _, f := range full.Files {
			if strings.HasPrefix(f.Path, "pg_wal/") || f.Path == "postmaster.pid" {
				t.Errorf("excluded file backed up: %s", f.Path)
			}
		}
	})
	step("incremental backup", func(t *testing.T) {
		mustExec(t, c, "INSERT INTO t SELECT g, 'after full' FROM generate_series(1001, 2000) g")
		mustExec(t, c, "UPDATE big SET v = 'changed' WHERE id % 1000 = 0")
		mustExec(t, c, "CHECKPOINT")
		incr, err = st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: connString(p), Type: Incr, Parallel: 2})
		if err != nil {
			t.Fatal(err)
		}
		rowsAtIncr = count(t, p, "SELECT count(*) FROM t")
		if incr.Type != Incr || incr.Prior != full.ID || !strings.HasPrefix(incr.ID, full.ID+"_") {
			t.Fatalf("incr = %+v", incr.info())
		}
		var refs, deltas int
		for _, f := range incr.Files {
			if f.Ref != "" {
				refs++
			}
			if f.DeltaBase != "" {
				deltas++
			}
		}
		if refs == 0 || deltas == 0 || incr.StoredSize*3 > full.StoredSize {
			t.Fatalf("incr: %d refs, %d block deltas, stored %d vs full %d", refs, deltas, incr.StoredSize, full.StoredSize)
		}
		t.Logf("full %d files, %d bytes stored; incr %d refs, %d deltas, %d bytes stored",
			len(full.Files), full.StoredSize, refs, deltas, incr.StoredSize)
	})
	step("commits around a target time", func(t *testing.T) {
		mustExec(t, c, "INSERT INTO t VALUES (5001, 'before target')")
		if err := c.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&target); err != nil {
			t.Fatal(err)
		}
		rowsAtTarget = count(t, p, "SELECT count(*) FROM t")
		time.Sleep(10 * time.Millisecond)
		mustExec(t, c, "INSERT INTO t VALUES (5002, 'after target')")
		rowsAtEnd = count(t, p, "SELECT count(*) FROM t")
		waitArchivedUpTo(t, c)
	})
	step("restore latest", func(t *testing.T) {
		r := e.instance(t, "latest")
		res := e.restoreAndStart(t, st, r, RestoreOptions{})
		if res.BackupID != incr.ID {
			t.Fatalf("restored %s, want the latest %s", res.BackupID, incr.ID)
		}
		if n := count(t, r, "SELECT count(*) FROM t"); n != rowsAtEnd {
			t.Fatalf("rows = %d, want %d", n, rowsAtEnd)
		}
		if n := count(t, r, "SELECT count(*) FROM big WHERE v = 'changed'"); n != 200 {
			t.Fatalf("changed rows in big = %d, want 200", n)
		}
	})
	var pitr *pg.Instance
	step("point in time from the full backup", func(t *testing.T) {
		pitr = e.instance(outer, "pitr")
		e.restoreAndStart(t, st, pitr, RestoreOptions{BackupID: full.ID, TargetTime: target})
		if n := count(t, pitr, "SELECT count(*) FROM t"); n != rowsAtTarget {
			t.Fatalf("rows = %d, want %d", n, rowsAtTarget)
		}
		if n := count(t, pitr, "SELECT count(*) FROM t WHERE id = 5002"); n != 0 {
			t.Fatal("row committed after the target is there")
		}
	})
	step("point in time, recovered before the server starts for good", func(t *testing.T) {
		// What pgherd restore --host does on the future primary: restore,
		// recover privately, clear the recovery settings, hand over a
		// primary shut down cleanly.
		r := e.instance(t, "finished")
		os.MkdirAll(r.DataDir, 0o700)
		os.Chown(r.DataDir, e.uid, e.gid)
		_, err := st.Restore(ctx, RestoreOptions{DataDir: r.DataDir, BackupID: full.ID, TargetTime: target, TargetTimeline: 1,
			RestoreCommand: e.command("wal-fetch", e.mkdir(t, "finished-spool"), "%f %p")})
		if err != nil {
			t.Fatal(err)
		}
		archiveOff(t, r)
		res, err := r.FinishRecovery(ctx, pg.RecoveryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Ran || res.TimeLine < 2 || res.SystemID == 0 {
			t.Fatalf("FinishRecovery = %+v, want a run ending on a new timeline", res)
		}
		if _, err := os.Stat(filepath.Join(r.DataDir, "recovery.signal")); err == nil {
			t.Fatal("recovery.signal is still there")
		}
		if changed, err := ClearRecoverySettings(r.DataDir); err != nil || !changed {
			t.Fatalf("ClearRecoverySettings = %v, %v", changed, err)
		}
		again, err := r.FinishRecovery(ctx, pg.RecoveryOptions{})
		if err != nil || again.Ran || again.TimeLine != res.TimeLine {
			t.Fatalf("second FinishRecovery = %+v, %v; want the same timeline, nothing run", again, err)
		}
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(t, r, "SELECT count(*) FROM t"); n != rowsAtTarget {
			t.Fatalf("rows = %d, want %d", n, rowsAtTarget)
		}
		if got := queryString(t, connect(t, r), "SELECT pg_is_in_recovery()::text"); got != "false" {
			t.Fatalf("in recovery = %s", got)
		}
		if _, err := r.FinishRecovery(ctx, pg.RecoveryOptions{}); !errors.Is(err, pg.ErrRunning) {
			t.Fatalf("FinishRecovery of a running server: %v, want ErrRunning", err)
		}
	})
	step("delta restore of the incremental", func(t *testing.T) {
		if err := pitr.Stop(ctx, pg.Fast); err != nil {
			t.Fatal(err)
		}
		res := e.restoreAndStart(t, st, pitr, RestoreOptions{BackupID: incr.ID, TargetLSN: incr.StopLSN, Delta: true})
		if res.Skipped == 0 || res.Written == 0 {
			t.Fatalf("delta restore: %+v", res)
		}
		if n := count(t, pitr, "SELECT count(*) FROM t"); n != rowsAtIncr {
			t.Fatalf("rows = %d, want %d", n, rowsAtIncr)
		}
	})
	step("verify", func(t *testing.T) {
		rep, err := st.Verify(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Backups != 2 || rep.Files == 0 || rep.WAL == 0 {
			t.Fatalf("report = %+v", rep)
		}
	})
	step("wrong key", func(t *testing.T) {
		if _, err := Open(ctx, repo, Options{Passphrase: "not it"}); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("open with a wrong passphrase: %v", err)
		}
	})
	step("corruption is detected", func(t *testing.T) {
		var victim ManifestFile
		for _, f := range full.Files {
			if f.StoredSize > victim.StoredSize {
				victim = f
			}
		}
		pth := filepath.Join(e.repoDir, victim.Key)
		b, err := os.ReadFile(pth)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(pth, b[:len(b)-100], 0o600) // truncated
		if _, err := st.Verify(ctx, 2); !errors.Is(err, ErrVerifyFailed) {
			t.Fatalf("verify of a truncated object: %v", err)
		}
		dir := e.mkdir(t, "corrupt")
		_, err = st.Restore(ctx, RestoreOptions{BackupID: full.ID, DataDir: filepath.Join(dir, "data")})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("restore of a corrupted backup: %v, want ErrCorrupt", err)
		}
	})
	step("expire", func(t *testing.T) {
		// Leftovers of an interrupted backup go with the next backup.
		orphan := "backup/20200101-000000F/data/base/1/1259" + st.suffix()
		if err := repo.Put(ctx, orphan, strings.NewReader("partial")); err != nil {
			t.Fatal(err)
		}
		second, err := st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: connString(p), Type: Full})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Stat(ctx, orphan); !errors.Is(err, ErrNotFound) {
			t.Fatalf("interrupted backup's object after the next backup: %v", err)
		}
		res, err := st.Expire(ctx, Retention{Full: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Backups) != 2 || res.WAL == 0 {
			t.Fatalf("expired %+v", res)
		}
		list, err := st.List(ctx)
		if err != nil || len(list) != 1 || list[0].ID != second.ID {
			t.Fatalf("list after expire = %+v, %v", list, err)
		}
		// The corrupted backup went; what is left verifies.
		if _, err := st.Verify(ctx, 2); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBackupFromStandby takes the backup from a streaming standby (the
// default in pgherd) and restores it.
func TestBackupFromStandby(t *testing.T) {
	e := newPGEnv(t)
	ctx := t.Context()
	repo, err := NewLocal(e.repoDir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Init(ctx, repo, Options{Passphrase: e.pass, ScryptN: 1 << 12})
	if err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(e.repoDir, ConfigKey), e.uid, e.gid)
	p := e.instance(t, "primary")
	if err := p.InitDB(ctx, pg.InitOptions{AuthLocal: "trust", AuthHost: "trust", Parameters: map[string]string{
		"wal_level": "replica", "archive_mode": "on", "fsync": "off", "shared_buffers": "16MB",
		"archive_command": e.command("wal-push", "", "%p"),
	}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c := connect(t, p)
	mustExec(t, c, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 5000) g")
	up := pg.ConnInfo{Host: "127.0.0.1", Port: p.Port, User: "postgres"}
	s := e.instance(t, "standby")
	if err := s.Clone(ctx, up, pg.CloneOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfigureStandby(ctx, up, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := st.Backup(ctx, BackupOptions{DataDir: s.DataDir, Conn: connString(s), PrimaryConn: connString(p), Type: Full})
	if err != nil {
		t.Fatal(err)
	}
	if !m.FromStandby {
		t.Fatal("manifest does not say the backup came from a standby")
	}
	mustExec(t, c, "INSERT INTO t SELECT g FROM generate_series(5001, 6000) g")
	waitArchivedUpTo(t, c)
	r := e.instance(t, "restored")
	e.restoreAndStart(t, st, r, RestoreOptions{})
	if n := count(t, r, "SELECT count(*) FROM t"); n != 6000 {
		t.Fatalf("rows = %d, want 6000", n)
	}
}
