package backuptest

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/agent/pg"
	"github.com/pgherd/pgherd/internal/porttest"
)

// PGBinDir holds the PostgreSQL 15 binaries the tests run.
const PGBinDir = "/usr/lib/postgresql/15/bin"

// PGDir is a temporary directory every user can traverse, for PostgreSQL
// servers run as the postgres user by a test running as root, and for what
// they reach: the test binary as an archive helper, repositories.
type PGDir struct {
	// Base is the directory, removed at the end of the test.
	Base string
	// UID and GID are the postgres user's.
	UID, GID int
}

// NewPGDir makes the directory, or skips the test where PostgreSQL 15
// cannot run: not installed, not root, or no postgres user.
func NewPGDir(t testing.TB) *PGDir {
	t.Helper()
	if _, err := os.Stat(filepath.Join(PGBinDir, "postgres")); err != nil {
		t.Skipf("PostgreSQL 15 is not installed (apt-get install postgresql-15): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("the PostgreSQL tests run as root (PostgreSQL runs as postgres)")
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("no postgres user: %v", err)
	}
	d := &PGDir{}
	d.UID, _ = strconv.Atoi(u.Uid)
	d.GID, _ = strconv.Atoi(u.Gid)
	if d.Base, err = os.MkdirTemp("", "pgherd-backup-test-"); err != nil {
		t.Fatal(err)
	}
	os.Chmod(d.Base, 0o755)
	t.Cleanup(func() { os.RemoveAll(d.Base) })
	return d
}

// Mkdir makes the directory name under Base, owned by postgres, and
// returns its path.
func (d *PGDir) Mkdir(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(d.Base, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, d.UID, d.GID)
	return p
}

// ChownTree gives dir and everything under it to postgres: what the test
// made as root there, such as a repository's files, that the servers'
// archive helper writes to.
func (d *PGDir) ChownTree(t testing.TB, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, d.UID, d.GID)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// CopySelf copies the running test binary into Base as name, executable
// by every user, and returns its path: the servers run it as their
// archive and restore helper.
func (d *PGDir) CopySelf(t testing.TB, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(d.Base, name)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Instance is a PostgreSQL server, not yet created, in the directory name
// under Base, on a free loopback port, logging warnings into the test's
// output. It is stopped (immediate) at the end of the test.
func (d *PGDir) Instance(t testing.TB, name string) *pg.Instance {
	t.Helper()
	dir := d.Mkdir(t, name)
	i := &pg.Instance{Name: name, BinDir: PGBinDir, DataDir: filepath.Join(dir, "data"), SocketDir: dir,
		Port: porttest.Free(t), ListenAddresses: "127.0.0.1", User: "postgres",
		Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	t.Cleanup(func() { i.Stop(context.Background(), pg.Immediate) })
	return i
}

// ConnString reaches i's database postgres as the user postgres over its
// socket.
func ConnString(i *pg.Instance) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", i.SocketDir, i.Port)
}

// Connect connects to i (ConnString) until the test ends.
func Connect(t testing.TB, i *pg.Instance) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), ConnString(i))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Exec runs sql on c, or fails the test.
func Exec(t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// QueryString returns the one text value sql selects on c, or fails the
// test.
func QueryString(t testing.TB, c *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := c.QueryRow(t.Context(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// SwitchAndArchive switches WAL on c's server and waits up to 60 s until
// the segment it ended, which holds everything so far, is archived.
func SwitchAndArchive(t testing.TB, c *pgx.Conn) {
	t.Helper()
	seg := QueryString(t, c, "SELECT pg_walfile_name(pg_switch_wal())")
	deadline := time.Now().Add(60 * time.Second)
	for {
		last := QueryString(t, c, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if last >= seg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not archived; last archived %q", seg, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ArchiveOff turns archiving off in the restored copy i (not running), so
// that it does not archive into the repositories the test reads.
func ArchiveOff(t testing.TB, i *pg.Instance) {
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

// StartRestored starts the restored server i with archiving off
// (ArchiveOff), waits up to 60 s until its recovery is over, and returns a
// connection to it (Connect).
func StartRestored(t testing.TB, i *pg.Instance) *pgx.Conn {
	t.Helper()
	ArchiveOff(t, i)
	if err := i.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := Connect(t, i)
	deadline := time.Now().Add(60 * time.Second)
	for QueryString(t, c, "SELECT pg_is_in_recovery()::text") == "true" {
		if time.Now().After(deadline) {
			t.Fatal("the restored server did not finish recovery")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}
