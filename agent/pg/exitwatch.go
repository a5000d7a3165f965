package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// PostmasterPID returns the pid of the live postmaster serving the data
// directory, or 0 when none runs.
func (i *Instance) PostmasterPID() (int, error) { return i.postmasterPID() }

// WaitExit returns nil when the process pid has exited, at once, through
// a pidfd (the agent is not its parent and could otherwise only poll): a
// crashed primary is noticed in milliseconds rather than at the next
// loop. It returns ctx's error when ctx ends first.
func WaitExit(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
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
