package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgherd/pgherd/e2e/interrupt"
	"github.com/pgherd/pgherd/e2e/lab"
	"github.com/pgherd/pgherd/e2e/suite"
	"github.com/pgherd/pgherd/e2e/workload"
)

var (
	pgherdBin string
	workDir   string
	labName   = suite.EnvOr("PGHERD_E2E_MIGRATE_LAB", "pgherd-e2e-migrate")
	labNet    = suite.EnvOr("PGHERD_E2E_MIGRATE_NET", "10.83.0")
	// dataMB is PGHERD_E2E_MIGRATE_MB, read by TestMain.
	dataMB int
)

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m, suite.Config{Name: "e2e/migrate"}, func(e *suite.Env) error {
		pgherdBin, workDir = e.Bin, e.Dir
		var err error
		if dataMB, err = strconv.Atoi(suite.EnvOr("PGHERD_E2E_MIGRATE_MB", "64")); err != nil {
			return fmt.Errorf("PGHERD_E2E_MIGRATE_MB: %w", err)
		}
		return nil
	}))
}

// freshLab brings up the scenario's three hosts from scratch (a lab left
// by an earlier scenario is taken down first) and takes them down at the
// end unless PGHERD_E2E_KEEP is set.
func freshLab(t *testing.T) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := filepath.Join(workDir, "lab")
	if os.Getenv("PGHERD_E2E_KEEP") != "" {
		// A kept lab keeps its key and lab.hcl too, for `pgherd -dir`.
		dir = filepath.Join(os.TempDir(), labName)
	}
	cfg := lab.Config{Name: labName, Hosts: 3, Subnet: labNet + ".0/24", Dir: dir, Log: log}
	if old, err := lab.Open(cfg); err == nil {
		if err := old.Down(ctx); err != nil {
			t.Fatalf("lab down: %v", err)
		}
	}
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("PGHERD_E2E_KEEP") != "" {
			t.Logf("lab kept (PGHERD_E2E_KEEP): %s", l.Dir())
			return
		}
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	suite.JournalsOnFailure(t, l)
	t.Cleanup(func() {
		// The adopted postmaster logs where Debian's pg_ctlcluster sent
		// its output: its file says whether it restarted, or why a
		// client's connection ended.
		if t.Failed() {
			out, err := l.Exec(context.Background(), "node1", "sh", "-c", "tail -n 60 /var/log/postgresql/postgresql-15-main.log")
			t.Logf("node1: the end of the adopted server's log, as the test failed (%v):\n%s", err, out)
		}
	})
	return l
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s\n--- stderr\n%s", r.code, r.stdout, r.stderr)
}

func pgherd(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(pgherdBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running pgherd %s: %v", strings.Join(args, " "), err)
	}
	// Every run is logged, briefly: a failed test prints its log, and CI
	// shows only the start and the end of a long output, where the
	// failure's own message, which holds the whole output, would be lost
	// among whole plans.
	t.Logf("pgherd %s\nexit %d\n--- stdout\n%s\n--- stderr\n%s", strings.Join(args, " "), r.code, brief(r.stdout), brief(r.stderr))
	return r
}

// brief is s with its middle left out when it is longer than 30 lines.
func brief(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) <= 30 {
		return s
	}
	return strings.Join(lines[:15], "\n") + fmt.Sprintf("\n[… %d lines …]\n", len(lines)-30) + strings.Join(lines[len(lines)-15:], "\n")
}

func onHost(t *testing.T, l *lab.Lab, host, script string) string {
	t.Helper()
	out, err := l.Exec(context.Background(), host, "sh", "-c", script)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", host, script, err, out)
	}
	return strings.TrimSpace(out)
}

func writeSpec(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// connect connects to url, retrying for up to a minute (the VIP and
// HAProxy route to a new primary once etcd's lease has expired).
func connect(ctx context.Context, t *testing.T, url string) *pgx.Conn {
	t.Helper()
	var last error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := pgx.Connect(cctx, url)
		cancel()
		if err == nil {
			return conn
		}
		last = err
	}
	t.Fatalf("connecting to %s: %v", url, last)
	return nil
}

// waitHealthy waits for `pgherd status` to exit 0 (healthy). Apply returns
// once keepalived has started; the VIP comes a few VRRP adverts later
// (three advert_int in BACKUP before one host turns MASTER), so a status
// right after apply may still say "no host holds the VIP".
func waitHealthy(t *testing.T, dir string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Second) {
		r := pgherd(t, dir, "status", ".")
		if r.code == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after the migration is not healthy after a minute: %s", r)
		}
	}
}

