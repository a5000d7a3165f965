package pg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// InitOptions are the choices made once, at initdb. Data checksums are
// always on: pg_rewind needs them (or wal_log_hints) to rejoin an old
// primary.
type InitOptions struct {
	Encoding string // "" = UTF8
	Locale   string // "" = C.UTF-8
	// AuthLocal and AuthHost are initdb's --auth-local and --auth-host;
	// "" = peer and scram-sha-256.
	AuthLocal string
	AuthHost  string
	// PasswordFile holds the superuser's password (initdb --pwfile); ""
	// = no password.
	PasswordFile string
	// HBA lines are appended to pg_hba.conf (replication from the other
	// members, the agent's and clients' networks).
	HBA []string
	// Parameters seed the managed configuration file.
	Parameters map[string]string
}

// InitDB creates a new cluster in an empty (or absent) data directory. It
// refuses, with ErrAlreadyInitialized, a data directory that already holds
// one.
func (i *Instance) InitDB(ctx context.Context, opts InitOptions) error {
	ok, err := i.Initialized()
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("pg: initdb %s: %w", i.DataDir, ErrAlreadyInitialized)
	}
	if err := i.mkdirOwned(i.DataDir, 0o700); err != nil {
		return err
	}
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	args := []string{
		"-D", i.DataDir,
		"--data-checksums",
		"--username", i.superuser(),
		"--encoding", def(opts.Encoding, "UTF8"),
		"--locale", def(opts.Locale, "C.UTF-8"),
		"--auth-local", def(opts.AuthLocal, "peer"),
		"--auth-host", def(opts.AuthHost, "scram-sha-256"),
	}
	if opts.PasswordFile != "" {
		args = append(args, "--pwfile", opts.PasswordFile)
	}
	if _, err := i.run(ctx, "initdb", args...); err != nil {
		return err
	}
	if len(opts.HBA) > 0 {
		p := i.path("pg_hba.conf")
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("pg: read pg_hba.conf: %w", err)
		}
		data = append(data, []byte("\n# pgherd\n"+strings.Join(opts.HBA, "\n")+"\n")...)
		if err := i.writeFile(p, data); err != nil {
			return err
		}
	}
	if _, err := i.setSpecParameters(opts.Parameters); err != nil {
		return err
	}
	if err := i.ensureInclude(); err != nil {
		return err
	}
	i.log().Info("initdb done", "datadir", i.DataDir)
	return nil
}

// postmasterPID returns the pid of the live postmaster serving the data
// directory, or 0 when none is (no postmaster.pid, a stale one, or a pid
// that now belongs to another program).
func (i *Instance) postmasterPID() (int, error) {
	data, err := os.ReadFile(i.path("postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pg: read postmaster.pid: %w", err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, nil // being written, or garbage: not a live postmaster
	}
	if !isPostgres(pid) {
		return 0, nil
	}
	return pid, nil
}

// isPostgres reports whether pid is a live postgres process.
func isPostgres(pid int) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(cmdline) == 0 {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	base := filepath.Base(string(argv0))
	if base != "postgres" && base != "postmaster" {
		return false
	}
	// A zombie still has /proc/pid but no cmdline; check the state too.
	return running(pid)
}

// Running reports whether a postmaster serves the data directory.
func (i *Instance) Running() (bool, error) {
	pid, err := i.postmasterPID()
	return pid != 0, err
}

// startOptions are the postmaster's command-line settings: the host's
// identity, which must survive configuration files copied from another
// member.
func (i *Instance) startOptions() string {
	opts := []string{"-p", strconv.Itoa(i.Port)}
	if i.SocketDir != "" {
		opts = append(opts, "-c", "unix_socket_directories="+i.SocketDir)
	}
	if i.ListenAddresses != "" {
		opts = append(opts, "-c", "listen_addresses="+i.ListenAddresses)
	}
	q := make([]string, len(opts))
	for n, o := range opts {
		q[n] = shellQuote(o)
	}
	return strings.Join(q, " ")
}

// shellQuote quotes a word for /bin/sh (pg_ctl passes -o through a shell).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Start starts the postmaster with pg_ctl and waits until it accepts
// connections (a standby accepts them once consistent, with hot_standby on).
// It is a no-op when postgres is already running. The postmaster runs in a
// process group of its own, so that it outlives the agent.
func (i *Instance) Start(ctx context.Context) error {
	ok, err := i.Initialized()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("pg: start %s: %w", i.DataDir, ErrNotInitialized)
	}
	if pid, err := i.runningPID(ctx); err != nil || pid != 0 {
		return err
	}
	if err := i.ensureInclude(); err != nil {
		return err
	}
	if i.SocketDir != "" {
		if err := i.mkdirOwned(i.SocketDir, 0o755); err != nil {
			return err
		}
	}
	// pg_ctl -t waits at most that long; ctx may cut it shorter.
	cmd, err := i.command(ctx, "pg_ctl", "start", "-w", "-t", "300", "-D", i.DataDir, "-l", i.logFile(), "-o", i.startOptions())
	if err != nil {
		return err
	}
	cmd.SysProcAttr.Setpgid = true
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pg: pg_ctl start: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// pg_ctl looks every 100 ms whether the server is ready; the agent
	// looks every 5 ms too and goes on as soon as it is (pg_ctl then
	// exits on its own), as a crashed primary is down until then.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("pg: pg_ctl start: %w: %s; log %s: %s", err, tail(out.String(), 4), i.logFile(), tail(i.readLog(), 6))
			}
		case <-tick.C:
			if !i.readySince(t0) {
				continue
			}
		}
		i.log().Info("postgres started", "datadir", i.DataDir, "port", i.Port, "took", time.Since(t0).Round(time.Millisecond))
		return nil
	}
}

