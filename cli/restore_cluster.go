package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgherd/pgherd/agent/backup"
	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner/engine"
	"github.com/pgherd/pgherd/spec"
)

// restoreHost is what the restore of a cluster needs of a host: run
// commands, reach its agent's API, and lock it against a concurrent apply.
type restoreHost interface {
	statusHost
	Lock(ctx context.Context, path string) (unlock func() error, err error)
}

// restoreConnector reaches the hosts of m over SSH through pool, without
// the spec's command_timeout: restoring a large data directory takes
// longer than any one command of an apply. Ctrl-C still ends it, and a
// re-run resumes.
func restoreConnector(m *spec.Model, pool *executors.Pool) func(ctx context.Context, name string) (restoreHost, error) {
	return func(ctx context.Context, name string) (restoreHost, error) {
		i := slices.IndexFunc(m.Hosts, func(h spec.Host) bool { return h.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("host %q is not in the spec", name)
		}
		cfg := sshConfig(m, m.Hosts[i])
		cfg.CommandTimeout = 0
		return pool.Get(ctx, cfg)
	}
}

// restoreTargetOf is the target of the flags, normalized.
func restoreTargetOf(f *restoreFlags) (restoreTarget, error) {
	var t restoreTarget
	if f.backupID != "latest" {
		t.Backup = f.backupID
	}
	if f.targetTime != "" {
		tt, err := parseTargetTime(f.targetTime)
		if err != nil {
			return t, err
		}
		t.Time = tt.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
	}
	if f.targetLSN != "" {
		l, err := backup.ParseLSN(f.targetLSN)
		if err != nil {
			return t, fmt.Errorf("--target-lsn: %w", err)
		}
		t.LSN = l.String()
	}
	return t, nil
}

// checkRestoreHost checks that host is a PostgreSQL host of the cluster.
func checkRestoreHost(m *spec.Model, host string) error {
	c := m.Cluster
	if slices.Contains(c.Postgres.Hosts, host) {
		return nil
	}
	members := strings.Join(c.Postgres.Hosts, ", ")
	if slices.ContainsFunc(m.Hosts, func(h spec.Host) bool { return h.Name == host }) {
		return fmt.Errorf("--host %s: not a PostgreSQL host of cluster %q (%s)", host, c.Name, members)
	}
	return fmt.Errorf("--host %s: no such host in the spec (the PostgreSQL hosts of cluster %q are %s)", host, c.Name, members)
}

// clusterRestore carries out a restore plan.
type clusterRestore struct {
	m       *spec.Model
	req     restoreRequest
	marker  restoreMarker
	binDir  string
	port    int
	connect func(ctx context.Context, name string) (restoreHost, error)
	out     io.Writer
	// progress shows what the long steps print on their standard error
	// as they run; nil shows it only with a failure.
	progress *lineSink
	timeout  time.Duration
	// parallel and repo are --parallel and --repo, passed on to the
	// host's restore.
	parallel int
	repo     string
}

// api adapts connect to what the status and switchover code takes.
func (r *clusterRestore) api() hostConnector {
	return func(ctx context.Context, name string) (statusHost, error) { return r.connect(ctx, name) }
}

func (a *app) runClusterRestore(ctx context.Context, f *restoreFlags, args []string) error {
	started := time.Now()
	m, err := a.load(args, &f.spec)
	if err != nil {
		return err
	}
	c := m.Cluster
	if c == nil {
		return errNoCluster("restore --host")
	}
	if err := checkRestoreHost(m, f.host); err != nil {
		return err
	}
	if c.Backup == nil {
		return fmt.Errorf("cluster %q has no backup block: there is no repository to restore from", c.Name)
	}
	target, err := restoreTargetOf(f)
	if err != nil {
		return err
	}
	pool := executors.NewPool(a.logger())
	defer pool.Close()
	r := &clusterRestore{
		m: m, binDir: fmt.Sprintf("/usr/lib/postgresql/%d/bin", c.Postgres.Version), port: c.Postgres.Port,
		connect: restoreConnector(m, pool), out: maskedWriter{a.env.Stdout, m.Mask}, progress: &lineSink{w: maskedWriter{a.env.Stderr, m.Mask}},
		timeout: f.timeout, parallel: f.parallel, repo: f.repo,
		req: restoreRequest{Cluster: c.Name, Host: f.host, Members: c.Postgres.Hosts, DataDir: c.Postgres.DataDir,
			Target: target, Delta: f.delta, FromBackup: c.Backup.CreateReplicaFromBackup, Now: time.Now()},
	}
	mask := func(err error) error { return errors.New(m.Mask(err.Error())) }
	unlock, err := r.lockAll(ctx)
	if err != nil {
		return mask(err)
	}
	defer unlock()
	if cs, _ := findCluster(ctx, c, r.api()); cs != nil {
		r.req.Leader = cs.Leader
	}
	facts, err := r.readFacts(ctx)
	if err != nil {
		return mask(err)
	}
	plan, err := planRestore(r.req, facts)
	if err != nil {
		return mask(err)
	}
	r.marker = plan.Marker
	if err := renderRestorePlan(r.out, r.req, plan); err != nil {
		return err
	}
	if plan.Done {
		fmt.Fprintln(r.out)
		return renderStatus(r.out, gatherStatus(ctx, m, r.api(), statusOptions{}))
	}
	if !f.autoApprove {
		ok, err := a.confirm()
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(r.out, "Restore cancelled.")
			return &exitError{code: exitError1}
		}
	}
	fmt.Fprintln(r.out)
	// Until a step that changes something starts, a failure leaves the
	// cluster as it was (a new restore's first steps archive WAL and
	// write the marker).
	changed := plan.Resumed
	n := 0
	for _, s := range plan.Steps {
		desc := s.describe(r.req, r.marker)
		if desc == "" {
			// The marker's writes are part of the steps around them.
			desc = fmt.Sprintf("%s: record the stage %q in %s", r.req.Host, s.Stage, markerPath(r.req.DataDir))
		} else {
			n++
			fmt.Fprintf(r.out, "[%d/%d] %s\n", n, plan.shownSteps(), desc)
		}
		t0 := time.Now()
		changed = changed || s.Kind != stepArchive && s.Kind != stepMark
		if err := r.do(ctx, s); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("interrupted: %w", err)
			}
			fmt.Fprintf(a.env.Stderr, "Error: %s\n", m.Mask(r.failure(desc, s, err, changed)))
			return &exitError{code: exitError1}
		}
		if s.Kind != stepMark {
			fmt.Fprintf(r.out, "      done (%s)\n", time.Since(t0).Round(100*time.Millisecond))
		}
	}
	return r.report(ctx, time.Since(started))
}

