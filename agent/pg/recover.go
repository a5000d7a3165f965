package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrNotRestored: FinishRecovery was given a data directory that neither
// waits for a targeted recovery (recovery.signal) nor holds a primary that
// was promoted and then stopped.
var ErrNotRestored = errors.New("data directory is not a restored one waiting for recovery")

// RecoveryOptions tune FinishRecovery.
type RecoveryOptions struct {
	// ArchiveWait bounds the wait, after the promotion, for the archiver
	// to store what the promotion wrote (the new timeline's history file,
	// the last segment of the old one); what is left then is archived by
	// the next start. 0: one minute.
	ArchiveWait time.Duration
	// Progress, when set, is called about every ten seconds while WAL is
	// replayed.
	Progress func(RecoveryProgress)
}

// RecoveryProgress is how far a recovery got.
type RecoveryProgress struct {
	ReplayLSN LSN
	// LastReplayed is the commit time of the last transaction replayed
	// (zero before the first).
	LastReplayed time.Time
	Elapsed      time.Duration
}

// RecoveryResult is what FinishRecovery left: a primary shut down cleanly.
type RecoveryResult struct {
	SystemID uint64
	// TimeLine is the timeline the promotion started.
	TimeLine uint32
	// Ran: the server ran now; false when the data directory was found
	// recovered and shut down already (a second call).
	Ran bool
	// ArchivePending counts the WAL files still waiting for the archiver
	// when the server was stopped (see RecoveryOptions.ArchiveWait).
	ArchivePending int
	Took           time.Duration
}

// FinishRecovery carries out the recovery a restore set up in the data
// directory (recovery.signal and a recovery target), outside any agent:
// it starts a postmaster that listens on no TCP address and on a unix
// socket in a directory of its own, so that no client, HA agent or backup
// job can reach it, waits until it has replayed the archive up to the
// target and promoted, lets the archiver store the new timeline's history
// file, and stops it cleanly. The result is a primary on a new timeline,
// shut down cleanly, that an HA agent starts like any former primary.
//
// The agent itself must not start such a directory: it would promote a
// replica it sees in recovery before the target is reached, or, taking it
// for a primary, remove recovery.signal first.
//
// It is idempotent: a directory already recovered and shut down is left
// alone, one whose promoted server was killed is started and stopped
// again, and the private server of a call that was interrupted (its
// caller killed) is waited for. It returns ErrRunning when another
// postmaster runs, and ErrNotRestored
// for a directory without recovery.signal that was not a primary (a
// standby's), or one with standby.signal.
func (i *Instance) FinishRecovery(ctx context.Context, opts RecoveryOptions) (RecoveryResult, error) {
	t0 := time.Now()
	var res RecoveryResult
	ok, err := i.Initialized()
	if err != nil {
		return res, err
	}
	if !ok {
		return res, fmt.Errorf("pg: finish recovery of %s: %w", i.DataDir, ErrNotInitialized)
	}
	pid, err := i.postmasterPID()
	if err != nil {
		return res, err
	}
	if pid != 0 {
		// A recovering server an interrupted call left running is
		// waited for; any other is refused.
		sock, ok := i.privateServer()
		if !ok {
			return res, fmt.Errorf("pg: finish recovery of %s: %w", i.DataDir, ErrRunning)
		}
		i.log().Info("waiting for the recovering server an earlier run started", "pid", pid, "socket_dir", sock)
		return i.finishPrivate(ctx, sock, opts, t0)
	}
	if exists(i.path("standby.signal")) {
		return res, fmt.Errorf("pg: finish recovery of %s: it has standby.signal, a standby never ends recovery: %w", i.DataDir, ErrNotRestored)
	}
	cd, err := i.ControlData(ctx)
	if err != nil {
		return res, err
	}
	state := cd["Database cluster state"]
	switch {
	case exists(i.path("recovery.signal")):
	case state == "shut down":
		return i.recovered(ctx, res, t0)
	case state == "in production" || state == "shutting down" || state == "in crash recovery":
		// Promoted, then stopped without a shutdown checkpoint: a start
		// finishes crash recovery, a stop makes it clean.
	default:
		return res, fmt.Errorf("pg: finish recovery of %s: no recovery.signal, and the cluster state is %q: %w", i.DataDir, state, ErrNotRestored)
	}

	sock, err := os.MkdirTemp("", privatePrefix)
	if err != nil {
		return res, fmt.Errorf("pg: finish recovery: %w", err)
	}
	if err := i.chown(sock); err != nil {
		os.RemoveAll(sock)
		return res, err
	}
	private := *i
	private.SocketDir = sock
	if err := private.startPrivate(ctx); err != nil {
		os.RemoveAll(sock)
		return res, err
	}
	return i.finishPrivate(ctx, sock, opts, t0)
}

