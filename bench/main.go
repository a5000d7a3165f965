// Command bench measures pgherd against its peers on the lab's real hosts
// and writes the numbers, side by side, to a Markdown results file.
//
//	go run ./bench -out bench/RESULTS.md                 # every suite
//	go run ./bench -suites converge -hosts 3,30 -runs 5
//
// Suites:
//
//	cluster   the first apply of examples/ha on 4 bare lab hosts, by phase,
//	          then the no-op plan and apply.
//	converge  a no-op plan and a no-op apply of 12 tasks on N hosts, beside
//	          Ansible (Debian's ansible) running the same 12 tasks on the
//	          same hosts, idempotent run and --check run.
//	day2      the minor upgrade 15.18 → 15.20, a rolling restart and an
//	          agent upgrade of examples/ha under a continuous writer: wall
//	          time, longest write gap, writes lost (lab pgherd-bench-day2,
//	          10.88.0.0/24).
//	backup    full and incremental backups and restores of a generated
//	          PostgreSQL 15 database on this machine (-backup-gb, default
//	          4), beside pgBackRest and pg_basebackup (bench/backup.go).
//	migrate   the migration of a PostgreSQL 15 installed by hand with
//	          -migrate-gb of data (default 2) into a 3-host cluster
//	          (e2e/migrate), under a client writing on its own
//	          connection: reload-only, then wal_level = minimal (one
//	          restart); apply wall time by phase, write gap, writes
//	          lost (lab pgherd-bench-migrate, 10.87.0.0/24).
//	ha        write gap and lost writes on switchover, postmaster kill,
//	          primary host kill and a 50 s freeze, and the agent's RSS:
//	          examples/ha with pgherd's default timings, then Patroni
//	          (Debian's package, its fastest allowed timings) on the same
//	          hosts, etcd and HAProxy (bench/ha.go); -ha-trials trials.
//
// Each suite brings up its own lab (converge: "pgherd-bench",
// 10.80.0.0/24; cluster: "pgherd-bench-ha", 10.81.0.0/24; ha:
// "pgherd-bench-ha2", 10.92.0.0/24) and leaves it down. Timings are wall-clock medians over -runs runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgherd/pgherd/bench/results"
)

func main() {
	out := flag.String("out", "bench/RESULTS.md", "results file (a section per suite is replaced)")
	suites := flag.String("suites", "converge", "comma-separated suites to run")
	hosts := flag.String("hosts", "3,30", "host counts for the converge suite")
	runs := flag.Int("runs", 5, "measured runs per figure (median reported)")
	keep := flag.Bool("keep", false, "leave the lab up afterwards")
	var ha haOptions
	flag.IntVar(&ha.trials, "ha-trials", 3, "trials of each scenario of the ha suite")
	haScenarioList := flag.String("ha-scenarios", strings.Join(haScenarios, ","), "the ha suite's scenarios to run, comma-separated (a subset is for investigating: write it elsewhere than the results file)")
	flag.BoolVar(&ha.peer, "ha-patroni", true, "the ha suite also measures Patroni")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx := context.Background()
	for _, sc := range strings.Split(*haScenarioList, ",") {
		if !slices.Contains(haScenarios, sc) {
			fmt.Fprintf(os.Stderr, "bench: -ha-scenarios: unknown scenario %q (known: %s)\n", sc, strings.Join(haScenarios, ", "))
			os.Exit(2)
		}
		ha.scenarios = append(ha.scenarios, sc)
	}
	if err := run(ctx, log, *out, strings.Split(*suites, ","), *hosts, *runs, ha, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, out string, suites []string, hostList string, runs int, ha haOptions, keep bool) error {
	work, err := os.MkdirTemp("", "pgherd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "pgherd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/pgherd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // uploaded to the hosts as their agent
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building pgherd: %v\n%s", err, b)
	}
	for _, s := range suites {
		switch s {
		case "converge":
			var counts []int
			for _, h := range strings.Split(hostList, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(h))
				if err != nil {
					return fmt.Errorf("-hosts: %w", err)
				}
				counts = append(counts, n)
			}
			section, err := converge(ctx, log, bin, work, counts, runs, keep)
			if err != nil {
				return err
			}
			if err := results.WriteSection(out, "converge", section); err != nil {
				return err
			}
		case "backup":
			section, err := backupSuite(ctx, log, *backupGB, *backupRuns)
			if err != nil {
				return err
			}
			if err := results.WriteSection(out, "backup", section); err != nil {
				return err
			}
		case "day2":
			section, err := day2Suite(ctx, log, bin, work, keep)
			if err != nil {
				return err
			}
			if err := results.WriteSection(out, "day2", section); err != nil {
				return err
			}
		case "migrate":
			section, err := migrateSuite(ctx, log, bin, work, *migrateGB, keep)
			if err != nil {
				return err
			}
			if err := results.WriteSection(out, "migrate", section); err != nil {
				return err
			}
		case "major":
			section, err := majorSuite(ctx, log, bin, work, keep)
			if err != nil {
				return err
			}
			if err := results.WriteSection(out, "major", section); err != nil {
				return err
			}
		case "cluster":
			section, err := clusterSuite(ctx, log, bin, work, runs, keep)
			if err != nil {
				return err
			}
			if err := results.WriteSection(out, "cluster", section); err != nil {
				return err
			}
		case "ha":
			section, err := haSuite(ctx, log, bin, work, ha, keep, func(partial string) error {
				return results.WriteSection(out, "ha", partial)
			})
			if err != nil {
				return err
			}
			if err := results.WriteSection(out, "ha", section); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown suite %q", s)
		}
	}
	return nil
}

// median of durations.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// timed runs cmd and returns how long it took; a failure is an error with
// its output.
func timed(cmd *exec.Cmd, okCodes ...int) (time.Duration, error) {
	start := time.Now()
	b, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && slices.Contains(okCodes, ee.ExitCode()) {
			return d, nil
		}
		return d, fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, tail(string(b), 40))
	}
	return d, nil
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// machine describes where the numbers were taken.
func machine() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %d cores, %s/%s, %s, %s", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Now().UTC().Format("2006-01-02"))
}