func fileSum(t *testing.T, l *lab.Lab, path string) string {
	t.Helper()
	return onHost(t, l, "node1", "sha256sum "+path+" | cut -d' ' -f1")
}

// TestMigrate: a live node1 without wal_level or restart trouble is
// migrated while a client writes. Plans refused by the pre-flight checks
// (neither data checksums nor wal_log_hints, which the administrator then
// fixes as the refusal says; another major version; a pg_hba rule missing
// from the spec) and a dry run change nothing; apply adopts the running postmaster (its
// pid and the client's connection survive), clones node2 and node3, and
// sets up HAProxy and the VIP; no acknowledged write is lost, a second
// plan is empty, and a failover afterwards works.
func TestMigrate(t *testing.T) {
	l := freshLab(t)
	handSetup(t, l, "listen_addresses = '*'\nmax_connections = 150\n")
	etcConf := "/etc/postgresql/15/main/postgresql.conf"
	sumBefore := fileSum(t, l, etcConf)
	good := writeSpec(t, Spec(l, labNet, true))

	// Debian's cluster has neither data checksums nor wal_log_hints: the
	// plan refuses, and says what to do, which the administrator does.
	if r := pgherd(t, good, "plan", "."); r.code == 0 ||
		!strings.Contains(r.stdout+r.stderr, "rewind: data checksums are off and wal_log_hints is off") ||
		!strings.Contains(r.stdout+r.stderr, "Fix: ALTER SYSTEM SET wal_log_hints = on, and restart PostgreSQL once") {
		t.Fatalf("plan of a server without checksums or wal_log_hints: want a refusal saying what to fix, got %s", r)
	}
	onHost(t, l, "node1", "runuser -u postgres -- psql -XAtqc 'ALTER SYSTEM SET wal_log_hints = on' && systemctl restart postgresql@15-main")
	pidBefore := postmasterPID(t, l)

	// A spec of another major version, or without the application's
	// pg_hba rule, is refused, and the refusal changes nothing.
	other := writeSpec(t, strings.Replace(Spec(l, labNet, true), "version              = 15", "version              = 16", 1))
	if r := pgherd(t, other, "apply", "-auto-approve", "."); r.code == 0 ||
		!strings.Contains(r.stdout+r.stderr, "version: the server is PostgreSQL 15.") || !strings.Contains(r.stdout+r.stderr, "the spec says version = 16") ||
		strings.Contains(r.stdout+r.stderr, "data directory: the server's data directory is") {
		t.Fatalf("apply of a spec of version 16: want a refusal naming both versions, and only that, got %s", r)
	}
	refused := writeSpec(t, Spec(l, labNet, false))
	if r := pgherd(t, refused, "apply", "-auto-approve", "."); r.code == 0 ||
		!strings.Contains(r.stdout+r.stderr, "(host shop shop "+labNet+".0/24 scram-sha-256) is not in the spec") {
		t.Fatalf("apply of a spec without the shop pg_hba rule: want a refusal naming the line, got %s", r)
	}
	r := pgherd(t, good, "plan", ".")
	if r.code != 0 || !strings.Contains(r.stdout, "postgres_adopt.15/main") || !strings.Contains(r.stdout, ReloadImpact) {
		t.Fatalf("plan: want the migration with impact reload only, got %s", r)
	}
	if got := fileSum(t, l, etcConf); got != sumBefore {
		t.Fatalf("the refused apply or the plan changed %s", etcConf)
	}
	if out := onHost(t, l, "node1", "ls /var/lib/pgherd/adopt 2>/dev/null | wc -l; systemctl is-active pgherd-agent || true"); !strings.HasPrefix(out, "0") {
		t.Fatalf("the refused apply or the plan changed node1: %s", out)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	w := startWriter(ctx, t, l)
	t0 := time.Now()
	if r := pgherd(t, good, "apply", "-auto-approve", "."); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	wall := time.Since(t0)
	ws := finish(t, w, stop)
	t.Logf("migration: %d MB of data, apply took %s; %d writes acknowledged on the original connection, %d failed (%s), longest write gap %s",
		dataMB, wall.Round(100*time.Millisecond), len(ws.Acks), ws.Errors, ws.LastError, ws.Gap.Round(time.Millisecond))
	checkMigratedWithoutRestart(t, l, w, good, pidBefore, ws)
	var rows int64
	conn := connect(context.Background(), t, ShopURL(VIP(labNet), 5001))
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM items").Scan(&rows); err != nil || rows == 0 {
		t.Fatalf("the replica port shows %d items (%v)", rows, err)
	}
	conn.Close(context.Background())

	// A failover afterwards: node1 goes away, a replica takes over behind
	// the VIP with every acknowledged write.
	if err := l.Kill(context.Background(), "node1"); err != nil {
		t.Fatal(err)
	}
	conn = connect(context.Background(), t, ShopURL(VIP(labNet), 5000))
	defer conn.Close(context.Background())
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		_, err := conn.Exec(context.Background(), "INSERT INTO writes (id) VALUES (-1)")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write accepted through the VIP after node1's loss: %v", err)
		}
		conn.Close(context.Background())
		conn = connect(context.Background(), t, ShopURL(VIP(labNet), 5000))
	}
	noneMissing(t, w, ws.Acks, "through the VIP after the failover")
}

