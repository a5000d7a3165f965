// Package suite is what the TestMain of each lab suite does: build the
// pgherd binaries under test, bring up the suite's own lab, run the tests,
// and take the lab down (kept when PGHERD_E2E_KEEP is set). The suites run
// only when PGHERD_E2E=1 (make test sets it).
package suite

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

// Config describes a suite.
type Config struct {
	// Name is the suite's name in messages, such as "e2e/day2".
	Name string
	// Versions, when set, are the version strings of the binaries to
	// build (the same code; an agent upgrade needs a second one); the
	// first is the binary under test. Unset: one binary, this tree's
	// version.
	Versions []string
	// Lab is the suite's lab. Its Dir defaults to one in the suite's work
	// directory; DefaultLabDir keeps lab.Up's default instead, so that
	// `pgherd lab down --name` cleans up after a kept run. Hosts 0: the
	// tests bring up their own labs.
	Lab           lab.Config
	DefaultLabDir bool
	// UnitsWithoutLab runs the tests without a lab when PGHERD_E2E is not
	// 1 (a suite whose package also holds unit tests); otherwise the
	// suite is skipped then.
	UnitsWithoutLab bool
}

// Env is what the tests get.
type Env struct {
	// Bin is the binary under test; Bins holds every binary by version
	// (Config.Versions).
	Bin  string
	Bins map[string]string
	// Dir is a work directory removed after the tests.
	Dir string
	// Lab is the suite's lab (nil when the tests bring up their own).
	Lab *lab.Lab
}

// EnvOr is the environment variable key, or def when unset.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Main runs the suite's tests and returns the exit code for os.Exit.
// ready is called with the environment before the tests run.
func Main(m *testing.M, cfg Config, ready func(*Env) error) int {
	if os.Getenv("PGHERD_E2E") != "1" {
		if cfg.UnitsWithoutLab {
			return m.Run()
		}
		fmt.Printf("%s: skipped; set PGHERD_E2E=1 to run the lab scenarios (make test)\n", cfg.Name)
		return 0
	}
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "%s: %s: %v\n", cfg.Name, what, err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "pgherd-"+filepath.Base(cfg.Name)+"-")
	if err != nil {
		return fail("work directory", err)
	}
	defer os.RemoveAll(tmp)
	env := &Env{Dir: tmp, Bins: map[string]string{}}
	versions := cfg.Versions
	if len(versions) == 0 {
		versions = []string{""}
	}
	for i, v := range versions {
		bin := filepath.Join(tmp, "pgherd")
		if i > 0 {
			bin += fmt.Sprintf("-%d", i)
		}
		if err := build(bin, v); err != nil {
			return fail("building pgherd", err)
		}
		env.Bins[v] = bin
		if i == 0 {
			env.Bin = bin
		}
	}
	if cfg.Lab.Hosts > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		lc := cfg.Lab
		switch {
		case lc.Dir != "" || cfg.DefaultLabDir:
		case os.Getenv("PGHERD_E2E_KEEP") != "":
			// A kept lab keeps its key and lab.hcl too.
			lc.Dir = filepath.Join(os.TempDir(), lc.Name)
		default:
			lc.Dir = filepath.Join(tmp, "lab")
		}
		if lc.Log == nil {
			lc.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
		if env.Lab, err = lab.Up(ctx, lc); err != nil {
			return fail("lab up", err)
		}
	}
	if ready != nil {
		if err := ready(env); err != nil {
			return fail("setup", err)
		}
	}
	code := m.Run()
	if env.Lab == nil {
		return code
	}
	if os.Getenv("PGHERD_E2E_KEEP") == "" {
		if err := env.Lab.Down(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "%s: lab down: %v\n", cfg.Name, err)
		}
	} else {
		fmt.Fprintf(os.Stderr, "%s: lab kept (PGHERD_E2E_KEEP): pgherd lab down --name %s --dir %s\n", cfg.Name, cfg.Lab.Name, env.Lab.Dir())
	}
	return code
}

// build builds pgherd into out, static (it is uploaded to the hosts as
// their agent), with the version string v unless v is "".
func build(out, v string) error {
	args := []string{"build", "-o", out}
	if v != "" {
		args = append(args, "-ldflags", "-X github.com/pgherd/pgherd/cli.version="+v)
	}
	cmd := exec.Command("go", append(args, "github.com/pgherd/pgherd/cmd/pgherd")...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.Run()
}

// JournalsOnFailure logs, when t has failed by the end of the test, the
// last lines of each host's journal for units (the pgherd agent's when
// none): what the agents decided, and why, is what a failure in CI needs
// most, and the lab is gone after the run. It is registered after the lab
// is up, so that it runs before a cleanup that takes the lab down.
func JournalsOnFailure(t testing.TB, l *lab.Lab, units ...string) {
	t.Helper()
	if len(units) == 0 {
		units = []string{"pgherd-agent"}
	}
	args := []string{"journalctl", "--no-pager", "-o", "short-precise", "-n", "60"}
	for _, u := range units {
		args = append(args, "-u", u)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, h := range l.Hosts() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := l.Exec(ctx, h.Name, args...)
			cancel()
			if err != nil {
				t.Logf("%s: journal: %v", h.Name, err)
				continue
			}
			t.Logf("%s: the last lines of the journal (%v), as the test failed:\n%s", h.Name, units, out)
		}
	})
}
