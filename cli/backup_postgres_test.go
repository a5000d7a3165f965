package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/agent/pg"
)

const pgBinDir = "/usr/lib/postgresql/15/bin"

// pgherdRun runs the command line in this process.
func pgherdRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(t.Context(), nil, args, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

// TestBackupPostgres archives a real PostgreSQL 15 with `pgherd wal-push`,
// backs it up with `pgherd backup`, and restores it with `pgherd restore`
// into a new data directory that replays the archive with `pgherd
// wal-fetch`: the restored server has every committed row.
func TestBackupPostgres(t *testing.T) {
	e := newPGBackupEnv(t)
	p := e.instance(t, "primary")
	repo := e.mkdir(t, "repo")
	config := e.config(t, p, map[string]any{
		"repository":        map[string]string{"type": "path", "path": repo},
		"compression_level": 1, "parallel": 2, "spool_dir": e.mkdir(t, "spool"),
	})
	exe, uid, gid := e.exe, e.uid, e.gid

	run, step := mustRun, steps(t)
	outer := t
	var c *pgx.Conn
	step("init and archive", func(t *testing.T) {
		run(t, "backup", "init", "--config", config)
		os.Chown(filepath.Join(repo, "config.json"), uid, gid)
		c = e.startArchiving(t, outer, p, config)
	})
	step("backup", func(t *testing.T) {
		// The only server is a primary: with the default (from a
		// standby) backup skips it.
		if code, _, errs := pgherdRun(t, "backup", "--config", config); code != exitSkipped || !strings.Contains(errs, "primary") {
			t.Fatalf("backup on a primary with from = standby: exit %d, %s", code, errs)
		}
		out := run(t, "backup", "--config", config, "--from", "primary", "--type", "incr", "--parallel", "2")
		if !strings.Contains(out, "(full) taken") {
			t.Fatalf("an incremental backup without a prior one is a full one: %s", out)
		}
	})
	step("backup --expire applies the retention", func(t *testing.T) {
		// The default retention keeps 2 full backups: the third expires
		// the first, and WAL only it needed.
		var before []backupJSON
		if err := json.Unmarshal([]byte(run(t, "backup", "list", "--config", config, "--json")), &before); err != nil || len(before) != 1 {
			t.Fatalf("list before: %v %+v", err, before)
		}
		if out := run(t, "backup", "--config", config, "--from", "primary", "--expire"); !strings.Contains(out, "Expired 0 backups") {
			t.Fatalf("a second full backup with 2 kept: want nothing expired, got %s", out)
		}
		out := run(t, "backup", "--config", config, "--from", "primary", "--expire")
		if !strings.Contains(out, "Expired backup "+before[0].ID+".") || !strings.Contains(out, "Expired 1 backups") {
			t.Fatalf("a third full backup with 2 kept: want %s expired, got %s", before[0].ID, out)
		}
	})
	step("list", func(t *testing.T) {
		var list []backupJSON
		if err := json.Unmarshal([]byte(run(t, "backup", "list", "--config", config, "--json")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Type != "full" || list[0].StartWAL == "" || list[0].StoredSize == 0 {
			t.Fatalf("list = %+v", list)
		}
	})
	step("writes after the backup are archived", func(t *testing.T) {
		pgExec(t, c, "INSERT INTO t SELECT g, 'after backup' FROM generate_series(1001, 1500) g")
		switchAndArchive(t, c)
		run(t, "backup", "verify", "--config", config)
	})
	step("restore refuses a running server", func(t *testing.T) {
		code, _, errs := pgherdRun(t, "restore", "--config", config, "--data-dir", p.DataDir)
		if code != 1 || !strings.Contains(errs, "postmaster.pid") {
			t.Fatalf("exit %d, %s", code, errs)
		}
	})
	step("restore", func(t *testing.T) {
		r := e.instance(t, "restored")
		out := run(t, "restore", "--config", config, "--data-dir", r.DataDir,
			"--restore-command", fmt.Sprintf(`%s wal-fetch --config %s %%f "%%p"`, exe, config))
		if !strings.Contains(out, "Next: start PostgreSQL") {
			t.Errorf("restore does not say what to do next:\n%s", out)
		}
		if n := pgString(t, recovered(t, r), "SELECT count(*)::text FROM t"); n != "1500" {
			t.Fatalf("restored rows = %s, want 1500", n)
		}
	})
}

// recovered starts the restored server r, not archiving (the copy must
// not archive into the repositories the test reads), waits until its
// recovery is over, and connects to it.
func recovered(t *testing.T, r *pg.Instance) *pgx.Conn {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(r.DataDir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "archive_mode = off")
	f.Close()
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	rc := pgConnect(t, r)
	deadline := time.Now().Add(60 * time.Second)
	for pgString(t, rc, "SELECT pg_is_in_recovery()::text") == "true" {
		if time.Now().After(deadline) {
			t.Fatal("the restored server did not finish recovery")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return rc
}

// switchAndArchive switches WAL on c's server and waits until the segment
// it ended is archived.
func switchAndArchive(t *testing.T, c *pgx.Conn) {
	t.Helper()
	seg := pgString(t, c, "SELECT pg_walfile_name(pg_switch_wal())")
	deadline := time.Now().Add(60 * time.Second)
	for pgString(t, c, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < seg {
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not archived", seg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pgBackupEnv is a directory postgres can traverse, holding this test
// binary as "pgherd" (TestMain runs the command line under that name), the
// configurations and the repositories.
type pgBackupEnv struct {
	base, exe string
	uid, gid  int
	log       *slog.Logger
}

// newPGBackupEnv makes the directory, or skips the test where PostgreSQL 15
// cannot run.
func newPGBackupEnv(t *testing.T) *pgBackupEnv {
	if _, err := os.Stat(filepath.Join(pgBinDir, "postgres")); err != nil {
		t.Skipf("PostgreSQL 15 is not installed (apt-get install postgresql-15): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("the PostgreSQL test runs as root (PostgreSQL runs as postgres)")
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("no postgres user: %v", err)
	}
	e := &pgBackupEnv{log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	e.uid, _ = strconv.Atoi(u.Uid)
	e.gid, _ = strconv.Atoi(u.Gid)
	if e.base, err = os.MkdirTemp("", "pgherd-cli-backup-"); err != nil {
		t.Fatal(err)
	}
	os.Chmod(e.base, 0o755)
	t.Cleanup(func() { os.RemoveAll(e.base) })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e.exe = filepath.Join(e.base, "pgherd")
	copyFile(t, self, e.exe, 0o755)
	return e
}

// mkdir makes a directory of postgres's.
func (e *pgBackupEnv) mkdir(t *testing.T, name string) string {
	p := filepath.Join(e.base, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, e.uid, e.gid)
	return p
}

// instance is a PostgreSQL server (not yet created) in its own directory.
func (e *pgBackupEnv) instance(t *testing.T, name string) *pg.Instance {
	dir := e.mkdir(t, name)
	i := &pg.Instance{Name: name, BinDir: pgBinDir, DataDir: filepath.Join(dir, "data"), SocketDir: dir,
		Port: freePort(t), ListenAddresses: "127.0.0.1", User: "postgres", Log: e.log}
	t.Cleanup(func() { i.Stop(context.Background(), pg.Immediate) })
	return i
}

// config writes the agent configuration of the server p with this backup
// section, readable by postgres, and returns its path.
func (e *pgBackupEnv) config(t *testing.T, p *pg.Instance, backup map[string]any) string {
	config := filepath.Join(e.base, "agent-"+p.Name+".json")
	writeJSON(t, config, map[string]any{
		"cluster": "demo", "name": p.Name, "address": "127.0.0.1",
		"postgres": map[string]any{
			"bin_dir": pgBinDir, "data_dir": p.DataDir, "port": p.Port, "socket_dir": p.SocketDir, "os_user": "postgres",
			"superuser":   map[string]string{"user": "postgres", "password": "unused"},
			"replication": map[string]string{"user": "replicator", "password": "unused"},
		},
		"etcd":    map[string]any{"endpoints": []string{"http://127.0.0.1:1"}},
		"ha":      map[string]string{"ttl": "10s", "loop_wait": "1s"},
		"run_dir": e.mkdir(t, "run-"+p.Name),
		"backup":  backup,
	})
	os.Chown(config, e.uid, e.gid)
	return config
}

// startArchiving creates and starts the server p, archiving with `pgherd
// wal-push` of config, with a table t of 1000 rows, and connects to it
// until outer ends.
func (e *pgBackupEnv) startArchiving(t, outer *testing.T, p *pg.Instance, config string) *pgx.Conn {
	t.Helper()
	err := p.InitDB(t.Context(), pg.InitOptions{AuthLocal: "trust", AuthHost: "trust", Parameters: map[string]string{
		"wal_level": "replica", "archive_mode": "on", "fsync": "off", "shared_buffers": "16MB",
		"archive_command": fmt.Sprintf("%s wal-push --config %s %%p", e.exe, config),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := pgConnect(outer, p)
	pgExec(t, c, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	pgExec(t, c, "INSERT INTO t SELECT g, 'before backup' FROM generate_series(1, 1000) g")
	return c
}

// mustRun runs the command line and returns its output, failing the test
// unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := pgherdRun(t, args...)
	if code != 0 {
		t.Fatalf("pgherd %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// steps runs fn as a subtest and stops t at the first that fails.
func steps(t *testing.T) func(name string, fn func(t *testing.T)) {
	return func(name string, fn func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, fn) {
			t.FailNow()
		}
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
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

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func pgConnect(t *testing.T, i *pg.Instance) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", i.SocketDir, i.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func pgExec(t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func pgString(t *testing.T, c *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := c.QueryRow(t.Context(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}
