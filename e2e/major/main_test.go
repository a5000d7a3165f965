// The major-upgrade scenario runs against two clusters in their own lab
// (pgherd-e2e-major on 10.95.0.0/24; PGHERD_E2E_MAJOR_LAB and
// PGHERD_E2E_MAJOR_NET move it): the old one, PostgreSQL 15 on
// node1..node3 behind a VIP, and the new one, PostgreSQL 17 from trixie on
// node4. A client writes continuously through a multi-host connection
// string while pgherd upgrade major moves the databases over. The test
// runs only when PGHERD_E2E=1.

package major

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

var (
	pgherdBin string
	theLab    *lab.Lab
	labName   = envOr("PGHERD_E2E_MAJOR_LAB", "pgherd-e2e-major")
	labNet    = envOr("PGHERD_E2E_MAJOR_NET", "10.95.0")
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	if os.Getenv("PGHERD_E2E") != "1" {
		fmt.Println("e2e/major: skipped; set PGHERD_E2E=1 to run the lab scenario (make e2e-extended)")
		os.Exit(0)
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "pgherd-e2e-major-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	pgherdBin = filepath.Join(tmp, "pgherd")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/pgherd/pgherd/cli.version=e2e-major", "-o", pgherdBin, "../../cmd/pgherd")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	// Static: the binary is uploaded to the hosts as their agent.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/major: building pgherd:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	theLab, err = lab.Up(ctx, lab.Config{Name: labName, Hosts: 4, Subnet: labNet + ".0/24", Dir: filepath.Join(tmp, "lab"), Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/major: lab up:", err)
		return 1
	}
	code := m.Run()
	if os.Getenv("PGHERD_E2E_KEEP") == "" {
		if err := theLab.Down(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "e2e/major: lab down:", err)
		}
	} else {
		fmt.Fprintf(os.Stderr, "e2e/major: lab kept (PGHERD_E2E_KEEP): %s\n", theLab.Dir())
	}
	return code
}
