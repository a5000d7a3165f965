// Package pg is how the HA agent observes and acts on the local PostgreSQL:
// initdb, start and stop, status, promotion, cloning and rewinding a
// replica, replication slots, synchronous standby names, fencing.
//
// The agent owns the postmaster: it is started with pg_ctl, never by a
// Debian postgresql@ unit. SQL goes through pgx over the local unix socket;
// everything else goes through the PostgreSQL binaries, run as Instance.User
// when the agent runs as root (tests do) and as the current user otherwise.
//
// # Managed configuration
//
// Parameters the agent decides (primary_conninfo, primary_slot_name,
// synchronous_standby_names, and whatever the spec asks for) live in
// pgherd.conf, a file in the data directory that the agent alone writes. The
// last line of postgresql.conf is "include 'pgherd.conf'" (added by InitDB
// and checked again by Start), so the managed file wins over postgresql.conf.
// postgresql.auto.conf (ALTER SYSTEM) is read after both and still wins:
// when it overrides a managed parameter, the setters report ErrOverridden
// instead of pretending the value applies. The per-host identity of the
// server (port, socket directory, listen addresses) is given on the
// postmaster's command line, so that a data directory cloned or rewound from
// another host (pg_basebackup and pg_rewind copy the configuration files)
// still listens where this host's Instance says.
package pg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Sentinel errors; test them with errors.Is.
var (
	// ErrNotInitialized: the data directory holds no cluster (no PG_VERSION).
	ErrNotInitialized = errors.New("data directory is not initialized")
	// ErrAlreadyInitialized: InitDB was asked to initialize a data
	// directory that already holds a cluster.
	ErrAlreadyInitialized = errors.New("data directory is already initialized")
	// ErrDataDirNotEmpty: Clone was given a non-empty data directory and
	// was not told to move it aside.
	ErrDataDirNotEmpty = errors.New("data directory is not empty")
	// ErrNotRunning: the operation needs a running postmaster.
	ErrNotRunning = errors.New("postgres is not running")
	// ErrRunning: the operation needs a stopped postmaster.
	ErrRunning = errors.New("postgres is running")
	// ErrOverridden: a managed parameter does not take effect because a
	// later source (postgresql.auto.conf, the command line) sets it.
	ErrOverridden = errors.New("managed parameter is overridden")
	// ErrUnmanagedSlot: a slot name without the pgherd prefix was given to
	// EnsureSlots.
	ErrUnmanagedSlot = errors.New("slot is not managed by pgherd")
	// ErrSlotMissing: Clone was given a slot that the source still did
	// not have when the wait for it ended (CloneOptions.SlotWait).
	ErrSlotMissing = errors.New("replication slot does not exist on the source")
)

// Instance is one local PostgreSQL cluster (a data directory and the
// postmaster that serves it). Its fields are configuration; an Instance holds
// no connection or other state between calls, so its methods may be called
// from several goroutines, though the agent loop is expected to be the only
// caller that acts.
type Instance struct {
	// Name is the member's name; it is the application_name a standby
	// reports to its upstream (what synchronous_standby_names refers to).
	Name string
	// BinDir holds the PostgreSQL binaries, e.g. /usr/lib/postgresql/15/bin.
	BinDir  string
	DataDir string
	Port    int
	// SocketDir is the unix socket directory used for local connections.
	SocketDir string
	// ListenAddresses is listen_addresses for TCP ("" = PostgreSQL's
	// default, localhost).
	ListenAddresses string
	// LogFile receives the postmaster's output (pg_ctl -l). "" means
	// DataDir + ".log", beside the data directory and not inside it, so
	// that pg_basebackup and pg_rewind never copy it between hosts.
	LogFile string
	// User is the OS user the binaries run as when the current process is
	// root; "" = the current user. It owns the data directory.
	User string
	// Superuser is the database superuser the agent connects as over the
	// unix socket; "" = "postgres".
	Superuser string
	Log       *slog.Logger
}