// readySince reports that a postmaster started at t0 or later serves the
// data directory and accepts connections (postmaster.pid's status line
// says ready, or standby on a hot standby).
func (i *Instance) readySince(t0 time.Time) bool {
	lines := i.pidFileLines()
	if lines == nil {
		return false
	}
	pid, err1 := strconv.Atoi(lines[0])
	started, err2 := strconv.ParseInt(lines[2], 10, 64)
	status := lines[7]
	return err1 == nil && err2 == nil && started >= t0.Unix()-1 &&
		(status == "ready" || status == "standby") && isPostgres(pid)
}

func (i *Instance) readLog() string {
	f, err := os.Open(i.logFile())
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	const max = 4096
	off := max64(st.Size()-max, 0)
	buf := make([]byte, max)
	n, _ := f.ReadAt(buf, off)
	return string(buf[:n])
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// StopMode is pg_ctl's shutdown mode.
type StopMode string

// Shutdown modes, as pg_ctl -m names them.
const (
	// Smart waits for every client to disconnect.
	Smart StopMode = "smart"
	// Fast disconnects clients, writes a shutdown checkpoint, and on a
	// primary waits until the standbys received all WAL: the mode for a
	// switchover.
	Fast StopMode = "fast"
	// Immediate kills every process at once; the next start runs crash
	// recovery.
	Immediate StopMode = "immediate"
)

// Stop stops the postmaster with pg_ctl and waits until it exited. It is a
// no-op when postgres is not running.
func (i *Instance) Stop(ctx context.Context, mode StopMode) error {
	switch mode {
	case Smart, Fast, Immediate:
	default:
		return fmt.Errorf("pg: unknown stop mode %q", mode)
	}
	return i.stop(ctx, mode, nil)
}

// stop sends the postmaster mode's signal and waits for it to exit, or,
// with done set, until done says the shutdown is as far as the caller
// needs (checked every 5 ms). pg_ctl stop's signals are sent here and
// waited for through a pidfd: pg_ctl looks every 100 ms, and a
// switchover's write pause lasts until the old primary is seen stopped.
func (i *Instance) stop(ctx context.Context, mode StopMode, done func(pid int) bool) error {
	pid, err := i.postmasterPID()
	if err != nil || pid == 0 {
		return err
	}
	t0 := time.Now()
	if err := syscall.Kill(pid, stopSignals[mode]); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil // it stopped anyway (raced with another stop)
		}
		return fmt.Errorf("pg: stop (%s): signal %d: %w", mode, pid, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 600*time.Second)
	defer cancel()
	exited := make(chan error, 1)
	go func() { exited <- WaitExit(wctx, pid) }()
	var tick <-chan time.Time
	if done != nil {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("pg: stop (%s): postmaster %d still running: %w", mode, pid, err)
			}
			i.log().Info("postgres stopped", "mode", mode, "took", time.Since(t0).Round(time.Millisecond))
			return nil
		case <-tick:
			if done(pid) {
				i.log().Info("postgres shut down; its postmaster finishes exiting (archiving)", "pid", pid, "took", time.Since(t0).Round(time.Millisecond))
				return nil
			}
		}
	}
}

