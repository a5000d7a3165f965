package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgherd/pgherd/agent/backup"
	"github.com/pgherd/pgherd/agent/backup/backuptest"
	"github.com/pgherd/pgherd/agent/pg"
)

// TestMain lets PostgreSQL run this test binary as its archive_command and
// restore_command: with PGHERD_AGENT_WAL_HELPER set to a backup
// configuration (JSON), the binary is wal-push / wal-fetch for it.
func TestMain(m *testing.M) {
	if cfg := os.Getenv("PGHERD_AGENT_WAL_HELPER"); cfg != "" {
		os.Exit(walHelper(cfg, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func walHelper(cfgJSON string, args []string) int {
	ctx := context.Background()
	var b BackupConfig
	if err := json.Unmarshal([]byte(cfgJSON), &b); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	st, err := b.Open(ctx, slog.New(slog.NewTextHandler(os.Stderr, nil)), "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	switch {
	case len(args) == 2 && args[0] == "wal-push":
		err = st.WALPush(ctx, args[1], backup.WALPushOptions{})
	case len(args) == 3 && args[0] == "wal-fetch":
		err = st.WALFetch(ctx, args[1], args[2], backup.WALFetchOptions{})
		if errors.Is(err, backup.ErrNotFound) {
			return 1
		}
	default:
		err = fmt.Errorf("usage: wal-push PATH | wal-fetch NAME DEST; got %q", args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// newBackupCluster prepares n members (not started) whose PostgreSQL
// archives into, and restores from, a directory repository through this
// test binary (TestMain); mod, when not nil, changes the backup section.
// The repository is not initialized (initRepository).
func newBackupCluster(t *testing.T, n int, mod func(*BackupConfig)) (*testCluster, *BackupConfig, *backuptest.PGDir) {
	t.Helper()
	// The repository and the helper, in a directory postgres can reach.
	d := backuptest.NewPGDir(t)
	helper := d.CopySelf(t, "helper")
	bcfg := &BackupConfig{Repositories: []BackupRepository{{Type: RepoPath, Path: d.Mkdir(t, "repo")}}}
	if mod != nil {
		mod(bcfg)
	}
	if err := bcfg.Check(); err != nil {
		t.Fatal(err)
	}
	c := newTestCluster(t, n, func(cfg *Config) {
		js, err := json.Marshal(bcfg)
		if err != nil {
			t.Fatal(err)
		}
		env := "PGHERD_AGENT_WAL_HELPER='" + string(js) + "' " + helper
		cfg.Backup = bcfg
		// A restore runs in this process beside the other agent: a
		// generous ttl, so that a busy machine does not cost the leader
		// its lease (not what these tests are about).
		cfg.HA.TTL.Duration = 10 * time.Second
		cfg.Postgres.Parameters["archive_mode"] = "on"
		cfg.Postgres.Parameters["archive_command"] = env + " wal-push %p"
		cfg.Postgres.Parameters["restore_command"] = env + ` wal-fetch %f "%p"`
	})
	return c, bcfg, d
}

// initRepository initializes the repository of newBackupCluster, as
// `pgherd backup init` does.
func initRepository(t *testing.T, bcfg *BackupConfig, d *backuptest.PGDir) *backup.Store {
	t.Helper()
	st, err := bcfg.Init(t.Context(), slog.New(slog.NewTextHandler(t.Output(), nil)), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	// Made as root: PostgreSQL's archive_command runs as postgres.
	d.ChownTree(t, bcfg.Repositories[0].Path)
	return st
}

// TestReplicaFromBackup: with create_replica_from_backup, a new member
// restores the repository's latest backup (not a copy of the primary),
// replays the archive, and then streams from the primary.
func TestReplicaFromBackup(t *testing.T) {
	c, bcfg, d := newBackupCluster(t, 2, func(b *BackupConfig) { b.CreateReplicaFromBackup = true })
	ctx := t.Context()
	st := initRepository(t, bcfg, d)

	c.start("node1")
	if leader := c.waitRoles(90 * time.Second); leader != "node1" {
		t.Fatalf("leader %s, want node1", leader)
	}
	c.exec("node1", "CREATE TABLE t (id int primary key)")
	c.exec("node1", "INSERT INTO t SELECT generate_series(1, 100)")
	p := c.members["node1"].cfg.Postgres
	m, err := st.Backup(ctx, backup.BackupOptions{DataDir: p.DataDir, Type: backup.Full,
		Conn: fmt.Sprintf("postgres://postgres:su-secret@%s:%d/postgres?sslmode=disable", p.Listen, p.Port)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backup %s", m.ID)
	// What only a copy of the primary would carry: a file made after the
	// backup (pg_basebackup copies unknown files of the data directory).
	marker := "pgherd-test-after-backup"
	if err := os.WriteFile(filepath.Join(p.DataDir, marker), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Rows only the archive (replayed) or streaming can bring.
	c.exec("node1", "INSERT INTO t SELECT generate_series(101, 200)")
	c.exec("node1", "SELECT pg_switch_wal()")

	c.start("node2")
	if leader := c.waitRoles(120 * time.Second); leader != "node1" {
		t.Fatalf("leader %s, want node1", leader)
	}
	c.waitCount("node2", 200)
	dd := c.members["node2"].cfg.Postgres.DataDir
	if _, err := os.Stat(filepath.Join(dd, marker)); err == nil {
		t.Fatalf("node2's data directory has %s: it was copied from the primary, not restored", marker)
	}
	if _, err := os.Stat(dd + ".pgherd-staging"); err == nil {
		t.Errorf("the staging directory is left behind")
	}
	// And it streams.
	c.exec("node1", "INSERT INTO t SELECT generate_series(201, 300)")
	c.waitCount("node2", 300)

	t.Run("wal-fetch through the agent's socket", func(t *testing.T) {
		sock := WALSocket(c.members["node1"].cfg.RunDir)
		out := t.TempDir()
		// The backup's first segment is in the archive.
		got, want := filepath.Join(out, "via-agent"), filepath.Join(out, "direct")
		if err := FetchWALVia(ctx, sock, m.StartWAL, got); err != nil {
			t.Fatalf("fetch %s through %s: %v", m.StartWAL, sock, err)
		}
		if err := st.WALFetch(ctx, m.StartWAL, want, backup.WALFetchOptions{}); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(got)
		b, _ := os.ReadFile(want)
		if len(a) == 0 || string(a) != string(b) {
			t.Fatalf("through the agent: %d bytes; directly: %d bytes, or they differ", len(a), len(b))
		}
		if err := FetchWALVia(ctx, sock, "00000063.history", filepath.Join(out, "h")); !errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("a history file not in the archive: %v, want ErrNotFound", err)
		}
		if err := FetchWALVia(ctx, filepath.Join(out, "no.sock"), m.StartWAL, got); !errors.Is(err, ErrNoWALServer) {
			t.Fatalf("no agent: %v, want ErrNoWALServer", err)
		}
		// A push of a segment archived already with the same content
		// succeeds (PostgreSQL may push a segment twice).
		pushed := filepath.Join(out, m.StartWAL)
		if err := os.Rename(want, pushed); err != nil {
			t.Fatal(err)
		}
		if err := PushWALVia(ctx, sock, pushed); err != nil {
			t.Fatalf("push %s through the agent: %v", pushed, err)
		}
		if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket %s: %v %v, want mode 0600", sock, fi.Mode(), err)
		}
	})
}

// TestBootstrapWaitsForRepository: an agent bootstrapping a new cluster
// does not run initdb while its repository is not initialized (the apply
// initializes a shared one from the first PostgreSQL host only, maybe
// after another host's agent won the race to bootstrap); once it is, the
// cluster comes up and its first segment is archived without a failed
// push.
func TestBootstrapWaitsForRepository(t *testing.T) {
	c, bcfg, d := newBackupCluster(t, 1, nil)
	c.start("node1")
	m := c.members["node1"]
	in := &pg.Instance{BinDir: testBinDir, DataDir: m.cfg.Postgres.DataDir, User: "postgres"}
	deadline := time.Now().Add(60 * time.Second)
	for m.agent.Snapshot().State != "bootstrapping" {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not start to bootstrap: %+v", m.agent.Snapshot())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if ok, err := in.Initialized(); ok || err != nil {
			t.Fatalf("initdb ran before the repository was initialized (%v)", err)
		}
	}

	initRepository(t, bcfg, d)
	if leader := c.waitRoles(90 * time.Second); leader != "node1" {
		t.Fatalf("leader %s, want node1", leader)
	}
	c.exec("node1", "CREATE TABLE t (id int primary key)")
	c.exec("node1", "SELECT pg_switch_wal()")
	conn := c.conn("node1")
	var archived, failed int64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		err := conn.QueryRow(t.Context(), "SELECT archived_count, failed_count FROM pg_stat_archiver").Scan(&archived, &failed)
		if err != nil {
			t.Fatal(err)
		}
		if failed > 0 {
			t.Fatalf("pg_stat_archiver: %d failed pushes (%d archived), want none", failed, archived)
		}
		if archived > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no segment archived")
		}
	}
}