// checkMigratedWithoutRestart checks a migration that needed no restart:
// the client's connection to node1 never broke, the postmaster kept its
// pid, the cluster is healthy, a second plan is empty, Debian's unit is
// retired, and every acknowledged write is there through the VIP.
func checkMigratedWithoutRestart(t *testing.T, l *lab.Lab, w *workload.Writer, dir, pidBefore string, ws Writes) {
	t.Helper()
	if ws.Errors != 0 {
		t.Errorf("the client's connection to node1 broke %d times during the migration: want none without a restart; the first: %s",
			ws.Errors, strings.Join(ws.FirstErrors, "; "))
	}
	if pid := postmasterPID(t, l); pid != pidBefore {
		t.Errorf("the postmaster's pid changed from %s to %s: the migration restarted it", pidBefore, pid)
	}
	waitHealthy(t, dir)
	if r := pgherd(t, dir, "plan", "-detailed-exitcode", "."); r.code != 0 {
		t.Errorf("a second plan is not empty: %s", r)
	}
	if out := onHost(t, l, "node1", "systemctl show -p UnitFileState --value postgresql@15-main; cat /etc/postgresql/15/main/start.conf"); !strings.Contains(out, "masked") || !strings.Contains(out, "disabled") {
		t.Errorf("Debian's unit is not retired: %s", out)
	}
	noneMissing(t, w, ws.Acks, "through the VIP")
}

// postmasterPID is the pid of node1's postmaster.
func postmasterPID(t *testing.T, l *lab.Lab) string {
	t.Helper()
	return onHost(t, l, "node1", "head -n1 /var/lib/postgresql/15/main/postmaster.pid")
}

