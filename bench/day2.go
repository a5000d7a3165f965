package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgherd/pgherd/e2e/day2"
	"github.com/pgherd/pgherd/e2e/lab"
)

// day2Suite times each day-2 procedure on a 3-member cluster of
// examples/ha installed at 15.18, under a client writing continuously
// through the VIP: the minor upgrade to 15.20, a rolling restart for
// shared_buffers, an agent upgrade. For each: the apply's wall time, the
// longest gap between two acknowledged writes, and the acknowledged writes
// lost (must be 0). Its lab is pgherd-bench-day2 on 10.88.0.0/24.
func day2Suite(ctx context.Context, log *slog.Logger, bin, work string, keep bool) (string, error) {
	const net = "10.88.0"
	l, err := lab.Up(ctx, lab.Config{Name: "pgherd-bench-day2", Hosts: 4, Subnet: net + ".0/24", Dir: filepath.Join(work, "labday2"), Log: log})
	if err != nil {
		return "", err
	}
	if !keep {
		defer l.Down(context.WithoutCancel(ctx))
	}
	// Another agent binary: the same code with another version string.
	next := filepath.Join(work, "pgherd-next")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/pgherd/pgherd/cli.version=bench-day2-next", "-o", next, "./cmd/pgherd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the next pgherd: %v\n%s", err, b)
	}
	example, err := os.ReadFile("examples/ha/main.hcl")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(work, "specday2")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	write := func(pkg, sharedBuffers string) error {
		spec, err := day2.Spec(string(example), net, pkg, sharedBuffers)
		if err != nil {
			return err
		}
		for name, content := range map[string]string{"main.hcl": spec, "lab.hcl": l.SpecSnippet()} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	apply := func(bin string) (time.Duration, error) {
		c := exec.CommandContext(ctx, bin, "apply", "-auto-approve", dir)
		c.Env = append(os.Environ(), "NO_COLOR=1")
		return timed(c)
	}

	log.Info("day2: the cluster at 15.18")
	if err := write(day2.FromVersion, "128MB"); err != nil {
		return "", err
	}
	if _, err := apply(bin); err != nil {
		return "", err
	}
	wctx, stop := context.WithCancel(ctx)
	w, err := day2.StartWriter(wctx, day2.DSN(net))
	if err != nil {
		stop()
		return "", err
	}
	defer func() { stop(); <-w.Done }()
	if err := w.WaitAcks(ctx, 0, 50); err != nil {
		return "", err
	}

	var b strings.Builder
	b.WriteString("## Day-2 procedures on a running cluster (examples/ha, 3 members)\n\n")
	fmt.Fprintf(&b, "Machine: %s. 3 lab hosts; a client inserts one row per transaction through the VIP's primary port (HAProxy), reconnecting at once on an error. ", machine())
	b.WriteString("Write gap: the longest time between two acknowledged writes during the apply (the client's view of the switchover or restart). One run each (a procedure changes the cluster).\n\n")
	b.WriteString("| procedure | apply wall time | longest write gap | acknowledged writes | lost |\n|---|---:|---:|---:|---:|\n")
	for _, p := range []struct {
		name, bin, pkg, sharedBuffers string
	}{
		{"minor upgrade 15.18 → 15.20 (rolling, switchover)", bin, day2.ToVersion, "128MB"},
		{"rolling restart (shared_buffers 128MB → 256MB)", bin, day2.ToVersion, "256MB"},
		{"agent upgrade (in place, no failover)", next, day2.ToVersion, "256MB"},
	} {
		log.Info("day2: " + p.name)
		if err := write(p.pkg, p.sharedBuffers); err != nil {
			return "", err
		}
		mark := w.Mark()
		d, err := apply(p.bin)
		if err != nil {
			return "", err
		}
		if err := w.WaitAcks(ctx, w.Mark(), 20); err != nil {
			return "", err
		}
		acks := w.Since(mark)
		lost, err := w.Missing(ctx, acks)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d |\n", p.name, sec(d), sec(w.MaxGap(mark)), len(acks), len(lost))
	}
	b.WriteString("\nTarget (issue 7): the switchover's write gap at most 1 s; no acknowledged write lost.\n")
	return b.String(), nil
}
