package executors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Local runs commands and writes files on this machine. It is how pgherd
// manages localhost, and a real Host for tests.
type Local struct {
	name           string
	log            *slog.Logger
	commandTimeout time.Duration
}

// NewLocal returns an executor for this machine, called name in errors.
// commandTimeout bounds each command (0 = none).
func NewLocal(name string, commandTimeout time.Duration, log *slog.Logger) *Local {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if name == "" {
		name = "localhost"
	}
	return &Local{name: name, log: log.With("host", name), commandTimeout: commandTimeout}
}

// Name is the name given to NewLocal.
func (l *Local) Name() string { return l.name }

// Run runs cmd with `sh -c` in its own process group; when ctx ends or the
// command timeout passes, the whole group is killed and the error wraps
// ctx's error.
func (l *Local) Run(ctx context.Context, cmd string, stdin io.Reader) (Result, error) {
	return l.RunStreaming(ctx, cmd, stdin, nil)
}

// RunStreaming is Run that also calls stderrLine, when not nil, with each
// line of the command's standard error as it comes (the Result still holds
// all of it), from one goroutine at a time and never once it returned.
func (l *Local) RunStreaming(ctx context.Context, cmd string, stdin io.Reader, stderrLine func(line string)) (Result, error) {
	if l.commandTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.commandTimeout)
		defer cancel()
	}
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	errW, endLines := teeLines(&stderr, stderrLine)
	c.Stdin, c.Stdout, c.Stderr = stdin, &stdout, errW
	start := time.Now()
	err := c.Run()
	endLines()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if ctx.Err() != nil {
		what := "cancelled"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			what = "timed out"
		}
		return res, hostErr(l.name, "", nil, ctx.Err(), "command %q %s after %s", shorten(cmd), what, time.Since(start).Round(time.Millisecond))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		if res.ExitCode < 0 { // killed by a signal
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				res.ExitCode = 128 + int(ws.Signal())
			}
		}
	default:
		return res, hostErr(l.name, "", nil, err, "running %q", shorten(cmd))
	}
	l.log.Debug("ran", "cmd", shorten(cmd), "exit", res.ExitCode)
	return res, nil
}

// PutFile writes content to a temporary file (mode 0600) next to path, sets
// owner, group and mode, and renames it over path. Owner and group default
// to root when running as root; otherwise ownership is left alone unless
// given.
func (l *Local) PutFile(ctx context.Context, path string, content io.Reader, attrs FileAttrs) error {
	fail := func(err error) error { return hostErr(l.name, "", nil, err, "put %s", path) }
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".pgherd-*")
	if err != nil {
		return fail(err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, ctxReader{ctx, content}); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if attrs.Owner != "" || attrs.Group != "" || os.Geteuid() == 0 {
		uid, gid, err := lookupOwner(attrs)
		if err != nil {
			return fail(err)
		}
		if err := f.Chown(uid, gid); err != nil {
			return fail(err)
		}
	}
	mode := attrs.Mode.Perm()
	if mode == 0 {
		mode = 0o644
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	ok = true
	return nil
}

func lookupOwner(a FileAttrs) (uid, gid int, err error) {
	o, g := a.Owner, a.Group
	if o == "" {
		o = "root"
	}
	if g == "" {
		g = "root"
	}
	u, err := user.Lookup(o)
	if err != nil {
		return 0, 0, err
	}
	gr, err := user.LookupGroup(g)
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(gr.Gid)
	return uid, gid, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// GetFile reads a whole file; a missing file wraps fs.ErrNotExist.
func (l *Local) GetFile(ctx context.Context, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, hostErr(l.name, "", nil, err, "get %s", path)
	}
	return b, nil
}

// Lock takes an exclusive flock on path ("" means DefaultLockPath) and
// records the holder in it; the lock is released by unlock or when this
// process exits. If it is held (by any process, this one included), the
// error wraps ErrLocked and names the holder.
func (l *Local) Lock(ctx context.Context, path string) (unlock func() error, err error) {
	if path == "" {
		path = DefaultLockPath
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, hostErr(l.name, "", nil, err, "opening lock %s", path)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder, _ := os.ReadFile(path)
			return nil, lockedError(l.name, "", path, string(holder))
		}
		return nil, hostErr(l.name, "", nil, err, "flock %s", path)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintln(f, holderInfo())
	}
	var once sync.Once
	var cerr error
	return func() error {
		once.Do(func() { cerr = f.Close() }) // closing the descriptor releases the flock
		return cerr
	}, nil
}
