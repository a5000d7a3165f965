package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/agent/backup/backuptest"
	"github.com/pgherd/pgherd/agent/pg"
)

// pgEnv is a directory postgres can traverse, with this test binary
// copied in as the archive/restore helper and a repository postgres can
// write to.
type pgEnv struct {
	*backuptest.PGDir
	helper, repoDir, pass string
}

func newPGEnv(t testing.TB) *pgEnv {
	t.Helper()
	d := backuptest.NewPGDir(t)
	return &pgEnv{PGDir: d, helper: d.CopySelf(t, "helper"), repoDir: d.Mkdir(t, "repo"), pass: "test passphrase"}
}

// command is an archive_command or restore_command running the helper.
func (e *pgEnv) command(verb, spool string, args string) string {
	return fmt.Sprintf("PGHERD_BACKUP_HELPER=1 PGHERD_REPO=%s PGHERD_PASS='%s' PGHERD_SPOOL=%s %s %s %s",
		e.repoDir, e.pass, spool, e.helper, verb, args)
}

// restoreAndStart restores into a new (or, delta, the same) instance and
// starts it with archiving off, so that the copies do not push into the
// repository the test reads.
func (e *pgEnv) restoreAndStart(t *testing.T, st *Store, i *pg.Instance, opts RestoreOptions) *RestoreResult {
	t.Helper()
	opts.DataDir = i.DataDir
	spool := e.Mkdir(t, i.Name+"-spool")
	opts.RestoreCommand = e.command("wal-fetch", spool, "%f %p")
	opts.Parallel = 2
	if !opts.Delta {
		os.MkdirAll(i.DataDir, 0o700)
		os.Chown(i.DataDir, e.UID, e.GID)
	}
	res, err := st.Restore(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	backuptest.StartRestored(t, i)
	return res
}

func count(t *testing.T, i *pg.Instance, sql string) int64 {
	t.Helper()
	c := backuptest.Connect(t, i)
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
	os.Chown(filepath.Join(e.repoDir, ConfigKey), e.UID, e.GID)
	p := e.Instance(t, "primary")
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
			"archive_command": e.command("wal-push", e.Mkdir(t, "push-spool"), "%p"),
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		c = backuptest.Connect(outer, p)
		backuptest.Exec(t, c, "CREATE TABLE t (id int PRIMARY KEY, v text)")
		backuptest.Exec(t, c, "INSERT INTO t SELECT g, 'initial' FROM generate_series(1, 1000) g")
		backuptest.Exec(t, c, "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g")
		backuptest.Exec(t, c, "CREATE TABLE w (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
		// Hint bits and the visibility map set now, not after the full
		// backup (with checksums, setting them changes every page).
		backuptest.Exec(t, c, "VACUUM ANALYZE")
		backuptest.SwitchAndArchive(t, c)
		wal, err := st.walObjects(ctx, "wal/")
		if err != nil || len(wal) == 0 {
			t.Fatalf("archived WAL = %v, %v", wal, err)
		}
	})
	step("full backup while writing", func(t *testing.T) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			wc, err := pgx.Connect(ctx, backuptest.ConnString(p))
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
		full, err = st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: backuptest.ConnString(p), Type: Full, Parallel: 2})
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
		backuptest.Exec(t, c, "INSERT INTO t SELECT g, 'after full' FROM generate_series(1001, 2000) g")
		backuptest.Exec(t, c, "UPDATE big SET v = 'changed' WHERE id % 1000 = 0")
		backuptest.Exec(t, c, "CHECKPOINT")
		incr, err = st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: backuptest.ConnString(p), Type: Incr, Parallel: 2})
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
		backuptest.Exec(t, c, "INSERT INTO t VALUES (5001, 'before target')")
		if err := c.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&target); err != nil {
			t.Fatal(err)
		}
		rowsAtTarget = count(t, p, "SELECT count(*) FROM t")
		time.Sleep(10 * time.Millisecond)
		backuptest.Exec(t, c, "INSERT INTO t VALUES (5002, 'after target')")
		rowsAtEnd = count(t, p, "SELECT count(*) FROM t")
		backuptest.SwitchAndArchive(t, c)
	})
	step("restore latest", func(t *testing.T) {
		r := e.Instance(t, "latest")
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
		pitr = e.Instance(outer, "pitr")
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
		r := e.Instance(t, "finished")
		os.MkdirAll(r.DataDir, 0o700)
		os.Chown(r.DataDir, e.UID, e.GID)
		_, err := st.Restore(ctx, RestoreOptions{DataDir: r.DataDir, BackupID: full.ID, TargetTime: target, TargetTimeline: 1,
			RestoreCommand: e.command("wal-fetch", e.Mkdir(t, "finished-spool"), "%f %p")})
		if err != nil {
			t.Fatal(err)
		}
		backuptest.ArchiveOff(t, r)
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
		if got := backuptest.QueryString(t, backuptest.Connect(t, r), "SELECT pg_is_in_recovery()::text"); got != "false" {
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
		dir := e.Mkdir(t, "corrupt")
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
		second, err := st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: backuptest.ConnString(p), Type: Full})
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
	os.Chown(filepath.Join(e.repoDir, ConfigKey), e.UID, e.GID)
	p := e.Instance(t, "primary")
	if err := p.InitDB(ctx, pg.InitOptions{AuthLocal: "trust", AuthHost: "trust", Parameters: map[string]string{
		"wal_level": "replica", "archive_mode": "on", "fsync": "off", "shared_buffers": "16MB",
		"archive_command": e.command("wal-push", "", "%p"),
	}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c := backuptest.Connect(t, p)
	backuptest.Exec(t, c, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 5000) g")
	up := pg.ConnInfo{Host: "127.0.0.1", Port: p.Port, User: "postgres"}
	s := e.Instance(t, "standby")
	if err := s.Clone(ctx, up, pg.CloneOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfigureStandby(ctx, up, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := st.Backup(ctx, BackupOptions{DataDir: s.DataDir, Conn: backuptest.ConnString(s), PrimaryConn: backuptest.ConnString(p), Type: Full})
	if err != nil {
		t.Fatal(err)
	}
	if !m.FromStandby {
		t.Fatal("manifest does not say the backup came from a standby")
	}
	backuptest.Exec(t, c, "INSERT INTO t SELECT g FROM generate_series(5001, 6000) g")
	backuptest.SwitchAndArchive(t, c)
	r := e.Instance(t, "restored")
	e.restoreAndStart(t, st, r, RestoreOptions{})
	if n := count(t, r, "SELECT count(*) FROM t"); n != 6000 {
		t.Fatalf("rows = %d, want 6000", n)
	}
}