// lockAll takes apply's lock on every member, so that no apply starts an
// agent the restore stopped. The locks end with the connections.
func (r *clusterRestore) lockAll(ctx context.Context) (func(), error) {
	var mu sync.Mutex
	var unlocks []func() error
	err := r.onHosts(ctx, r.req.Members, func(ctx context.Context, h restoreHost, name string) error {
		un, err := h.Lock(ctx, engine.LockPath)
		if err != nil {
			return err
		}
		mu.Lock()
		unlocks = append(unlocks, un)
		mu.Unlock()
		return nil
	})
	release := func() {
		for _, un := range unlocks {
			un()
		}
	}
	if err != nil {
		release()
		return nil, fmt.Errorf("cannot lock every member, nothing was done: %w", err)
	}
	return release, nil
}

// onHosts runs fn on each host at once and joins the errors, each naming
// its host.
func (r *clusterRestore) onHosts(ctx context.Context, hosts []string, fn func(ctx context.Context, h restoreHost, name string) error) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, name := range hosts {
		wg.Go(func() {
			h, err := r.connect(ctx, name)
			if err == nil {
				err = fn(ctx, h, name)
			}
			if err != nil {
				if !strings.Contains(err.Error(), name) {
					err = fmt.Errorf("%s: %w", name, err)
				}
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// runOn runs cmd on a host and returns its standard output; a non-zero exit
// is an error naming the host.
func runOn(ctx context.Context, h restoreHost, name, cmd string) (string, error) {
	return runShowing(ctx, h, name, cmd, nil)
}

// streamer is a host that passes on a command's standard error line by
// line as it comes: the SSH executor.
type streamer interface {
	RunStreaming(ctx context.Context, cmd string, stdin io.Reader, stderrLine func(line string)) (executors.Result, error)
}

// lineSink shows the lines of several hosts' commands at once, each
// prefixed with its host, one whole line at a time.
type lineSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *lineSink) show(host, line string) {
	if line = strings.TrimSpace(line); line == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, "      %s: %s\n", host, line)
}

// runShowing is runOn that, when progress is not nil and h can stream,
// shows through it what cmd prints on its standard error (a long step's
// progress) as it comes.
func runShowing(ctx context.Context, h restoreHost, name, cmd string, progress *lineSink) (string, error) {
	var res executors.Result
	var err error
	if s, ok := h.(streamer); ok && progress != nil {
		res, err = s.RunStreaming(ctx, cmd, nil, func(l string) { progress.show(name, l) })
	} else {
		res, err = h.Run(ctx, cmd, nil)
	}
	if err != nil {
		return "", err
	}
	if err := res.Err(name, cmd); err != nil {
		return string(res.Stdout), err
	}
	return string(res.Stdout), nil
}

// readFacts reads every member's facts at once.
func (r *clusterRestore) readFacts(ctx context.Context) (map[string]memberFacts, error) {
	var mu sync.Mutex
	facts := map[string]memberFacts{}
	cmd := restoreFactsCmd(r.req.DataDir, r.binDir, r.port)
	err := r.onHosts(ctx, r.req.Members, func(ctx context.Context, h restoreHost, name string) error {
		out, err := runOn(ctx, h, name, cmd)
		if err != nil {
			return err
		}
		f, err := parseRestoreFacts(out)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		mu.Lock()
		facts[name] = f
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the members' state (every member must be reachable): %w", err)
	}
	return facts, nil
}

// do carries out one step.
func (r *clusterRestore) do(ctx context.Context, s restoreStep) error {
	d := r.req.DataDir
	switch s.Kind {
	case stepArchive:
		return r.onHosts(ctx, s.Hosts, r.archiveNow)
	case stepMark:
		m := r.marker
		m.Stage = s.Stage
		return r.command(ctx, s.Hosts, markCmd(d, m), nil)
	case stepStop:
		return r.command(ctx, s.Hosts, stopCmd(d, r.binDir), nil)
	case stepMoveAside:
		return r.onHosts(ctx, s.Hosts, func(ctx context.Context, h restoreHost, name string) error {
			out, err := runOn(ctx, h, name, moveAsideCmd(d, r.marker.ID, name != r.req.Host))
			r.echo(name, out)
			return err
		})
	case stepRestore:
		return r.onHosts(ctx, s.Hosts, func(ctx context.Context, h restoreHost, name string) error {
			out, err := runShowing(ctx, h, name, restoreCmd(d, r.marker, s.Delta, r.parallel, r.repo), r.progress)
			// Its first line says what it restored; the next ones, what
			// to do by hand, are this command's next steps.
			first, _, _ := strings.Cut(out, "\n")
			r.echo(name, first)
			return err
		})
	case stepRecover:
		return r.command(ctx, s.Hosts, asPostgres("restore", "recover"), r.progress)
	case stepResetEtcd:
		return r.command(ctx, s.Hosts, asPostgres("restore", "reset-etcd"), nil)
	case stepStart:
		return r.command(ctx, s.Hosts, executors.Join("systemctl", "start", modules.AgentUnit), nil)
	case stepBackup:
		return r.command(ctx, s.Hosts, asPostgres("backup", "--type", "full", "--from", "primary"), r.progress)
	case stepWaitLeader:
		wctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		_, err := waitLeader(wctx, r.m.Cluster, r.api(), "", s.Hosts[0])
		return err
	case stepWaitReplicas:
		return r.waitReplicas(ctx, s.Hosts)
	}
	return fmt.Errorf("unknown step %q", s.Kind)
}

// command runs cmd on each host at once and shows what it printed, its
// standard error as it comes through progress when not nil.
func (r *clusterRestore) command(ctx context.Context, hosts []string, cmd string, progress *lineSink) error {
	return r.onHosts(ctx, hosts, func(ctx context.Context, h restoreHost, name string) error {
		out, err := runShowing(ctx, h, name, cmd, progress)
		r.echo(name, out)
		return err
	})
}

// echo shows what a command printed on a host under its step.
func (r *clusterRestore) echo(host, out string) {
	for l := range strings.Lines(strings.TrimSpace(out)) {
		if l = strings.TrimRight(l, "\n"); l != "" {
			fmt.Fprintf(r.out, "      %s: %s\n", host, l)
		}
	}
}

// asPostgres runs the installed pgherd as postgres.
func asPostgres(args ...string) string {
	return executors.Join(append([]string{"runuser", "-u", "postgres", "--", modules.AgentBinaryPath}, args...)...)
}

// markCmd writes the marker (atomically) and, at stageRestoring and
// stageRecovered, sets and removes the agent's mark of a data directory
// not to be started.
func markCmd(dataDir string, m restoreMarker) string {
	b, _ := json.Marshal(m)
	p := markerPath(dataDir)
	cmd := "printf '%s\\n' " + executors.Quote(string(b)) + " > " + executors.Quote(p+".tmp") + " && mv " + executors.Quote(p+".tmp") + " " + executors.Quote(p)
	inc := executors.Quote(incompletePath(dataDir))
	switch m.Stage {
	case stageRestoring:
		cmd += " && printf '%s\\n' " + executors.Quote("pgherd restore "+m.ID) + " > " + inc + " && chown postgres:postgres " + inc
	case stageRecovered:
		cmd += " && rm -f " + inc
	}
	return cmd
}

// stopCmd stops the agent, which stops PostgreSQL, and PostgreSQL if it
// still runs (an agent that died leaves it running); a postmaster.pid no
// server holds goes, as a delta restore refuses it.
func stopCmd(dataDir, binDir string) string {
	d, pgctl := executors.Quote(dataDir), "runuser -u postgres -- "+executors.Quote(binDir+"/pg_ctl")
	return "systemctl stop " + modules.AgentUnit + " && if [ -f " + d + "/PG_VERSION ]; then " +
		"if " + pgctl + " status -D " + d + " >/dev/null 2>&1; then " + pgctl + " stop -D " + d + " -m fast -w -t 600; " +
		"else rm -f " + d + "/postmaster.pid; fi; fi"
}

// moveAsideCmd renames a non-empty data directory (with the agent's mark
// of it, if any) to the restore's name, or a free variant of it, and says
// where; with removeMarker it also removes a restore marker left there by
// an earlier restore with that host as the primary.
func moveAsideCmd(dataDir, id string, removeMarker bool) string {
	d, a, inc := executors.Quote(dataDir), executors.Quote(asidePath(dataDir, id)), executors.Quote(incompletePath(dataDir))
	var b strings.Builder
	if removeMarker {
		b.WriteString("rm -f " + executors.Quote(markerPath(dataDir)) + " && ")
	}
	b.WriteString("if [ -d " + d + " ] && [ -n \"$(ls -A " + d + ")\" ]; then " +
		"a=" + a + "; n=1; while [ -e \"$a\" ]; do n=$((n+1)); a=" + a + "-$n; done; " +
		"mv " + d + " \"$a\" && echo moved " + d + " to \"$a\" || exit 1; " +
		"if [ -f " + inc + " ]; then mv " + inc + " \"$a.pgherd-incomplete\"; fi; fi")
	return b.String()
}

// restoreCmd restores on the host with pgherd restore --data-dir.
func restoreCmd(dataDir string, m restoreMarker, delta bool, parallel int, repo string) string {
	args := []string{"restore", "--data-dir", dataDir}
	if m.Target.Time != "" {
		args = append(args, "--target-time", m.Target.Time)
	}
	if m.Target.LSN != "" {
		args = append(args, "--target-lsn", m.Target.LSN)
	}
	if m.Target.Backup != "" {
		args = append(args, "--backup", m.Target.Backup)
	}
	if m.Timeline != 0 {
		args = append(args, "--target-timeline", strconv.FormatUint(uint64(m.Timeline), 10))
	}
	if delta {
		args = append(args, "--delta")
	}
	if parallel > 0 {
		args = append(args, "--parallel", strconv.Itoa(parallel))
	}
	if repo != "" {
		args = append(args, "--repo", repo)
	}
	return asPostgres(args...)
}

var walFileName = regexp.MustCompile(`^[0-9A-F]{24}$`)

// archiveWait bounds the wait for the archiver in stepArchive.
const archiveWait = 2 * time.Minute

// archiveNow switches WAL on a running primary and waits until the
// archiver stored the WAL file it closed, so that the repository holds
// everything written until now.
func (r *clusterRestore) archiveNow(ctx context.Context, h restoreHost, name string) error {
	psql := func(sql string) (string, error) {
		out, err := runOn(ctx, h, name, executors.Join("runuser", "-u", "postgres", "--", r.binDir+"/psql",
			"-h", "/var/run/postgresql", "-p", strconv.Itoa(r.port), "-XAtc", sql))
		return strings.TrimSpace(out), err
	}
	seg, err := psql("SELECT pg_walfile_name(pg_switch_wal())")
	if err != nil {
		return err
	}
	if !walFileName.MatchString(seg) {
		return fmt.Errorf("%s: pg_switch_wal gave %q, not a WAL file name", name, seg)
	}
	deadline := time.Now().Add(archiveWait)
	for {
		last, err := psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if err != nil {
			return err
		}
		if len(last) >= len(seg) && last[:len(seg)] >= seg {
			fmt.Fprintf(r.out, "      %s: archived up to %s\n", name, seg)
			return nil
		}
		if time.Now().After(deadline) {
			why, _ := psql("SELECT format('%s failures, the last with %s at %s', failed_count, last_failed_wal, last_failed_time) FROM pg_stat_archiver")
			return fmt.Errorf("%s: WAL file %s was not archived within %s (last archived: %q; archiver: %s): the restore would miss what was written since",
				name, seg, archiveWait, last, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// healthWait is how long, once the members stream, the restore waits for
// the rest of the cluster (the VIP, etcd, the lag) to be healthy before it
// reports it as it is.
const healthWait = 30 * time.Second

// waitReplicas waits until each host runs as a replica streaming from the
// primary, showing who is not yet there every half minute, then up to
// healthWait for the cluster to be healthy.
func (r *clusterRestore) waitReplicas(ctx context.Context, hosts []string) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	lastShown := time.Now()
	var streaming time.Time
	for {
		rep := gatherStatus(ctx, r.m, r.api(), statusOptions{timeout: 10 * time.Second})
		var pending []string
		for _, mr := range rep.Members {
			if slices.Contains(hosts, mr.Member) && (mr.Role != "replica" || mr.State != "streaming") {
				pending = append(pending, fmt.Sprintf("%s %s/%s", mr.Member, orDash(mr.Role), orDash(mr.State)))
			}
		}
		if len(pending) == 0 {
			if streaming.IsZero() {
				streaming = time.Now()
			}
			if rep.Health == "healthy" || time.Since(streaming) > healthWait {
				return nil
			}
		}
		what := strings.Join(pending, ", ")
		if what == "" {
			what = rep.Verdict
		}
		if time.Since(lastShown) >= 30*time.Second {
			fmt.Fprintf(r.out, "      waiting: %s\n", what)
			lastShown = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the members did not all stream within %s (--timeout): %s", r.timeout, what)
		case <-time.After(time.Second):
		}
	}
}

// failure says which step failed, where, and how to go on.
func (r *clusterRestore) failure(desc string, s restoreStep, err error, changed bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "the step %q failed: %v\n", desc, err)
	if !changed {
		b.WriteString("Nothing was changed: no member was stopped.")
		if s.Kind == stepArchive {
			b.WriteString(" Make archiving work (the archiver's state is above; pgherd backup\n" +
				"verify and PostgreSQL's log tell more), or stop the primary's agent to restore without what it did\n" +
				"not archive, and run the same command again.")
		}
		return b.String()
	}
	switch {
	case errors.Is(err, context.Canceled):
	case s.Kind == stepRestore:
		fmt.Fprintf(&b, "On %s, pgherd restore's own message is above (no backup before the target, a repository\nthat cannot be reached, a corrupted file, ...).\n", r.req.Host)
	case s.Kind == stepRecover:
		fmt.Fprintf(&b, "PostgreSQL's log on %s is %s.log: its last lines, above, say why the recovery stopped (a target\nafter the end of the archive cannot be reached: run the command with an earlier target, which starts\na new restore).\n", r.req.Host, r.req.DataDir)
	case s.Kind == stepWaitLeader:
		fmt.Fprintf(&b, "journalctl -u %s on %s says what its agent does.\n", modules.AgentUnit, r.req.Host)
	case s.Kind == stepWaitReplicas:
		b.WriteString("They may still be copying the primary: pgherd status shows them, and journalctl -u " + modules.AgentUnit + " on each\nsays what its agent does.\n")
	}
	next := "once the cause is fixed, run the same command again and it resumes from there."
	if errors.Is(err, context.Canceled) {
		next = "run the same command again and it resumes from there."
	}
	fmt.Fprintf(&b, "The steps after it were not carried out. The restore's progress is recorded on %s in %s:\n%s",
		r.req.Host, markerPath(r.req.DataDir), next)
	return b.String()
}

// report shows the restored cluster, what was kept and what to do next.
func (r *clusterRestore) report(ctx context.Context, took time.Duration) error {
	rep := gatherStatus(ctx, r.m, r.api(), statusOptions{})
	tl := 0
	for _, mr := range rep.Members {
		if mr.Member == r.req.Host {
			tl = mr.Timeline
		}
	}
	fmt.Fprintf(r.out, "\nRestore complete in %s: cluster %s is back at %s, %s is the primary on timeline %d.\n\n",
		took.Round(time.Second), r.req.Cluster, r.req.Target.stopAt(), r.req.Host, tl)
	if err := renderStatus(r.out, rep); err != nil {
		return err
	}
	if rep.Health != "healthy" {
		fmt.Fprintf(r.out, "\nThe members stream, but the cluster is not healthy yet: see pgherd status.\n")
	}
	var kept []string
	_ = r.onHosts(ctx, r.req.Members, func(ctx context.Context, h restoreHost, name string) error {
		out, err := runOn(ctx, h, name, "ls -d "+executors.Quote(asidePath(r.req.DataDir, r.marker.ID))+"* 2>/dev/null || true")
		for l := range strings.Lines(out) {
			if l = strings.TrimSpace(l); l != "" && !strings.HasSuffix(l, ".pgherd-incomplete") {
				kept = append(kept, name+": "+l)
			}
		}
		return err
	})
	slices.Sort(kept)
	if len(kept) > 0 {
		fmt.Fprintf(r.out, "\nThe data directories as they were are kept; remove them by hand once the cluster is checked:\n  %s\n", strings.Join(kept, "\n  "))
	}
	if !r.req.FromBackup {
		fmt.Fprintf(r.out, "\nTake a full backup of the new timeline: on %s, runuser -u postgres -- pgherd backup --type full --from primary\n", r.req.Host)
	}
	return nil
}
