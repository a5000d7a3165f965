package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pgherd/pgherd/e2e/lab"
	"github.com/pgherd/pgherd/e2e/major"
	"github.com/pgherd/pgherd/e2e/workload"
)

var majorRows = flag.Int("major-rows", 2_000_000, "major suite: rows of the table copied to the new cluster (about 100 bytes each)")

var majorDowntimeRE = regexp.MustCompile(`Downtime \(old read-only to new writable\): (\S+);`)

// majorSuite times `pgherd upgrade major` from PostgreSQL 15 to 17 under a
// client writing through a multi-host connection string: e2e/major's two
// clusters (the old one on node1..node3 behind a VIP, the new one on node4
// with PostgreSQL 17 from trixie), a table of -major-rows rows to copy. Its
// lab is pgherd-bench-major on 10.96.0.0/24.
func majorSuite(ctx context.Context, log *slog.Logger, bin, work string, keep bool) (string, error) {
	const net = "10.96.0"
	l, err := lab.Up(ctx, lab.Config{Name: "pgherd-bench-major", Hosts: 4, Subnet: net + ".0/24", Dir: filepath.Join(work, "labmajor"), Log: log})
	if err != nil {
		return "", err
	}
	if !keep {
		defer l.Down(context.WithoutCancel(ctx))
	}
	dir := filepath.Join(work, "specmajor")
	newAddr, err := major.WriteSpecs(l, net, dir)
	if err != nil {
		return "", err
	}
	newHost := l.Hosts()[3].Name
	run := func(args ...string) (string, time.Duration, error) {
		c := exec.CommandContext(ctx, bin, args...)
		c.Dir, c.Env = dir, append(os.Environ(), "NO_COLOR=1")
		t0 := time.Now()
		out, err := c.CombinedOutput()
		if err != nil {
			return string(out), time.Since(t0), fmt.Errorf("pgherd %s: %v\n%s", strings.Join(args, " "), err, tail(string(out), 30))
		}
		return string(out), time.Since(t0), nil
	}

	log.Info("major: building both clusters (the new one's PostgreSQL 17 from trixie)")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { _, _, errs[0] = run("apply", "-auto-approve", "old") })
	wg.Go(func() {
		if out, err := l.Exec(ctx, newHost, "sh", "-c", major.TrixiePostgres); err != nil {
			errs[1] = fmt.Errorf("PostgreSQL 17 from trixie on %s: %v\n%s", newHost, err, tail(out, 20))
			return
		}
		_, _, errs[1] = run("apply", "-auto-approve", "new")
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	var primary string
	for _, h := range l.Hosts()[:3] {
		if r, err := major.Psql(ctx, l, h.Name, major.OldVersion, "postgres", "SELECT pg_is_in_recovery()"); err == nil && r == "f" {
			primary = h.Name
		}
	}
	if primary == "" {
		return "", errors.New("major: the old cluster has no primary")
	}
	log.Info("major: loading data", "rows", *majorRows)
	if _, err := major.Psql(ctx, l, primary, major.OldVersion, "app", fmt.Sprintf(
		"CREATE TABLE items (id bigserial PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT now()); "+
			"INSERT INTO items (note) SELECT md5(g::text) || md5((g * 7)::text) FROM generate_series(1, %d) g", *majorRows)); err != nil {
		return "", err
	}
	size, err := major.Psql(ctx, l, primary, major.OldVersion, "app", "SELECT pg_size_pretty(pg_database_size('app'))")
	if err != nil {
		return "", err
	}
	oldVersion, _ := major.Psql(ctx, l, primary, major.OldVersion, "postgres", "SHOW server_version")
	newVersion, _ := major.Psql(ctx, l, newHost, major.NewVersion, "postgres", "SHOW server_version")

	wctx, stop := context.WithCancel(ctx)
	w, err := workload.Start(wctx, major.DSN(net, newAddr), "bench_major_writes")
	if err != nil {
		stop()
		return "", err
	}
	defer func() { stop(); <-w.Done() }()
	if err := w.WaitAcks(ctx, 0, 50); err != nil {
		return "", err
	}
	log.Info("major: pgherd upgrade major")
	mark := w.Mark()
	out, took, err := run("upgrade", "major", "--from", "old", "--to", "new", "-auto-approve")
	if err != nil {
		return "", err
	}
	downtime := "?"
	if m := majorDowntimeRE.FindStringSubmatch(out); m != nil {
		downtime = m[1]
	}
	if err := w.WaitAcks(ctx, w.Mark(), 50); err != nil {
		return "", err
	}
	acks := w.Since(mark)
	lost, err := w.Missing(ctx, newAddr, w.Since(0))
	if err != nil {
		return "", err
	}

	var b strings.Builder
	b.WriteString("## Major upgrade 15 → 17 (pgherd upgrade major, blue/green)\n\n")
	fmt.Fprintf(&b, "Machine: %s; `go run ./bench -suites major` (bench/major.go, e2e/major). 4 lab hosts: the old cluster (examples/ha's shape, PostgreSQL %s) on node1..node3 behind a VIP, the new one (PostgreSQL %s from trixie, as docs/runbooks/upgrade.md says) on node4, both applied by pgherd. ", machine(), oldVersion, newVersion)
	fmt.Fprintf(&b, "The old cluster's `app` database holds a table of %d rows (%s with the database's catalog), copied by logical replication. ", *majorRows, size)
	b.WriteString("A client inserts one row per transaction through a multi-host connection string with `target_session_attrs=read-write` (the old VIP's port 5000, then the new cluster's HAProxy), reconnecting at once on an error; lost writes are acknowledged writes the new cluster lacks. One run (an upgrade changes the clusters).\n\n")
	b.WriteString("| what | measured |\n|---|---:|\n")
	fmt.Fprintf(&b, "| `pgherd upgrade major` wall time (preflight, roles and schema, initial copy, catch-up, switch, cleanup) | %s |\n", sec(took))
	fmt.Fprintf(&b, "| downtime reported by pgherd (old read-only to new writable) | %s |\n", downtime)
	fmt.Fprintf(&b, "| the client's longest write gap | %s |\n", sec(w.MaxGap(mark)))
	fmt.Fprintf(&b, "| acknowledged writes during the upgrade / lost | %d / %d |\n", len(acks), len(lost))
	b.WriteString("\nTarget (issue 7): the major upgrade runs end to end with its downtime recorded; no acknowledged write lost.\n")
	return b.String(), nil
}
