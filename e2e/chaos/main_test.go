package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgherd/pgherd/e2e/lab"
)

// The soak's own lab: three hosts with a data disk each (for the disk-full
// fault), on a subnet no other suite uses.
const (
	labName   = "pgherd-chaos"
	labNet    = "10.85.0"
	labDisk   = "512m"
	labSubnet = labNet + ".0/24"
)

var (
	// pgherdBin is the binary under test, built by TestMain.
	pgherdBin string
	theLab    *lab.Lab
)

func TestMain(m *testing.M) {
	if os.Getenv("PGHERD_E2E") != "1" {
		// The checker's unit tests need no lab.
		os.Exit(m.Run())
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "pgherd-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	pgherdBin = filepath.Join(tmp, "pgherd")
	build := exec.Command("go", "build", "-o", pgherdBin, "../../cmd/pgherd")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	// Static: the binary is uploaded to the hosts as their agent.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: building pgherd:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// The default state directory, so that `pgherd lab down --name
	// pgherd-chaos` cleans up (data disks included) after a kept or
	// interrupted run.
	theLab, err = lab.Up(ctx, lab.Config{Name: labName, Hosts: 4, Subnet: labSubnet, DataDisk: labDisk, Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: lab up:", err)
		return 1
	}
	code := m.Run()
	if os.Getenv("PGHERD_E2E_KEEP") == "" {
		if err := theLab.Down(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: lab down:", err)
		}
	} else {
		fmt.Fprintf(os.Stderr, "chaos: lab kept (PGHERD_E2E_KEEP): pgherd lab down --name %s\n", labName)
	}
	return code
}
