package pg

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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
	if lines := i.pidFileLines(); lines != nil {
		return lines[7]
	}
	return ""
}

// pidFileLines are postmaster.pid's lines, trimmed; nil without a complete
// one (at least the 8 lines up to the status).
func (i *Instance) pidFileLines() []string {
	data, err := os.ReadFile(i.path("postmaster.pid"))
	if err != nil {
		return nil
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) < 8 {
		return nil
	}
	for k := range lines {
		lines[k] = strings.TrimSpace(lines[k])
	}
	return lines
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
	return i.stop(ctx, Fast, i.shutDownExiting)
}

// exitingStatus is the status of a postmaster shutDownExiting says is
// done: stopped, as pg_controldata tells, with its pid.
func (i *Instance) exitingStatus(ctx context.Context, pid int) (Status, error) {
	st, err := i.controlStatus(ctx)
	st.PID, st.Exiting = pid, true
	return st, err
}

// PromoteWithoutArchive promotes as Promote does, with restore_command
// cleared for the promotion and put back after it, so that PostgreSQL
// looks for the timeline history files it needs in pg_wal only: each
// restore_command call is a process start and a repository lookup (30 to
// 130 ms measured on the lab) on the write pause of a switchover. The
// caller must have looked the archive up itself just before: the next
// timeline's history file is not there (else PostgreSQL could reuse a
// timeline another promotion archived), and history holds the files of
// this timeline's ancestry (name → content), written into pg_wal where
// missing so that the new timeline's history is complete.
func (i *Instance) PromoteWithoutArchive(ctx context.Context, history map[string][]byte) error {
	cur, _, err := i.readManaged()
	if err != nil {
		return err
	}
	restore := cur["restore_command"]
	if restore == "" {
		return i.Promote(ctx)
	}
	for name, data := range history {
		p := i.path(filepath.Join("pg_wal", name))
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := i.writeFile(p, data); err != nil {
			return err
		}
	}
	if _, err := i.updateManaged(map[string]string{"restore_command": ""}); err != nil {
		return err
	}
	// Put back whatever happens: the server stays a standby if the
	// promotion fails, and needs its archive then.
	defer func() {
		if _, err := i.updateManaged(map[string]string{"restore_command": restore}); err != nil {
			i.log().Warn("restore_command not put back after the promotion (the next apply does)", "err", err)
		} else if err := i.Reload(context.WithoutCancel(ctx)); err != nil {
			i.log().Warn("reload after the promotion", "err", err)
		}
	}()
	if err := i.Reload(ctx); err != nil {
		return err
	}
	// The postmaster signals the startup process as it reloads, before
	// it starts a backend: a new session that sees the setting cleared
	// means the startup process was told. (Were it to miss it, the
	// promotion would only ask the archive, as usual.)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if v, err := i.show(ctx, "restore_command"); err == nil && v == "" {
			break
		}
	}
	return i.Promote(ctx)
}

// show is a setting as a new session sees it.
func (i *Instance) show(ctx context.Context, name string) (string, error) {
	conn, err := i.connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	err = conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v)
	return v, err
}
