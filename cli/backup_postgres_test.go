package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/agent/backup/backuptest"
	"github.com/pgherd/pgherd/agent/pg"
)

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
	p := e.Instance(t, "primary")
	repo := e.Mkdir(t, "repo")
	config := e.config(t, p, map[string]any{
		"repository":        map[string]string{"type": "path", "path": repo},
		"compression_level": 1, "parallel": 2, "spool_dir": e.Mkdir(t, "spool"),
	})
	exe, uid, gid := e.exe, e.UID, e.GID

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
		backuptest.Exec(t, c, "INSERT INTO t SELECT g, 'after backup' FROM generate_series(1001, 1500) g")
		backuptest.SwitchAndArchive(t, c)
		run(t, "backup", "verify", "--config", config)
	})
	step("restore refuses a running server", func(t *testing.T) {
		code, _, errs := pgherdRun(t, "restore", "--config", config, "--data-dir", p.DataDir)
		if code != 1 || !strings.Contains(errs, "postmaster.pid") {
			t.Fatalf("exit %d, %s", code, errs)
		}
	})
	step("restore", func(t *testing.T) {
		r := e.Instance(t, "restored")
		out := run(t, "restore", "--config", config, "--data-dir", r.DataDir,
			"--restore-command", fmt.Sprintf(`%s wal-fetch --config %s %%f "%%p"`, exe, config))
		if !strings.Contains(out, "Next: start PostgreSQL") {
			t.Errorf("restore does not say what to do next:\n%s", out)
		}
		if n := backuptest.QueryString(t, backuptest.StartRestored(t, r), "SELECT count(*)::text FROM t"); n != "1500" {
			t.Fatalf("restored rows = %s, want 1500", n)
		}
	})
}

// pgBackupEnv is a directory postgres can traverse, holding this test
// binary as "pgherd" (TestMain runs the command line under that name), the
// configurations and the repositories.
type pgBackupEnv struct {
	*backuptest.PGDir
	exe string
}

// newPGBackupEnv makes the directory, or skips the test where PostgreSQL 15
// cannot run.
func newPGBackupEnv(t *testing.T) *pgBackupEnv {
	d := backuptest.NewPGDir(t)
	return &pgBackupEnv{PGDir: d, exe: d.CopySelf(t, "pgherd")}
}

// config writes the agent configuration of the server p with this backup
// section, readable by postgres, and returns its path.
func (e *pgBackupEnv) config(t *testing.T, p *pg.Instance, backup map[string]any) string {
	config := filepath.Join(e.Base, "agent-"+p.Name+".json")
	writeJSON(t, config, map[string]any{
		"cluster": "demo", "name": p.Name, "address": "127.0.0.1",
		"postgres": map[string]any{
			"bin_dir": backuptest.PGBinDir, "data_dir": p.DataDir, "port": p.Port, "socket_dir": p.SocketDir, "os_user": "postgres",
			"superuser":   map[string]string{"user": "postgres", "password": "unused"},
			"replication": map[string]string{"user": "replicator", "password": "unused"},
		},
		"etcd":    map[string]any{"endpoints": []string{"http://127.0.0.1:1"}},
		"ha":      map[string]string{"ttl": "10s", "loop_wait": "1s"},
		"run_dir": e.Mkdir(t, "run-"+p.Name),
		"backup":  backup,
	})
	os.Chown(config, e.UID, e.GID)
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
	c := backuptest.Connect(outer, p)
	backuptest.Exec(t, c, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	backuptest.Exec(t, c, "INSERT INTO t SELECT g, 'before backup' FROM generate_series(1, 1000) g")
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
