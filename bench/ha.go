package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgherd/pgherd/e2e/lab"
	"github.com/pgherd/pgherd/e2e/workload"
)

// The ha suite: the same failure scenarios, with one writer through
// HAProxy behind the VIP counting every acknowledged write, first against
// a pgherd cluster (examples/ha with its default timings), then against
// Patroni (Debian's package) on the same hosts, the same etcd and the same
// HAProxy, which routes by each member's REST GET /primary on port 8008.

const (
	haLabName    = "pgherd-bench-ha2"
	haLabNet     = "10.92.0."
	haPrimary    = 5000
	haSuperPW    = "lab-superuser-pw" // examples/ha's defaults
	haReplPW     = "lab-replication-pw"
	haAPIToken   = "lab-api-token"
	haFreeze     = 50 * time.Second
	haSettleWait = 3 * time.Minute
)

// haScenarios are the scenarios in the order each trial runs them.
var haScenarios = []string{"switchover", "postmaster killed", "primary host killed", "primary frozen 50 s"}

// haOptions say what the ha suite measures: every scenario and Patroni
// beside pgherd for the results file, a subset when investigating.
type haOptions struct {
	trials    int
	scenarios []string
	peer      bool
}

// haTarget is one HA implementation under test.
type haTarget struct {
	name    string
	dataDir string
	unit    string // the systemd unit of the HA agent, for its RSS
	// switchover needs a token with pgherd; Patroni has none configured.
	token string
}

// haResult is what the trials of one target measured.
type haResult struct {
	target   haTarget
	settings string
	gaps     map[string][]time.Duration
	lost     map[string]int
	rssKB    [][2]int // per host at steady state: all, anonymous
	notes    []string
}

