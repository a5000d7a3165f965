package pg

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestFinishRecovery recovers a copy of a primary whose recovery was set
// up by hand (recovery.signal, no archive): a call finds the private
// server an interrupted one left, waits for it and stops it; a server of
// its own and a standby's directory are refused.
func TestFinishRecovery(t *testing.T) {
	base := testBase(t)
	ctx := t.Context()
	p := newTestInstance(t, base, "p")
	startTestPrimary(t, p, map[string]string{"wal_level": "replica", "fsync": "off", "shared_buffers": "16MB"})
	mustExec(t, p, "CREATE TABLE t AS SELECT generate_series(1, 10) AS id")
	r := newTestInstance(t, base, "r")
	if err := r.Clone(ctx, upstream(p), CloneOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(r.path("postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// No archive: recovery replays pg_wal, then promotes.
	if _, err := f.WriteString("restore_command = 'false'\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := r.writeFile(r.path("recovery.signal"), nil); err != nil {
		t.Fatal(err)
	}

	// What a run killed after it started its server leaves.
	sock, err := os.MkdirTemp("", privatePrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.chown(sock); err != nil {
		t.Fatal(err)
	}
	private := *r
	private.SocketDir = sock
	if err := private.startPrivate(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the private server's postmaster.pid", func() (bool, string) {
		sock, ok := r.privateServer()
		return ok, sock
	})
	res, err := r.FinishRecovery(ctx, RecoveryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Ran || res.TimeLine != 2 || res.SystemID == 0 {
		t.Fatalf("FinishRecovery = %+v, want timeline 2", res)
	}
	if ok, _ := r.Running(); ok {
		t.Fatal("the private server still runs")
	}
	if _, err := os.Stat(sock); err == nil {
		t.Fatalf("socket directory %s left behind", sock)
	}
	if _, err := os.Stat(r.path("recovery.signal")); err == nil {
		t.Fatal("recovery.signal left behind")
	}

	// The agent's own start of it, as a primary.
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, r, "SELECT count(*) FROM t"); n != 10 {
		t.Fatalf("rows = %d, want 10", n)
	}
	if _, err := r.FinishRecovery(ctx, RecoveryOptions{}); !errors.Is(err, ErrRunning) {
		t.Fatalf("FinishRecovery of a server the agent started: %v, want ErrRunning", err)
	}
	if err := r.Stop(ctx, Fast); err != nil {
		t.Fatal(err)
	}
	if err := r.writeFile(filepath.Join(r.DataDir, "standby.signal"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.FinishRecovery(ctx, RecoveryOptions{}); !errors.Is(err, ErrNotRestored) {
		t.Fatalf("FinishRecovery of a standby's directory: %v, want ErrNotRestored", err)
	}
}
