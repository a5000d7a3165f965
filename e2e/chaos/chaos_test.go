package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/bench/results"
	"github.com/pgherd/pgherd/e2e/lab"
	"github.com/pgherd/pgherd/e2e/suite"
)

const (
	vip         = labNet + ".100"
	dataDir     = "/data/postgresql/pgherd" // its parent made postgres's by pgherd (the agent works beside it)
	appPassword = "lab-app-pw"              // the example's variable default
)

// settings of a soak, from the environment (make chaos sets them).
type settings struct {
	duration time.Duration // of the fault phase
	seed     int64
	settle   time.Duration // bound on getting healthy once faults stop
	out      string        // directory for report.md and history.jsonl
	results  string        // results file whose chaos section is replaced
}

func soakSettings(t *testing.T) settings {
	t.Helper()
	s := settings{duration: 150 * time.Second, seed: 1, settle: 3 * time.Minute,
		out: os.Getenv("PGHERD_CHAOS_OUT"), results: os.Getenv("PGHERD_CHAOS_RESULTS")}
	if v := os.Getenv("PGHERD_CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("PGHERD_CHAOS_DURATION=%q: want a positive duration such as 10m", v)
		}
		s.duration = d
	}
	if v := os.Getenv("PGHERD_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("PGHERD_CHAOS_SEED=%q: want an integer", v)
		}
		s.seed = n
	}
	return s
}

// minFaults is the fewest faults a soak of d must inject: one per 20 s
// (30 in ten minutes, 7 in the short soak of make test).
func minFaults(d time.Duration) int { return int(d / (20 * time.Second)) }

func TestChaos(t *testing.T) {
	if theLab == nil {
		t.Skip("set PGHERD_E2E=1 to run the chaos soak (make chaos)")
	}
	suite.JournalsOnFailure(t, theLab)
	s := soakSettings(t)
	t.Logf("chaos soak: %s of faults, seed %d (PGHERD_CHAOS_DURATION, PGHERD_CHAOS_SEED)", s.duration, s.seed)

	dir := specDir(t)
	apply := exec.Command(pgherdBin, "apply", "-auto-approve", ".")
	apply.Dir = dir
	apply.Env = append(os.Environ(), "NO_COLOR=1")
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("apply of the HA cluster: %v\n%s", err, out)
	}
	hosts := hostNames()
	if _, err := waitHealthy(t, hosts, 3*time.Minute); err != nil {
		t.Fatalf("the cluster is not healthy after the apply: %v", err)
	}

	ids := prepareTable(t)
	hist := &History{}
	nodes := map[string]string{}
	for _, h := range theLab.Hosts() {
		nodes[h.Address] = h.Name
	}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var load sync.WaitGroup
	procs := []*process{{name: "vip", dsn: appDSN(vip, 5000), timeout: 10 * time.Second, pause: 10 * time.Millisecond, ids: ids, hist: hist, nodes: nodes}}
	for _, h := range dbHosts() {
		procs = append(procs, &process{name: h.Name, dsn: appDSN(h.Address, 5432), timeout: 5 * time.Second, pause: 200 * time.Millisecond, ids: ids, hist: hist, nodes: nodes})
	}
	for _, p := range procs {
		load.Go(func() { p.run(loadCtx) })
	}
	defer func() {
		stopLoad()
		load.Wait()
	}()
	waitAcks(t, hist, 20, time.Minute)

	start := time.Now()
	n := &nemesis{rng: rand.New(rand.NewPCG(uint64(s.seed), uint64(s.seed))), hosts: hosts, logf: t.Logf,
		withRole: func(ctx context.Context, role string) string { return withRole(ctx, hosts, role) }}
	faultCtx, stopFaults := context.WithTimeout(context.Background(), s.duration)
	n.run(faultCtx)
	stopFaults()
	healed := time.Now()
	t.Logf("faults stopped after %s: %d injected", healed.Sub(start).Round(time.Second), Injected(n.faults))

	primary, healthErr := waitHealthy(t, hosts, s.settle)
	healthy := time.Since(healed)
	if healthErr == nil {
		// A write acknowledged once healthy proves the VIP takes writes.
		waitAcks(t, hist, hist.Count("vip", OK)+5, time.Minute)
	}
	stopLoad()
	load.Wait()

	var present map[int64]bool
	if healthErr != nil {
		// Check the writes anyway on whichever host is primary.
		primary = withRole(context.Background(), hosts, "primary")
	}
	if primary != "" {
		present = idsOnPrimary(t, primary)
	}
	ops := hist.Ops()
	r := Check(ops, present)
	sum := Summary{Seed: s.seed, Duration: s.duration, Start: start, Healthy: healthy, Primary: primary,
		Machine: fmt.Sprintf("%d cores, %s", runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))}
	report := Report(sum, n.faults, r)
	t.Logf("report:\n%s", report)
	writeOutputs(t, s, report, ops)

	if healthErr != nil {
		t.Fatalf("the cluster was not healthy %s after the faults stopped: %v", s.settle, healthErr)
	}
	if !r.Passed() {
		t.Errorf("lost %d acknowledged writes, %d split-brain windows, %d failed writes present: see the report", len(r.Lost), len(r.SplitBrain), len(r.FailedPresent))
	}
	if want := minFaults(s.duration); Injected(n.faults) < want {
		t.Errorf("%d faults injected in %s, want at least %d", Injected(n.faults), s.duration, want)
	}
}

