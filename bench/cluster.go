package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgherd/pgherd/e2e/lab"
)

// clusterSuite times the first apply of examples/ha on 4 bare lab hosts,
// broken down by phase, then the no-op plan and apply.
func clusterSuite(ctx context.Context, log *slog.Logger, bin, work string, runs int, keep bool) (string, error) {
	l, err := lab.Up(ctx, lab.Config{Name: "pgherd-bench-ha", Hosts: 4, Subnet: "10.81.0.0/24", Dir: filepath.Join(work, "labha"), Log: log})
	if err != nil {
		return "", err
	}
	if !keep {
		defer l.Down(context.WithoutCancel(ctx))
	}
	dir, _, err := exampleHAOnLab(l, filepath.Join(work, "specha"), "10.81.0.")
	if err != nil {
		return "", err
	}
	pg := func(args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, bin, append(args, dir)...)
		c.Env = append(os.Environ(), "NO_COLOR=1")
		return c
	}

	log.Info("cluster: first apply on bare hosts")
	phases, total, err := timedPhases(pg("apply", "-auto-approve"), phaseOf)
	if err != nil {
		return "", err
	}
	var plans, applies []time.Duration
	for i := 0; i < runs; i++ {
		d, err := timed(pg("plan", "-detailed-exitcode"))
		if err != nil {
			return "", fmt.Errorf("the no-op plan after the first apply found changes or failed: %w", err)
		}
		plans = append(plans, d)
		if d, err = timed(pg("apply", "-auto-approve")); err != nil {
			return "", err
		}
		applies = append(applies, d)
	}

	var b strings.Builder
	b.WriteString("## An HA cluster from bare hosts (pgherd apply of examples/ha)\n\n")
	fmt.Fprintf(&b, "Machine: %s. 4 bare lab hosts (Docker containers, Debian 12); packages come from Debian's archive over the network, so the package phases depend on the mirror.\n", machine())
	b.WriteString("Phases run one after another; the hosts of a phase in parallel. A phase's time is from its first step's start to its last step's end.\n\n")
	b.WriteString("| what | wall time |\n|---|---:|\n")
	for _, p := range phaseOrder {
		if d, ok := phases[p]; ok {
			fmt.Fprintf(&b, "| first apply: %s | %s |\n", p, sec(d))
		}
	}
	fmt.Fprintf(&b, "| **first apply, total** | **%s** |\n", sec(total))
	fmt.Fprintf(&b, "| no-op plan (median of %d) | %s |\n", runs, sec(median(plans)))
	fmt.Fprintf(&b, "| no-op apply (median of %d) | %s |\n", runs, sec(median(applies)))
	b.WriteString("\nTargets (issue 3): first apply on bare hosts under 90 s, no-op plan under 2 s.\n")
	return b.String(), nil
}

// exampleHAOnLab writes examples/ha, moved from the default lab's network
// (10.77.0.) to net, and the lab's ssh and host blocks into dir, and
// returns dir and the moved spec.
func exampleHAOnLab(l *lab.Lab, dir, net string) (string, string, error) {
	example, err := os.ReadFile("examples/ha/main.hcl")
	if err != nil {
		return "", "", err
	}
	if !strings.Contains(string(example), "10.77.0.") {
		return "", "", errors.New("examples/ha/main.hcl no longer uses the lab's 10.77.0.0/24: adapt bench/cluster.go")
	}
	spec := strings.ReplaceAll(string(example), "10.77.0.", net)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	for name, content := range map[string]string{"main.hcl": spec, "lab.hcl": l.SpecSnippet()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return "", "", err
		}
	}
	return dir, spec, nil
}

// phaseOrder names the phases of a cluster apply, in order.
var phaseOrder = []string{"etcd, postgres and the agent", "cluster bootstrap", "haproxy and keepalived"}

// phaseOf classifies a resource address of a cluster apply.
func phaseOf(resource string) string {
	switch {
	case strings.HasPrefix(resource, "cluster."):
		return "cluster bootstrap"
	case strings.Contains(resource, "haproxy") || strings.Contains(resource, "keepalived") ||
		strings.Contains(resource, "ip_nonlocal_bind"):
		return "haproxy and keepalived"
	}
	return "etcd, postgres and the agent"
}

// planPhase is the part of an apply before its first step: facts, plan
// and the pre-flight checks.
const planPhase = "facts, plan and pre-flight checks"

// timedPhases runs an apply and times its phases, phaseOf classifying the
// resources ("" for none), from the progress lines ("host: resource: updating..." and
// "host: resource: done (…)") as they arrive; planPhase is the time from
// the start to the first such line.
func timedPhases(cmd *exec.Cmd, phaseOf func(resource string) string) (map[string]time.Duration, time.Duration, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	first, last := map[string]time.Time{}, map[string]time.Time{}
	var planned time.Time
	var tail []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		tail = append(tail, line)
		if len(tail) > 40 {
			tail = tail[1:]
		}
		parts := strings.SplitN(line, ": ", 3)
		if len(parts) < 3 {
			continue
		}
		p, now := phaseOf(parts[1]), time.Now()
		if planned.IsZero() {
			planned = now
		}
		if p == "" {
			continue
		}
		if _, ok := first[p]; !ok {
			first[p] = now
		}
		last[p] = now
	}
	if err := cmd.Wait(); err != nil {
		return nil, 0, fmt.Errorf("%s: %v\n%s\n%s", strings.Join(cmd.Args, " "), err, strings.Join(tail, "\n"), stderr.String())
	}
	total := time.Since(start)
	phases := map[string]time.Duration{}
	if !planned.IsZero() {
		phases[planPhase] = planned.Sub(start)
	}
	for p, t := range first {
		phases[p] = last[p].Sub(t)
	}
	return phases, total, nil
}
