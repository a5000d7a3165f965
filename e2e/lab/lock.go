package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lock takes an exclusive lock on the lab's name, so that two processes
// bringing up or taking down the same lab (two test packages, a user and a
// test) wait for each other instead of racing on the image build and the
// container names. The returned func releases it.
func (l *Lab) lock(ctx context.Context) (func(), error) {
	return l.lockFile(ctx, "pgherd-lab-"+l.name)
}

// lockImages serializes image builds, which all labs share.
func (l *Lab) lockImages(ctx context.Context) (func(), error) {
	return l.lockFile(ctx, imagePrefix+"-images")
}

// lockFile takes an exclusive lock on /tmp/<name>.lock, waiting for it.
func (l *Lab) lockFile(ctx context.Context, name string) (func(), error) {
	path := filepath.Join(os.TempDir(), name+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock lab %s: %w", l.name, err)
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock lab %s: %w", l.name, err)
		}
		if !logged {
			l.log.Info("waiting for another process working on the same lab", "lock", path)
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock lab %s: %w", l.name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