// haSuite returns the results section; partial hands over the section with
// pgherd's results alone as soon as they are measured, so that they are
// written even if the Patroni half never ends.
func haSuite(ctx context.Context, log *slog.Logger, bin, work string, o haOptions, keep bool, partial func(string) error) (string, error) {
	l, err := lab.Up(ctx, lab.Config{Name: haLabName, Hosts: 4, Subnet: haLabNet + "0/24", Dir: filepath.Join(work, "labha2"), Log: log})
	if err != nil {
		return "", err
	}
	if !keep {
		defer l.Down(context.WithoutCancel(ctx))
	}
	dir, spec, err := exampleHAOnLab(l, filepath.Join(work, "specha2"), haLabNet)
	if err != nil {
		return "", err
	}
	log.Info("ha: pgherd apply of examples/ha")
	apply := exec.CommandContext(ctx, bin, "apply", "-auto-approve", dir)
	apply.Env = append(os.Environ(), "NO_COLOR=1")
	if _, err := timed(apply); err != nil {
		return "", err
	}
	b := &haBench{lab: l, log: log, scenarios: o.scenarios, url: fmt.Sprintf("postgres://postgres:%s@%s100:%d/postgres?sslmode=disable&connect_timeout=2", haSuperPW, haLabNet, haPrimary)}
	pgherdTarget := haTarget{name: "pgherd", dataDir: "/var/lib/postgresql/15/main", unit: "pgherd-agent", token: haAPIToken}
	ours, err := b.measure(ctx, pgherdTarget, o.trials)
	if err != nil {
		return "", fmt.Errorf("pgherd: %w", err)
	}
	ours.settings = haSettings(spec)
	if !o.peer {
		return haReport(o.trials, ours) + "\nPatroni: not measured in this run (-ha-patroni=false).\n", nil
	}
	if err := partial(haReport(o.trials, ours) + "\nPatroni: being measured.\n"); err != nil {
		return "", err
	}

	log.Info("ha: replacing pgherd's agent by Patroni on the same hosts")
	if err := b.installPatroni(ctx); err != nil {
		// pgherd's numbers stand on their own: write them with the reason.
		log.Error("ha: patroni", "err", err)
		return haReport(o.trials, ours) + fmt.Sprintf("\nPatroni could not be measured in this run: %s\n", firstLine(err)), nil
	}
	patroniTarget := haTarget{name: "Patroni " + b.patroniVersion, dataDir: patroniDataDir, unit: "patroni"}
	theirs, err := b.measure(ctx, patroniTarget, o.trials)
	if err != nil {
		log.Error("ha: patroni", "err", err)
		return haReport(o.trials, ours) + fmt.Sprintf("\nPatroni could not be measured in this run: %s\n", firstLine(err)), nil
	}
	theirs.settings = fmt.Sprintf("ttl %d s, loop_wait %d s, retry_timeout %d s (the minimums Patroni accepts)", patroniTTL, patroniLoopWait, patroniRetryTimeout)
	return haReport(o.trials, ours, theirs), nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// haSettings is the ha block's timing lines of the spec, or the defaults.
func haSettings(spec string) string {
	var set []string
	for _, line := range strings.Split(spec, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[1] == "=" && slices.Contains([]string{"ttl", "loop_wait", "retry_timeout"}, f[0]) {
			set = append(set, f[0]+" "+strings.Trim(f[2], `"`))
		}
	}
	if len(set) == 0 {
		return "examples/ha as is: the ha block's default timings"
	}
	return "examples/ha: " + strings.Join(set, ", ")
}

type haBench struct {
	lab            *lab.Lab
	log            *slog.Logger
	url            string
	scenarios      []string // of haScenarios, in the order given
	patroniVersion string
}

// measure runs trials of every scenario against the cluster on the lab,
// which must be converging to one primary and two streaming replicas.
func (b *haBench) measure(ctx context.Context, t haTarget, trials int) (*haResult, error) {
	all := b.hostNames()
	if _, err := b.waitSettled(ctx, t, all); err != nil {
		return nil, err
	}
	res := &haResult{target: t, gaps: map[string][]time.Duration{}, lost: map[string]int{}}
	wctx, stop := context.WithCancel(ctx)
	w, err := workload.Start(wctx, b.url, "bench_ha_writes")
	if err != nil {
		stop()
		return nil, err
	}
	defer func() {
		stop()
		<-w.Done()
	}()
	if err := b.acks(ctx, w, 50); err != nil {
		return nil, err
	}
	// Steady state: the agents have run for a while under the write load.
	time.Sleep(20 * time.Second)
	for _, h := range all {
		kb, err := b.rss(ctx, t, h)
		if err != nil {
			return nil, err
		}
		res.rssKB = append(res.rssKB, kb)
	}
	b.log.Info("ha: steady state", "target", t.name, "rss_kB", res.rssKB)

	lost := map[int64]bool{}
	for trial := 1; trial <= trials; trial++ {
		for _, sc := range b.scenarios {
			b.log.Info("ha: scenario", "target", t.name, "scenario", sc, "trial", trial)
			gap, n, err := b.scenario(ctx, t, w, sc, lost)
			if err != nil {
				// What was measured so far stands; the note says why the
				// rest is missing.
				b.log.Error("ha: scenario failed", "target", t.name, "scenario", sc, "trial", trial, "err", err)
				res.notes = append(res.notes, fmt.Sprintf("%s: %s, trial %d failed, no further trials: %s", t.name, sc, trial, firstLine(err)))
				return res, nil
			}
			b.log.Info("ha: measured", "target", t.name, "scenario", sc, "trial", trial, "gap", gap, "lost", n)
			res.gaps[sc] = append(res.gaps[sc], gap)
			res.lost[sc] += n
		}
	}
	return res, nil
}

// scenario injects one fault, waits until the cluster is whole again and
// returns the longest write gap since the fault and how many acknowledged
// writes the primary no longer has.
func (b *haBench) scenario(ctx context.Context, t haTarget, w *workload.Writer, sc string, lost map[int64]bool) (time.Duration, int, error) {
	all := b.hostNames()
	old, err := b.waitSettled(ctx, t, all)
	if err != nil {
		return 0, 0, err
	}
	if err := b.acks(ctx, w, 20); err != nil {
		return 0, 0, err
	}
	mark := w.Mark()
	// counted says which lost writes count against the target: all but
	// the asynchronous tail a dead or frozen primary never shipped.
	counted := func(workload.Ack) bool { return true }
	switch sc {
	case "switchover":
		if err := b.switchover(ctx, t, old, otherHost(all, old)); err != nil {
			return 0, 0, err
		}
	case "postmaster killed":
		if _, err := b.lab.Exec(ctx, old, "sh", "-c", "kill -9 $(head -1 "+t.dataDir+"/postmaster.pid)"); err != nil {
			return 0, 0, err
		}
	case "primary host killed":
		if err := b.lab.Kill(ctx, old); err != nil {
			return 0, 0, err
		}
		if _, err := b.waitSettled(ctx, t, withoutHost(all, old)); err != nil {
			return 0, 0, err
		}
		if err := b.acks(ctx, w, 5); err != nil {
			return 0, 0, err
		}
		gap := w.MaxGap(mark)
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := b.lab.Start(sctx, old); err != nil {
			return 0, 0, err
		}
		n, err := b.lost(ctx, t, w, lost, counted)
		return gap, n, err
	case "primary frozen 50 s":
		if err := b.lab.Pause(ctx, old); err != nil {
			return 0, 0, err
		}
		paused := time.Now()
		time.Sleep(haFreeze)
		if err := b.lab.Unpause(ctx, old); err != nil {
			return 0, 0, err
		}
		// Only the asynchronous tail may be lost: writes the frozen
		// primary acknowledged that were sent before it froze. One it
		// acknowledged after (on thaw) is split brain, one another member
		// acknowledged is the new primary's.
		oldAddr := b.addr(old)
		counted = func(a workload.Ack) bool { return a.Server != oldAddr || a.Sent.After(paused) }
	default:
		return 0, 0, fmt.Errorf("unknown scenario %q", sc)
	}
	if _, err := b.waitSettled(ctx, t, all); err != nil {
		return 0, 0, err
	}
	if err := b.acks(ctx, w, 5); err != nil {
		return 0, 0, err
	}
	gap := w.MaxGap(mark)
	n, err := b.lost(ctx, t, w, lost, counted)
	return gap, n, err
}

// lost counts the acknowledged writes the settled primary does not have,
// not counted before, for which count holds.
func (b *haBench) lost(ctx context.Context, t haTarget, w *workload.Writer, seen map[int64]bool, count func(workload.Ack) bool) (int, error) {
	primary, err := b.waitSettled(ctx, t, b.hostNames())
	if err != nil {
		return 0, err
	}
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	acks := w.Since(0)
	missing, err := w.Missing(mctx, b.addr(primary), acks)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range acks {
		if slices.Contains(missing, a.ID) && !seen[a.ID] {
			seen[a.ID] = true
			if count(a) {
				n++
				b.log.Warn("ha: acknowledged write lost", "target", t.name, "write", a.String())
			}
		}
	}
	return n, nil
}

// acks waits for n more acknowledged writes.
func (b *haBench) acks(ctx context.Context, w *workload.Writer, n int) error {
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return w.WaitAcks(actx, w.Mark(), n)
}

// hostNames are the PostgreSQL hosts, node1..node3 (examples/ha keeps its
// backup repository on node4).
func (b *haBench) hostNames() []string {
	var names []string
	for _, h := range b.lab.Hosts()[:3] {
		names = append(names, h.Name)
	}
	return names
}

func (b *haBench) addr(name string) string {
	for _, h := range b.lab.Hosts() {
		if h.Name == name {
			return h.Address
		}
	}
	return ""
}

// waitSettled waits until, among hosts, exactly one PostgreSQL is a
// primary and every other one streams from a primary, asking each
// PostgreSQL itself (over docker exec and its local socket) so that both
// targets are judged alike, and returns the primary.
func (b *haBench) waitSettled(ctx context.Context, t haTarget, hosts []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, haSettleWait)
	defer cancel()
	var view []string
	for {
		primary, ok := "", true
		view = view[:0]
		for _, h := range hosts {
			out, err := b.lab.Exec(ctx, h, "runuser", "-u", "postgres", "--", "psql", "-XAtc",
				"SELECT pg_is_in_recovery(), coalesce((SELECT status FROM pg_stat_wal_receiver), '')")
			st := strings.TrimSpace(out)
			view = append(view, h+"="+st)
			switch {
			case err != nil:
				ok = false
			case st == "f|" && primary == "":
				primary = h
			case st == "t|streaming":
			default:
				ok = false
			}
		}
		if ok && primary != "" {
			return primary, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s: %v did not settle on one primary and streaming replicas in %s: last view %v", t.name, hosts, haSettleWait, view)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// switchover asks the leader's agent (pgherd or Patroni: the same REST
// call) to hand over to candidate and waits for its answer.
func (b *haBench) switchover(ctx context.Context, t haTarget, leader, candidate string) error {
	body, _ := json.Marshal(map[string]string{"leader": leader, "candidate": candidate})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+b.addr(leader)+":8008/switchover", bytes.NewReader(body))
	if err != nil {
		return err
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 90 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("POST /switchover: %w", err)
	}
	defer resp.Body.Close()
	var msg bytes.Buffer
	_, _ = msg.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /switchover to %s: %s: %s", leader, resp.Status, msg.String())
	}
	return nil
}

// rss is the resident set (kB) of the target's agent process on host, and
// its anonymous (private) part.
func (b *haBench) rss(ctx context.Context, t haTarget, host string) ([2]int, error) {
	var kb [2]int
	out, err := b.lab.Exec(ctx, host, "sh", "-c", "grep -E '^(VmRSS|RssAnon):' /proc/$(systemctl show -p MainPID --value "+t.unit+")/status")
	if err != nil {
		return kb, fmt.Errorf("rss of %s on %s: %w", t.unit, host, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			return kb, fmt.Errorf("rss of %s on %s: %q: %w", t.unit, host, line, err)
		}
		if f[0] == "VmRSS:" {
			kb[0] = n
		} else {
			kb[1] = n
		}
	}
	if kb[0] == 0 {
		return kb, fmt.Errorf("rss of %s on %s: no VmRSS in %q", t.unit, host, out)
	}
	return kb, nil
}

func otherHost(names []string, name string) string {
	for _, n := range names {
		if n != name {
			return n
		}
	}
	return ""
}

func withoutHost(names []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == name })
}