// privatePrefix names the socket directories of FinishRecovery's servers.
const privatePrefix = "pgherd-recovery-"

// privateServer tells whether the running postmaster is one that
// FinishRecovery started (no TCP address, a socket in a directory of its
// own), and its socket directory; postmaster.pid says so on its fifth and
// sixth lines.
func (i *Instance) privateServer() (string, bool) {
	sock, listen := i.pidFileSockets()
	if listen != "" || !strings.HasPrefix(filepath.Base(sock), privatePrefix) {
		return "", false
	}
	return sock, true
}

// pidFileSockets reads the socket directory and the listen address of
// postmaster.pid ("" until the postmaster has written them).
func (i *Instance) pidFileSockets() (sock, listen string) {
	b, err := os.ReadFile(i.path("postmaster.pid"))
	if err != nil {
		return "", ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 6 {
		return "", ""
	}
	return strings.TrimSpace(lines[4]), strings.TrimSpace(lines[5])
}

// finishPrivate waits until the private server listening in sock has
// promoted and archived, and stops it.
func (i *Instance) finishPrivate(ctx context.Context, sock string, opts RecoveryOptions, t0 time.Time) (RecoveryResult, error) {
	res := RecoveryResult{Ran: true}
	defer os.RemoveAll(sock)
	private := *i
	private.SocketDir = sock
	// Whatever happens next, the private server does not outlive this
	// call.
	stopped := false
	defer func() {
		if !stopped {
			if err := private.Stop(context.WithoutCancel(ctx), Fast); err != nil {
				i.log().Warn("stopping the recovering server", "err", err)
			}
		}
	}()
	if err := private.waitPromoted(ctx, t0, opts.Progress); err != nil {
		return res, err
	}
	wait := opts.ArchiveWait
	if wait <= 0 {
		wait = time.Minute
	}
	res.ArchivePending = private.waitArchived(ctx, wait)
	if err := private.Stop(ctx, Fast); err != nil {
		return res, err
	}
	stopped = true
	return i.recovered(ctx, res, t0)
}

// recovered fills res from pg_control, which must say "shut down".
func (i *Instance) recovered(ctx context.Context, res RecoveryResult, t0 time.Time) (RecoveryResult, error) {
	var st Status
	cd, err := i.ControlData(ctx)
	if err == nil {
		err = cd.fill(&st)
	}
	if err != nil {
		return res, err
	}
	if st.ClusterState != "shut down" {
		return res, fmt.Errorf("pg: finish recovery of %s: the cluster state is %q after the stop, not \"shut down\"", i.DataDir, st.ClusterState)
	}
	res.SystemID, res.TimeLine, res.Took = st.SystemID, st.TimeLine, time.Since(t0)
	return res, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// startPrivate starts the postmaster on no TCP address, without waiting:
// recovery may take hours, and its end is watched by waitPromoted.
func (i *Instance) startPrivate(ctx context.Context) error {
	opts := []string{"-p", strconv.Itoa(i.Port), "-c", "unix_socket_directories=" + i.SocketDir, "-c", "listen_addresses="}
	q := make([]string, len(opts))
	for n, o := range opts {
		q[n] = shellQuote(o)
	}
	cmd, err := i.command(ctx, "pg_ctl", "start", "-W", "-D", i.DataDir, "-l", i.logFile(), "-o", strings.Join(q, " "))
	if err != nil {
		return err
	}
	cmd.SysProcAttr.Setpgid = true
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg: pg_ctl start: %w: %s; log %s: %s", err, tail(string(out), 4), i.logFile(), tail(i.readLog(), 6))
	}
	i.log().Info("recovering server started", "datadir", i.DataDir, "socket_dir", i.SocketDir)
	return nil
}

// waitPromoted polls the private server until it is out of recovery. The
// postmaster exiting meanwhile is an error carrying the end of its log
// (such as "recovery ended before configured recovery target was
// reached").
func (i *Instance) waitPromoted(ctx context.Context, t0 time.Time, progress func(RecoveryProgress)) error {
	started := time.Now()
	seen := false
	lastReport := time.Now()
	for {
		pid, err := i.postmasterPID()
		if err != nil {
			return err
		}
		switch {
		case pid != 0:
			if sock, _ := i.pidFileSockets(); sock != "" && sock != i.SocketDir {
				// Another start won the data directory (its log says
				// "lock file postmaster.pid already exists" for ours).
				return fmt.Errorf("pg: another postmaster (pid %d) serves %s: %w", pid, i.DataDir, ErrRunning)
			}
			seen = true
		case seen || time.Since(started) > 30*time.Second:
			return fmt.Errorf("pg: the recovering server stopped before it promoted; log %s: %s", i.logFile(), tail(i.readLog(), 8))
		}
		if pid != 0 {
			done, p, err := i.recoveryState(ctx)
			switch {
			case err != nil:
				// Not accepting connections yet (not consistent, or hot
				// standby off): keep waiting.
			case done:
				i.log().Info("recovery finished: promoted", "took", time.Since(t0).Round(time.Millisecond))
				return nil
			case progress != nil && time.Since(lastReport) >= 10*time.Second:
				p.Elapsed = time.Since(t0)
				progress(p)
				lastReport = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pg: waiting for the recovery to finish: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// recoveryState says whether the server is out of recovery, and how far
// it replayed.
func (i *Instance) recoveryState(ctx context.Context) (bool, RecoveryProgress, error) {
	var p RecoveryProgress
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := i.connect(cctx)
	if err != nil {
		return false, p, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var inRecovery bool
	var lsn *string
	var last *time.Time
	err = conn.QueryRow(cctx, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()").Scan(&inRecovery, &lsn, &last)
	if err != nil {
		return false, p, err
	}
	if lsn != nil {
		p.ReplayLSN, _ = ParseLSN(*lsn)
	}
	if last != nil {
		p.LastReplayed = *last
	}
	return !inRecovery, p, nil
}

// waitArchived waits, up to wait, until the archiver has no file left
// to archive, and returns how many were left (0 with archiving off).
func (i *Instance) waitArchived(ctx context.Context, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	for {
		n, err := i.archivePending(ctx)
		if err != nil {
			i.log().Warn("reading the archiver's progress", "err", err)
			return 0
		}
		if n == 0 || time.Now().After(deadline) {
			if n > 0 {
				i.log().Warn("WAL files still waiting for the archiver; the next start archives them", "files", n)
			}
			return n
		}
		select {
		case <-ctx.Done():
			return n
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// archivePending counts the WAL files marked ready for the archiver; 0
// when archiving is off.
func (i *Instance) archivePending(ctx context.Context) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := i.connect(cctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(cctx, `SELECT CASE WHEN current_setting('archive_mode') = 'off' THEN 0
		ELSE (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') END`).Scan(&n)
	return n, err
}
