package pg

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// A switchover's write pause lasts until the old primary is seen stopped.
// Its clean shutdown is done, as far as anything but its archive is
// concerned, once the shutdown checkpoint is in pg_control: no client is
// served and no WAL is written after it, and the standbys get the
// checkpoint record from the WAL senders. The postmaster then still waits
// for its archiver to push the segment it switched to at shutdown (with
// archiving on, PostgreSQL switches WAL before the shutdown checkpoint):
// a compression and an upload, 100 to 300 ms that the switchover need not
// wait for.

// pg_control's DBState values (catalog/pg_control.h) for a clean shutdown.
const (
	dbShutdowned           = 1
	dbShutdownedInRecovery = 2
)

// shutDownInControl reports whether pg_control records a clean shutdown.
// It reads the state field itself (after the system identifier, the
// control file and catalog versions; the same offset in every supported
// version) rather than running pg_controldata, since a stop checks it
// every few milliseconds.
func (i *Instance) shutDownInControl() (bool, error) {
	f, err := os.Open(i.path("global/pg_control"))
	if err != nil {
		return false, fmt.Errorf("pg: read pg_control: %w", err)
	}
	defer f.Close()
	var head [20]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return false, fmt.Errorf("pg: read pg_control: %w", err)
	}
	state := binary.NativeEndian.Uint32(head[16:])
	return state == dbShutdowned || state == dbShutdownedInRecovery, nil
}

// pidFileStatus is postmaster.pid's status line ("starting", "stopping",
// "ready", "standby"), "" when there is none.
func (i *Instance) pidFileStatus() string {
	data, err := os.ReadFile(i.path("postmaster.pid"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) < 8 {
		return ""
	}
	return strings.TrimSpace(lines[7])
}

// shutDownExiting reports whether the postmaster pid is past its shutdown
// checkpoint, only finishing its archiving and WAL sending before it
// exits.
func (i *Instance) shutDownExiting(pid int) bool {
	if pid == 0 || i.pidFileStatus() != "stopping" {
		return false
	}
	ok, err := i.shutDownInControl()
	return err == nil && ok
}

// runningPID waits for a postmaster that is shutting down to exit, then
// returns the pid of the one running, 0 when none: what starts, rewinds
// or replaces the data directory must not overlap the exit of the
// postmaster a switchover left finishing its archiving.
func (i *Instance) runningPID(ctx context.Context) (int, error) {
	pid, err := i.postmasterPID()
	if err != nil || pid == 0 || i.pidFileStatus() != "stopping" {
		return pid, err
	}
	t0 := time.Now()
	if err := WaitExit(ctx, pid); err != nil {
		return 0, fmt.Errorf("pg: waiting for the postmaster %d, shutting down, to exit: %w", pid, err)
	}
	i.log().Info("the postmaster shutting down exited", "pid", pid, "waited", time.Since(t0).Round(time.Millisecond))
	return i.postmasterPID()
}

// ShutDown stops postgres cleanly (fast) for a switchover and returns as
// soon as the shutdown checkpoint is in pg_control, or the postmaster has
// exited, whichever comes first: the postmaster may still be archiving
// then (Status says StateStopped with Exiting). Start, Rewind and Clone
// wait for it to exit.
func (i *Instance) ShutDown(ctx context.Context) error {
	pid, err := i.postmasterPID()
	if err != nil || pid == 0 {
		return err
	}
	t0 := time.Now()
	if err := syscall.Kill(pid, stopSignals[Fast]); err != nil {
		if err == syscall.ESRCH {
			return nil
		}
		return fmt.Errorf("pg: shut down: signal %d: %w", pid, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 600*time.Second)
	defer cancel()
	exited := make(chan error, 1)
	go func() { exited <- WaitExit(wctx, pid) }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("pg: shut down: postmaster %d still running: %w", pid, err)
			}
			i.log().Info("postgres stopped", "mode", Fast, "took", time.Since(t0).Round(time.Millisecond))
			return nil
		case <-tick.C:
			if i.shutDownExiting(pid) {
				i.log().Info("postgres shut down; its postmaster finishes archiving", "pid", pid, "took", time.Since(t0).Round(time.Millisecond))
				return nil
			}
		}
	}
}

// exitingStatus is the status of a postmaster shutDownExiting says is
// done: stopped, as pg_controldata tells, with its pid.
func (i *Instance) exitingStatus(ctx context.Context, pid int) (Status, error) {
	st, err := i.controlStatus(ctx)
	st.PID, st.Exiting = pid, true
	return st, err
}
