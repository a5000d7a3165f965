package pg

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestShutDown stops a primary whose archiver cannot finish (its
// archive_command waits for a file the test creates): ShutDown returns at
// the shutdown checkpoint, Status says stopped while that postmaster
// still runs, and Start waits for it to exit before starting a new one.
func TestShutDown(t *testing.T) {
	base := testBase(t)
	ctx := t.Context()
	p := newTestInstance(t, base, "p")
	release := filepath.Join(base, "release-archiver")
	err := p.InitDB(ctx, InitOptions{AuthLocal: "trust", AuthHost: "trust", Parameters: map[string]string{
		"archive_mode":    "on",
		"archive_command": fmt.Sprintf("while [ ! -e %s ]; do sleep 0.01; done", release),
		"fsync":           "off",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Something in the current segment, so that the shutdown switches
	// WAL and has a segment to archive.
	mustExec(t, p, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS id")
	old := mustStatus(t, p).PID

	if err := p.ShutDown(ctx); err != nil {
		t.Fatal(err)
	}
	st := mustStatus(t, p)
	if st.State != StateStopped || !st.Exiting || st.PID != old || st.ClusterState != "shut down" || st.CheckpointLSN == 0 {
		t.Fatalf("status after ShutDown with the archiver still busy = %+v, want stopped, exiting, pid %d, shut down", st, old)
	}

	started := make(chan error, 1)
	go func() { started <- p.Start(ctx) }()
	select {
	case err := <-started:
		t.Fatalf("Start returned (%v) while the old postmaster was still archiving", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatalf("Start after the old postmaster exited: %v", err)
	}
	if st := mustStatus(t, p); st.State != StateRunning || st.PID == old || st.Exiting || st.ServerVersion/10000 != 15 {
		t.Fatalf("status after Start = %+v, want running under a new postmaster, version 15", st)
	}
	if n := queryInt(t, p, "SELECT count(*) FROM t"); n != 1000 {
		t.Fatalf("rows after the restart = %d", n)
	}
}

// TestPromoteWithoutArchive promotes a standby whose restore_command
// records every call: the promotion makes none, takes the next timeline,
// copies the history file it was given into pg_wal and the new timeline's
// history from it, and restore_command is back afterwards.
func TestPromoteWithoutArchive(t *testing.T) {
	base := testBase(t)
	ctx := t.Context()
	p, r := newTestInstance(t, base, "p"), newTestInstance(t, base, "r")
	if err := p.InitDB(ctx, InitOptions{AuthLocal: "trust", AuthHost: "trust", HBA: []string{"host replication all 127.0.0.1/32 trust"},
		Parameters: map[string]string{"fsync": "off", "wal_level": "replica"}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	slot := SlotName(r.Name)
	if err := r.Clone(ctx, upstream(p), CloneOptions{Slot: slot, CreateSlot: true}); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(base, "r", "restore-calls")
	restore := fmt.Sprintf("echo %%f >> %s; false", calls)
	if err := r.SetParameters(ctx, map[string]string{"restore_command": restore}); err != nil {
		t.Fatal(err)
	}
	if err := r.ConfigureStandby(ctx, upstream(p), slot); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "r streaming", func() (bool, string) {
		st := mustStatus(t, r)
		return st.WALReceiver != nil && st.WALReceiver.Status == "streaming", fmt.Sprintf("%+v", st)
	})
	os.Remove(calls)
	// A history file of an earlier timeline, as the lookup ahead would
	// hand over (the standby is on timeline 1: PostgreSQL does not read
	// it, it only has to land in pg_wal).
	given := "1\t0/3000000\tno recovery target specified\n"
	if err := r.PromoteWithoutArchive(ctx, map[string][]byte{"00000001.history": []byte(given)}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(calls); err == nil {
		t.Errorf("the promotion ran restore_command for %q", b)
	}
	if st := mustStatus(t, r); st.InRecovery || st.TimeLine != 2 {
		t.Fatalf("after the promotion: %+v, want a primary on timeline 2", st)
	}
	if b, err := os.ReadFile(filepath.Join(r.DataDir, "pg_wal", "00000001.history")); err != nil || string(b) != given {
		t.Errorf("pg_wal/00000001.history = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(r.DataDir, "pg_wal", "00000002.history")); err != nil || len(b) == 0 {
		t.Errorf("pg_wal/00000002.history = %q, %v", b, err)
	}
	if v, err := r.show(ctx, "restore_command"); err != nil || v != restore {
		t.Errorf("restore_command after the promotion = %q, %v; want %q", v, err, restore)
	}
}
