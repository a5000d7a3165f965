package pg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// PostmasterPID returns the pid of the live postmaster serving the data
// directory, or 0 when none runs.
func (i *Instance) PostmasterPID() (int, error) { return i.postmasterPID() }

// WaitExit returns nil when the process pid has exited, at once, through
// a pidfd (the agent is not its parent and could otherwise only poll): a
// crashed primary is noticed in milliseconds rather than at the next
// loop. It returns ctx's error when ctx ends first. On a kernel without
// pidfds (before Linux 5.3) it looks every 5 ms instead.
func WaitExit(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if errors.Is(err, unix.ENOSYS) {
		return pollExit(ctx, pid)
	}
	if err != nil {
		return fmt.Errorf("pg: pidfd of %d: %w", pid, err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for ctx.Err() == nil {
		// A bounded poll so that an ended ctx is seen within a tick.
		n, err := unix.Poll(fds, int((250 * time.Millisecond).Milliseconds()))
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return fmt.Errorf("pg: poll pidfd of %d: %w", pid, err)
		case n > 0:
			return nil
		}
	}
	return ctx.Err()
}

// pollExit is WaitExit by looking every 5 ms: the process is gone, or a
// zombie (exited, not yet reaped by its parent).
func pollExit(ctx context.Context, pid int) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if !running(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// running reports whether pid is a process that has not exited.
func running(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	k := bytes.LastIndexByte(stat, ')')
	return k < 0 || k+2 >= len(stat) || stat[k+2] != 'Z'
}