// specDir writes examples/ha moved onto the soak's lab, in synchronous
// mode, with the data directory on the hosts' data disks, and lab.hcl.
func specDir(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "ha", "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, r := range []struct{ old, new string }{
		{`vip       = "10.77.0.100/24"`, `vip       = "` + vip + `/24"`},
		{`address  = "10.77.0.0/24"`, `address  = "` + labSubnet + `"`},
		// The backup repository's SFTP server, on node4.
		{`host        = "10.77.0.14"`, `host        = "` + theLab.Hosts()[3].Address + `"`},
		{`synchronous_mode = "off"`, `synchronous_mode = "on"`},
		{`version              = 15`, "version              = 15\n    data_dir             = \"" + dataDir + "\""},
	} {
		if !strings.Contains(src, r.old) {
			t.Fatalf("examples/ha/main.hcl no longer contains %q: adapt specDir", r.old)
		}
		src = strings.Replace(src, r.old, r.new, 1)
	}
	for _, l := range strings.Split(src, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") && strings.Contains(l, "10.77.") {
			t.Fatalf("examples/ha/main.hcl has a 10.77. address specDir does not move: %s", l)
		}
	}
	dir := t.TempDir()
	for name, content := range map[string]string{"main.hcl": src, "lab.hcl": theLab.SpecSnippet()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func appDSN(host string, port int) string {
	return fmt.Sprintf("postgres://app:%s@%s:%d/app?sslmode=disable&connect_timeout=2", appPassword, host, port)
}

// dbHosts are the lab's PostgreSQL hosts, node1..node3: examples/ha keeps
// its backup repository on node4, which the faults leave alone.
func dbHosts() []lab.Host { return theLab.Hosts()[:3] }

func hostNames() []string {
	var names []string
	for _, h := range dbHosts() {
		names = append(names, h.Name)
	}
	return names
}

func hostAddr(name string) string {
	for _, h := range theLab.Hosts() {
		if h.Name == name {
			return h.Address
		}
	}
	return ""
}

// prepareTable creates the table the processes write to and returns the
// id counter, past any id already there (a kept lab).
func prepareTable(t *testing.T) *atomic.Int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, appDSN(vip, 5000))
	if err != nil {
		t.Fatalf("connect through the VIP: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS chaos_writes (id bigint PRIMARY KEY, src text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	var next int64
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM chaos_writes").Scan(&next); err != nil {
		t.Fatalf("max id: %v", err)
	}
	ids := &atomic.Int64{}
	ids.Store(next)
	return ids
}