// stopSignals are the postmaster's shutdown signals per mode.
var stopSignals = map[StopMode]syscall.Signal{Smart: syscall.SIGTERM, Fast: syscall.SIGINT, Immediate: syscall.SIGQUIT}

// Restart stops postgres (fast) and starts it again.
func (i *Instance) Restart(ctx context.Context) error {
	if err := i.Stop(ctx, Fast); err != nil {
		return err
	}
	return i.Start(ctx)
}

// Reload makes the postmaster re-read its configuration files (SIGHUP, what
// pg_ctl reload sends). It returns ErrNotRunning when postgres is down.
func (i *Instance) Reload(ctx context.Context) error {
	pid, err := i.postmasterPID()
	if err != nil {
		return err
	}
	if pid == 0 {
		return fmt.Errorf("pg: reload: %w", ErrNotRunning)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("pg: reload: signal %d: %w", pid, err)
	}
	return nil
}

// Promote ends recovery on a standby (pg_promote, waiting up to 60 s or
// ctx) and returns once the server is out of recovery and a checkpoint
// has recorded the new timeline in pg_control. It then drops
// primary_conninfo and primary_slot_name from the managed configuration,
// which a primary ignores, so that the file tells the truth.
func (i *Instance) Promote(ctx context.Context) error {
	conn, err := i.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("pg: promote: %w", err)
	}
	if inRecovery {
		t0 := time.Now()
		// pg_promote(wait => true) looks every 100 ms whether recovery
		// ended: the agent asks every 5 ms instead, as the write pause of
		// a failover lasts until the promotion is seen.
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_promote(false)").Scan(&ok); err != nil {
			return fmt.Errorf("pg: promote: %w", err)
		}
		if !ok {
			return fmt.Errorf("pg: promote: the server did not accept the promotion request")
		}
		for inRecovery {
			if time.Since(t0) > 60*time.Second {
				return fmt.Errorf("pg: promote: still in recovery after 60 s")
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("pg: promote: %w", ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
			if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
				return fmt.Errorf("pg: promote: %w", err)
			}
		}
		i.log().Info("promoted", "took", time.Since(t0).Round(time.Millisecond))
		// Until the end-of-recovery checkpoint completes, pg_control still
		// names the old timeline and pg_rewind against this server would
		// see no fork. Writes are already accepted; this only bounds how
		// soon the old primary can rejoin.
		if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
			return fmt.Errorf("pg: checkpoint after promote: %w", err)
		}
	}
	_, err = i.updateManaged(nil, "primary_conninfo", "primary_slot_name")
	return err
}

// FenceGrace is how long Fence waits for the postmaster to exit after
// SIGQUIT before it SIGKILLs it and its children.
const FenceGrace = 2 * time.Second

// Fence stops the server from accepting writes as fast as it can: it sends
// SIGQUIT to the postmaster itself (an immediate shutdown, without the fork
// and exec of pg_ctl), whose children quit at once, and waits for the
// postmaster to exit; the postmaster exits only after all its backends, so
// when Fence returns nil no backend can commit. If the postmaster is not
// gone after FenceGrace, Fence SIGKILLs its children and then it. The next
// start runs crash recovery. Fence returns nil when postgres is not running.
func (i *Instance) Fence(ctx context.Context) error {
	pid, err := i.postmasterPID()
	if err != nil || pid == 0 {
		return err
	}
	t0 := time.Now()
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("pg: fence: signal %d: %w", pid, err)
	}
	grace := time.NewTimer(FenceGrace)
	defer grace.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for isPostgres(pid) {
		select {
		case <-grace.C:
			i.log().Warn("fence: postmaster ignored SIGQUIT, killing", "pid", pid)
			for _, c := range childrenOf(pid) {
				_ = syscall.Kill(c, syscall.SIGKILL)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		case <-ctx.Done():
			return fmt.Errorf("pg: fence: postmaster %d still alive: %w", pid, ctx.Err())
		case <-tick.C:
		}
	}
	i.log().Warn("fenced: postgres stopped immediately", "pid", pid, "took", time.Since(t0))
	return nil
}

// childrenOf lists the pids whose parent is ppid.
func childrenOf(ppid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		k := bytes.LastIndexByte(stat, ')')
		if k < 0 {
			continue
		}
		f := strings.Fields(string(stat[k+1:]))
		if len(f) > 1 {
			if p, _ := strconv.Atoi(f[1]); p == ppid {
				kids = append(kids, pid)
			}
		}
	}
	return kids
}