// haReport writes the section: per scenario, median and max write gap and
// the acknowledged writes lost, side by side.
func haReport(trials int, rs ...*haResult) string {
	var s strings.Builder
	s.WriteString("## HA: failover, switchover and agent memory, beside Patroni\n\n")
	fmt.Fprintf(&s, "Machine: %s; `go run ./bench -suites ha`. 3 lab hosts (Docker containers, Debian 12, PostgreSQL 15, etcd 3.4 on the same 3 hosts, heartbeat 50 ms, election 500 ms), HAProxy on node1 and node2 routing port 5000 by each member's `GET /primary` on port 8008, keepalived's VIP in front, asynchronous replication. ", machine())
	s.WriteString("First pgherd (examples/ha applied by pgherd), then, on the same hosts, etcd and HAProxy, pgherd's agent stopped and Patroni (Debian's package) bootstrapping its own cluster.\n\n")
	s.WriteString("One client inserts one row per transaction through the VIP's port 5000 (10 ms apart, reconnecting at once on an error; `e2e/workload`). ")
	s.WriteString("The write gap is the longest time between two acknowledged writes from the fault until the cluster is whole again (one primary, the others streaming, judged by asking each PostgreSQL). ")
	s.WriteString("Lost writes are acknowledged writes the final primary does not have (the writer records which server acknowledged each); for the freeze, all but those the frozen primary acknowledged that were sent before the freeze began (the asynchronous tail) count, for the other scenarios all. ")
	s.WriteString("The host is killed with `docker kill` and started again; frozen with `docker pause` for 50 s. RSS is the agent process's resident set on each host after 20 s of steady writes (pgherd agent vs the patroni process).\n\n")
	fmt.Fprintf(&s, "%d trial(s) per scenario; median / max of the write gap.\n\n", trials)
	s.WriteString("| scenario |")
	for _, r := range rs {
		fmt.Fprintf(&s, " %s: gap median / max | %s: lost |", r.target.name, r.target.name)
	}
	s.WriteString("\n|---|")
	for range rs {
		s.WriteString("---:|---:|")
	}
	s.WriteString("\n")
	for _, sc := range haScenarios {
		fmt.Fprintf(&s, "| %s |", sc)
		for _, r := range rs {
			g := r.gaps[sc]
			if len(g) == 0 {
				s.WriteString(" – | – |")
				continue
			}
			fmt.Fprintf(&s, " %s / %s | %d |", sec(median(g)), sec(slices.Max(g)), r.lost[sc])
		}
		s.WriteString("\n")
	}
	s.WriteString("| agent RSS (anonymous part), steady state, per host |")
	for _, r := range rs {
		var mb []string
		for _, kb := range r.rssKB {
			mb = append(mb, fmt.Sprintf("%.1f MB (%.1f)", float64(kb[0])/1024, float64(kb[1])/1024))
		}
		fmt.Fprintf(&s, " %s | |", strings.Join(mb, ", "))
	}
	s.WriteString("\n\nSettings:\n\n")
	for _, r := range rs {
		fmt.Fprintf(&s, "- %s: %s.\n", r.target.name, r.settings)
	}
	for _, r := range rs {
		for _, n := range r.notes {
			fmt.Fprintf(&s, "\nIncomplete: %s\n", n)
		}
	}
	s.WriteString("\nTargets (issue 4): host loss median gap ≤ 5 s with default settings, postgres crash ≤ 1 s, switchover ≤ 1 s, agent RSS ≤ 25 MB, no acknowledged write lost.\n")
	return s.String()
}