// interruptedApply runs `pgherd apply -auto-approve` with args and presses
// Ctrl-C once a line of its output contains at: the running steps finish,
// no other starts, and the apply says it was interrupted.
func interruptedApply(t *testing.T, dir, at string, args ...string) {
	t.Helper()
	r, err := interrupt.Run(pgherdBin, dir, func(line string) bool { return strings.Contains(line, at) }, 0,
		append([]string{"apply", "-auto-approve"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("apply %s, interrupted at %q:\n%s\n%s", strings.Join(args, " "), at, r.Stdout, r.Stderr)
	switch {
	case !r.Interrupted:
		t.Fatalf("the apply never printed %q", at)
	case r.Code == 0:
		t.Fatalf("an interrupted apply exited 0")
	case !strings.Contains(r.Stderr, "interrupted: the next apply resumes"):
		t.Fatalf("no word of the interruption on stderr")
	}
}

// TestMigrateResume: the migration is interrupted twice while the client
// writes, and a third apply finishes it. First Ctrl-C while node1's
// configuration moves (that step finishes, nothing after it starts); then
// Ctrl-C once node1's agent has started, which adopts the primary on its
// own meanwhile. The last apply finishes the cluster: the replicas,
// HAProxy and the VIP. As in TestMigrate, no write fails or is lost and
// the postmaster keeps its pid.
func TestMigrateResume(t *testing.T) {
	l := freshLab(t)
	handSetup(t, l, ReadySettings)
	pidBefore := postmasterPID(t, l)
	good := writeSpec(t, Spec(l, labNet, true))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	w := startWriter(ctx, t, l)
	t0 := time.Now()

	interruptedApply(t, good, "node1: postgres_adopt.15/main: creating...", ".")
	if out := onHost(t, l, "node1", "head -n1 /etc/postgresql/15/main/postgresql.conf | cut -c1-17; systemctl is-active pgherd-agent || true"); out != "# pgherd: adopted\ninactive" {
		t.Fatalf("after the first interruption: want node1's configuration moved and no agent, got %q", out)
	}

	interruptedApply(t, good, "node1: service.pgherd-agent.service: done", ".")
	// Left alone, node1's agent adopts the running primary: it takes the
	// leader key and registers the data directory, without a restart.
	journal := "journalctl -u pgherd-agent --no-pager"
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		if onHost(t, l, "node1", journal+" | grep -c 'registering this data directory' || true") != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node1's agent did not adopt the primary within a minute\n%s", onHost(t, l, "node1", journal+" | tail -n 30"))
		}
	}
	if pid := postmasterPID(t, l); pid != pidBefore {
		t.Fatalf("node1's agent restarted the adopted primary (pid %s, was %s)\n%s", pid, pidBefore, onHost(t, l, "node1", journal+" | tail -n 30"))
	}

	if r := pgherd(t, good, "apply", "-auto-approve", "."); r.code != 0 {
		t.Fatalf("the apply that resumes the migration: %s", r)
	}
	wall := time.Since(t0)
	ws := finish(t, w, stop)
	t.Logf("migration interrupted twice: three applies took %s; %d writes acknowledged on the original connection, %d failed (%s), longest write gap %s",
		wall.Round(100*time.Millisecond), len(ws.Acks), ws.Errors, ws.LastError, ws.Gap.Round(time.Millisecond))
	checkMigratedWithoutRestart(t, l, w, good, pidBefore, ws)
}

// TestMigrateRestart: node1 runs with wal_level = minimal, which no
// replica can stream from: the plan says a restart is needed and why, and
// the agent restarts the server once; the write gap is recorded, no
// acknowledged write is lost.
func TestMigrateRestart(t *testing.T) {
	l := freshLab(t)
	handSetup(t, l, MinimalSettings)
	good := writeSpec(t, Spec(l, labNet, true))
	r := pgherd(t, good, "plan", ".")
	if r.code != 0 || !strings.Contains(r.stdout, RestartImpact) {
		t.Fatalf("plan: want the restart predicted, got %s", r)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	w := startWriter(ctx, t, l)
	t0 := time.Now()
	if r := pgherd(t, good, "apply", "-auto-approve", "."); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	wall := time.Since(t0)
	ws := finish(t, w, stop)
	t.Logf("migration with a restart: apply took %s; %d writes acknowledged, %d failed attempts (%s), longest write gap %s",
		wall.Round(100*time.Millisecond), len(ws.Acks), ws.Errors, ws.LastError, ws.Gap.Round(time.Millisecond))
	waitHealthy(t, good)
	noneMissing(t, w, ws.Acks, "through the VIP")
	if lvl := onHost(t, l, "node1", "runuser -u postgres -- psql -XAtc 'SHOW wal_level'"); lvl != "replica" {
		t.Errorf("wal_level after the migration is %q, want replica", lvl)
	}
	journal := "journalctl -u pgherd-agent --no-pager"
	if n := onHost(t, l, "node1", journal+" | grep -c -e 'msg=\"postgres started\"' -e 'decision=.*fencing' || true"); n != "1" {
		t.Errorf("node1's agent started PostgreSQL or fenced it %s times, want one restart:\n%s", n,
			onHost(t, l, "node1", journal+" | grep -e 'msg=\"postgres st' -e 'msg=decision' | head -n 30"))
	}
}

// handSetup is HandSetup of dataMB on the test's lab.
func handSetup(t *testing.T, l *lab.Lab, settings string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := HandSetup(ctx, l, labNet, settings, dataMB); err != nil {
		t.Fatal(err)
	}
}

// startWriter starts the application's client on its connection to node1;
// it stops when ctx ends.
func startWriter(ctx context.Context, t *testing.T, l *lab.Lab) *workload.Writer {
	t.Helper()
	w, err := StartWriter(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// finish is Finish.
func finish(t *testing.T, w *workload.Writer, stop context.CancelFunc) Writes {
	t.Helper()
	ws, err := Finish(context.Background(), w, stop)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// noneMissing fails the test if the primary behind the VIP lacks an
// acknowledged write.
func noneMissing(t *testing.T, w *workload.Writer, acks []workload.Ack, where string) {
	t.Helper()
	miss, err := Missing(context.Background(), w, labNet, acks)
	if err != nil {
		t.Fatal(err)
	}
	if len(miss) > 0 {
		t.Fatalf("%d acknowledged writes missing %s: %v", len(miss), where, miss[:min(len(miss), 10)])
	}
}