// ManagedConfFile is the name, inside the data directory, of the
// configuration file the agent owns.
const ManagedConfFile = "pgherd.conf"

// IncludeLine is appended to postgresql.conf to read the managed file.
const IncludeLine = "include '" + ManagedConfFile + "'"

func (i *Instance) log() *slog.Logger {
	if i.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return i.Log
}

func (i *Instance) superuser() string {
	if i.Superuser == "" {
		return "postgres"
	}
	return i.Superuser
}

func (i *Instance) logFile() string {
	if i.LogFile != "" {
		return i.LogFile
	}
	return filepath.Clean(i.DataDir) + ".log"
}

func (i *Instance) bin(name string) string { return filepath.Join(i.BinDir, name) }

func (i *Instance) path(name string) string { return filepath.Join(i.DataDir, name) }

// Initialized reports whether the data directory holds a cluster
// (PG_VERSION is present).
func (i *Instance) Initialized() (bool, error) {
	_, err := os.Stat(i.path("PG_VERSION"))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("pg: check %s: %w", i.DataDir, err)
	}
}

// owner is the identity binaries run as and files are written for; nil
// means the current process's own.
type owner struct {
	uid, gid uint32
	groups   []uint32
	home     string
}

func (i *Instance) owner() (*owner, error) {
	if i.User == "" || os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(i.User)
	if err != nil {
		return nil, fmt.Errorf("pg: look up user %q: %w", i.User, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	o := &owner{uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}
	gids, err := u.GroupIds()
	if err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				o.groups = append(o.groups, uint32(n))
			}
		}
	}
	return o, nil
}

// command prepares a PostgreSQL binary to run as the instance's user, with
// a clean environment: no PG* variables that could redirect it, and
// untranslated messages so that output can be parsed.
func (i *Instance) command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	o, err := i.owner()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, i.bin(name), args...)
	cmd.Dir = "/"
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" || (o != nil && (k == "HOME" || k == "USER" || k == "LOGNAME")) {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LANG=C.UTF-8", "LC_MESSAGES=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if o != nil {
		env = append(env, "HOME="+o.home, "USER="+i.User, "LOGNAME="+i.User)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: o.uid, Gid: o.gid, Groups: o.groups}
	}
	cmd.Env = env
	return cmd, nil
}

// run runs a binary and returns its combined output; a failure carries the
// tail of that output.
func (i *Instance) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd, err := i.command(ctx, name, args...)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	i.log().Debug("run", "cmd", name, "args", redactArgs(args))
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("pg: %s: %w: %s", name, err, tail(out.String(), 8))
	}
	return out.Bytes(), nil
}

// redactArgs hides passwords given in conninfo arguments from logs.
func redactArgs(args []string) []string {
	r := make([]string, len(args))
	for n, a := range args {
		if strings.Contains(a, "password=") {
			a = "(conninfo with password)"
		}
		r[n] = a
	}
	return r
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mkdirOwned creates dir (mode perm) owned by the instance's user.
func (i *Instance) mkdirOwned(dir string, perm os.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("pg: create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, perm); err != nil {
		return fmt.Errorf("pg: chmod %s: %w", dir, err)
	}
	return i.chown(dir)
}

func (i *Instance) chown(path string) error {
	o, err := i.owner()
	if err != nil || o == nil {
		return err
	}
	if err := os.Lchown(path, int(o.uid), int(o.gid)); err != nil {
		return fmt.Errorf("pg: chown %s: %w", path, err)
	}
	return nil
}

// writeFile writes a file atomically (temp file, rename) with mode 0600,
// owned by the instance's user.
func (i *Instance) writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pg: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("pg: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("pg: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pg: write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("pg: chmod %s: %w", path, err)
	}
	if err := i.chown(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pg: rename %s: %w", path, err)
	}
	return nil
}