// waitAcks waits until the VIP writer has n acknowledged writes.
func waitAcks(t *testing.T, h *History, n int, timeout time.Duration) {
	t.Helper()
	end := time.Now().Add(timeout)
	for h.Count("vip", OK) < n {
		if time.Now().After(end) {
			t.Fatalf("fewer than %d writes acknowledged through the VIP after %s", n, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// member is the part of an agent's /patroni answer the soak reads.
type member struct {
	State            string `json:"state"`
	Role             string `json:"role"`
	ReplicationState string `json:"replication_state"`
	Pgherd           struct {
		IsLeader   bool `json:"is_leader"`
		LeaseValid bool `json:"lease_valid"`
	} `json:"pgherd"`
}

var apiClient = &http.Client{Timeout: 2 * time.Second}

func memberOf(ctx context.Context, host string) (member, error) {
	var m member
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostAddr(host)+":8008/patroni", nil)
	if err != nil {
		return m, err
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return m, fmt.Errorf("%s /patroni: %w", host, err)
	}
	return m, nil
}

// withRole is a host whose agent says it is in role, "" if none.
func withRole(ctx context.Context, hosts []string, role string) string {
	for _, h := range hosts {
		if m, err := memberOf(ctx, h); err == nil && m.Role == role {
			return h
		}
	}
	return ""
}

// healthy returns the primary when the cluster is healthy: every agent
// answers, exactly one host is the running primary holding a valid
// leader lease, every other one a streaming replica, the VIP is on
// exactly one front host whose HAProxy runs, and the VIP's primary port
// reaches the primary.
func healthy(ctx context.Context, hosts []string) (string, error) {
	primary := ""
	var view []string
	for _, h := range hosts {
		m, err := memberOf(ctx, h)
		if err != nil {
			return "", fmt.Errorf("%s: %w", h, err)
		}
		view = append(view, fmt.Sprintf("%s=%s/%s/%s leader=%v", h, m.Role, m.State, m.ReplicationState, m.Pgherd.IsLeader))
		switch {
		case m.Role == "primary" && m.State == "running" && m.Pgherd.IsLeader && m.Pgherd.LeaseValid && primary == "":
			primary = h
		case m.Role == "replica" && m.ReplicationState == "streaming":
		default:
			return "", fmt.Errorf("not settled: %s", strings.Join(view, " "))
		}
	}
	if primary == "" {
		return "", fmt.Errorf("no primary: %s", strings.Join(view, " "))
	}
	var holders []string
	for _, h := range fronts {
		out, err := theLab.Exec(ctx, h, "sh", "-c", "ip -4 -o addr show; systemctl is-active haproxy.service || true")
		if err != nil {
			return "", fmt.Errorf("%s: %w", h, err)
		}
		if strings.Contains(out, " "+vip+"/") {
			if !strings.Contains(out, "\nactive") {
				return "", fmt.Errorf("the VIP is on %s, whose HAProxy is not active", h)
			}
			holders = append(holders, h)
		}
	}
	if len(holders) != 1 {
		return "", fmt.Errorf("the VIP is on %d front hosts %v, want 1", len(holders), holders)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, appDSN(vip, 5000))
	if err != nil {
		return "", fmt.Errorf("the VIP's primary port: %w", err)
	}
	defer conn.Close(context.Background())
	var addr string
	var rec bool
	if err := conn.QueryRow(cctx, "SELECT host(inet_server_addr()), pg_is_in_recovery()").Scan(&addr, &rec); err != nil {
		return "", fmt.Errorf("the VIP's primary port: %w", err)
	}
	if addr != hostAddr(primary) || rec {
		return "", fmt.Errorf("the VIP's primary port reaches %s (in recovery %v), not the primary %s", addr, rec, primary)
	}
	return primary, nil
}

// waitHealthy waits until the cluster is healthy, for at most timeout.
func waitHealthy(t *testing.T, hosts []string, timeout time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		p, err := healthy(ctx, hosts)
		if err == nil {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// idsOnPrimary reads every id the primary holds, connected to it directly.
func idsOnPrimary(t *testing.T, primary string) map[int64]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, appDSN(hostAddr(primary), 5432))
	if err != nil {
		t.Fatalf("connect to the primary %s: %v", primary, err)
	}
	defer conn.Close(context.Background())
	var rec bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
		t.Fatalf("%s is no longer the primary (in recovery %v, %v)", primary, rec, err)
	}
	rows, err := conn.Query(ctx, "SELECT id FROM chaos_writes")
	if err != nil {
		t.Fatalf("read the writes on %s: %v", primary, err)
	}
	present := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		present[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read the writes on %s: %v", primary, err)
	}
	return present
}

// writeOutputs writes the report and the history where the settings say.
func writeOutputs(t *testing.T, s settings, report string, ops []Op) {
	t.Helper()
	if s.out != "" {
		if err := os.MkdirAll(s.out, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.out, "report.md"), []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(s.out, "history.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteJSONL(f, ops); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("report and history in %s", s.out)
	}
	if s.results != "" {
		section := "## Chaos soak\n\nWritten by `make chaos` (e2e/chaos, docs/chaos.md): examples/ha in synchronous mode on 3 lab hosts, a write load through the VIP, one fault at a time.\n\n" + report
		if err := results.WriteSection(s.results, "chaos", section); err != nil {
			t.Fatal(err)
		}
	}
}
