package executors_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/executors"
)

// locker is what Lock is called on: SSH and Local.
type locker interface {
	Lock(ctx context.Context, path string) (func() error, error)
}

// testLock checks one lock path with two lockers of the same host.
func testLock(t *testing.T, a, b locker, path string) {
	t.Helper()
	ctx := ctxT(t)
	unlock, err := a.Lock(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]locker{"other": b, "same": a} {
		_, err = l.Lock(ctx, path)
		if !errors.Is(err, executors.ErrLocked) {
			t.Fatalf("second Lock (%s connection): %v, want ErrLocked", name, err)
		}
		if want := fmt.Sprintf("pid %d since", os.Getpid()); !strings.Contains(err.Error(), want) {
			t.Errorf("message %q should name the holder (%q)", err, want)
		}
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Errorf("second unlock: %v", err)
	}
	unlock, err = b.Lock(ctx, path)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock()
}

func TestSSHLock(t *testing.T) {
	d := startSSHD(t)
	path := filepath.Join(t.TempDir(), "pgherd.lock")
	t.Run("root", func(t *testing.T) {
		testLock(t, dial(t, d.config(t, "root")), dial(t, d.config(t, "root")), path)
	})
	t.Run("sudo", func(t *testing.T) {
		cfg := d.config(t, sudoUser)
		cfg.Sudo = true
		testLock(t, dial(t, cfg), dial(t, d.config(t, "root")), path)
	})
	t.Run("released when the holder's connection dies", func(t *testing.T) {
		holder := dial(t, d.config(t, "root"))
		if _, err := holder.Lock(ctxT(t), path); err != nil {
			t.Fatal(err)
		}
		other := dial(t, d.config(t, "root"))
		if _, err := other.Lock(ctxT(t), path); !errors.Is(err, executors.ErrLocked) {
			t.Fatalf("err = %v, want ErrLocked", err)
		}
		holder.Close() // never unlocked
		deadline := time.Now().Add(15 * time.Second)
		for {
			unlock, err := other.Lock(ctxT(t), path)
			if err == nil {
				unlock()
				break
			}
			if !errors.Is(err, executors.ErrLocked) || time.Now().After(deadline) {
				t.Fatalf("lock not released after the holder's connection closed: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("does not hold a session slot after failing", func(t *testing.T) {
		cfg := d.config(t, "root")
		cfg.MaxSessions = 2
		a, b := dial(t, cfg), dial(t, cfg)
		unlock, err := a.Lock(ctxT(t), path)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		for range 5 {
			if _, err := b.Lock(ctxT(t), path); !errors.Is(err, executors.ErrLocked) {
				t.Fatalf("err = %v", err)
			}
		}
		if _, err := b.Run(ctxT(t), "true", nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLocalLock(t *testing.T) {
	l := executors.NewLocal("here", 0, nil)
	testLock(t, l, l, filepath.Join(t.TempDir(), "pgherd.lock"))
}
