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
	if st := mustStatus(t, p); st.State != StateRunning || st.PID == old || st.Exiting {
		t.Fatalf("status after Start = %+v, want running under a new postmaster", st)
	}
	if n := queryInt(t, p, "SELECT count(*) FROM t"); n != 1000 {
		t.Fatalf("rows after the restart = %d", n)
	}
}
