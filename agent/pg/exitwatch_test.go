package pg

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

func TestWaitExit(t *testing.T) {
	testWaitExit(t, WaitExit)
}

// TestPollExit is WaitExit's way on kernels without pidfds.
func TestPollExit(t *testing.T) {
	testWaitExit(t, pollExit)
}

func testWaitExit(t *testing.T, wait func(context.Context, int) error) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := wait(ctx, cmd.Process.Pid); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitExit of a live process = %v, want the context's deadline", err)
	}
	done := make(chan error, 1)
	go func() { done <- wait(context.Background(), cmd.Process.Pid) }()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Not reaped yet: a zombie has exited all the same.
	if err := <-done; err != nil {
		t.Fatalf("WaitExit of a killed process = %v", err)
	}
	_ = cmd.Wait()
	if err := wait(context.Background(), cmd.Process.Pid); err != nil {
		t.Fatalf("WaitExit of a reaped process = %v", err)
	}
}
