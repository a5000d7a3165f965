package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/agent/api"
	"github.com/pgherd/pgherd/agent/dcs/etcdtest"
	"github.com/pgherd/pgherd/agent/pg"
	"github.com/pgherd/pgherd/internal/porttest"
	"github.com/pgherd/pgherd/internal/tlstest"
)

const testBinDir = "/usr/lib/postgresql/15/bin"

// member is one agent of the test cluster, with its own loopback address.
type member struct {
	cfg    *Config
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
}

type testCluster struct {
	t       *testing.T
	base    string
	members map[string]*member
	names   []string
	// ca, when set, issued every member's certificate: the test's own
	// connections verify the servers with it.
	ca *tlstest.CA
}

// sslMode is how the test connects to PostgreSQL.
func (c *testCluster) sslMode(name string) string {
	if c.ca == nil {
		return "sslmode=disable"
	}
	return "sslmode=verify-full sslrootcert=" + c.members[name].cfg.TLS.CAFile
}

// apiURL is the member's API address with the scheme it serves.
func (c *testCluster) apiURL(name string) string {
	return c.members[name].cfg.TLS.scheme() + "://" + c.members[name].cfg.API.Listen
}

// httpClient reaches the members' API, trusting the test's CA.
func (c *testCluster) httpClient() *http.Client {
	cl := &http.Client{Timeout: 90 * time.Second}
	if c.ca != nil {
		roots := x509.NewCertPool()
		roots.AddCert(c.ca.Cert)
		cl.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	}
	return cl
}

// newTestCluster prepares n members (not started) against a real etcd.
func newTestCluster(t *testing.T, n int, mod func(*Config)) *testCluster {
	t.Helper()
	return newCluster(t, n, nil, mod)
}

// newTLSTestCluster prepares n members that use TLS everywhere, with
// certificates of ca: etcd over https with client certificates, the API
// over HTTPS, PostgreSQL with ssl on, hostssl rules only and replication
// with sslmode=verify-full.
func newTLSTestCluster(t *testing.T, n int, ca *tlstest.CA) *testCluster {
	t.Helper()
	return newCluster(t, n, ca, nil)
}

func newCluster(t *testing.T, n int, ca *tlstest.CA, mod func(*Config)) *testCluster {
	t.Helper()
	if _, err := os.Stat(filepath.Join(testBinDir, "postgres")); err != nil {
		t.Skipf("PostgreSQL 15 is not installed at %s: %v", testBinDir, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("the agent tests run PostgreSQL as the postgres user and need root")
	}
	base, err := os.MkdirTemp("", "pgherd-agent-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	t.Cleanup(func() { os.RemoveAll(base) })
	var etcd *etcdtest.Cluster
	if ca != nil {
		f := ca.WriteFiles(t, base, "etcd", []string{"localhost"}, "127.0.0.1")
		etcd = etcdtest.StartTLS(t, 1, etcdtest.TLS{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key})
	} else {
		etcd = etcdtest.Start(t, 1)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	c := &testCluster{t: t, base: base, members: map[string]*member{}, ca: ca}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("node%d", i)
		addr := fmt.Sprintf("127.0.0.%d", 10+i)
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		cfg := &Config{Cluster: "test", Name: name, Address: addr, RunDir: filepath.Join(dir, "run")}
		cfg.Postgres.BinDir = testBinDir
		cfg.Postgres.DataDir = filepath.Join(dir, "data")
		cfg.Postgres.Port = porttest.FreeOn(t, addr)
		cfg.Postgres.SocketDir = dir
		cfg.Postgres.Listen = addr
		cfg.Postgres.OSUser = "postgres"
		cfg.Postgres.Superuser = Credentials{User: "postgres", Password: "su-secret"}
		cfg.Postgres.Replication = Credentials{User: "replicator", Password: "repl-secret"}
		// The test runs as root, so local peer authentication cannot work.
		cfg.Postgres.HBA = "local all all trust\nhost replication replicator 127.0.0.0/8 scram-sha-256\nhost all all 127.0.0.0/8 scram-sha-256\n"
		cfg.Postgres.Parameters = map[string]string{"shared_buffers": "16MB", "max_connections": "30"}
		cfg.Etcd.Endpoints = etcd.Endpoints()
		cfg.API.Listen = fmt.Sprintf("%s:%d", addr, porttest.FreeOn(t, addr))
		cfg.API.Token = "api-token"
		cfg.HA.TTL.Duration = 3 * time.Second
		cfg.HA.LoopWait.Duration = time.Second
		cfg.HA.MaximumLagOnFailover = 16 << 20
		cfg.HA.SynchronousMode = "off"
		if ca != nil {
			tdir := filepath.Join(dir, "tls")
			if err := os.Mkdir(tdir, 0o755); err != nil {
				t.Fatal(err)
			}
			f := ca.WriteFiles(t, tdir, "host", []string{name}, addr)
			// PostgreSQL reads its key as postgres.
			if err := os.Chown(f.Key, uid, gid); err != nil {
				t.Fatal(err)
			}
			cfg.TLS = TLSFiles{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}
			cfg.Postgres.HBA = "local all all trust\nhostssl replication replicator 127.0.0.0/8 scram-sha-256\nhostssl all all 127.0.0.0/8 scram-sha-256\n"
		}
		if mod != nil {
			mod(cfg)
		}
		if err := cfg.check(); err != nil {
			t.Fatal(err)
		}
		c.members[name] = &member{cfg: cfg}
		c.names = append(c.names, name)
	}
	t.Cleanup(func() {
		for _, name := range c.names {
			c.stop(name, true)
			in := &pg.Instance{BinDir: testBinDir, DataDir: c.members[name].cfg.Postgres.DataDir, User: "postgres"}
			_ = in.Stop(context.Background(), pg.Immediate)
		}
	})
	return c
}

// start runs the named member's agent in this process.
func (c *testCluster) start(name string) {
	m := c.members[name]
	log := slog.New(slog.NewTextHandler(c.t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("member", name)
	m.agent = New(m.cfg, log, "test")
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.done = make(chan error, 1)
	go func() { m.done <- m.agent.Run(ctx) }()
}

// stop ends the named member's agent: cleanly (a handover) or, with
// crash, as if its host froze: the agent exits and leaves PostgreSQL and
// the leader key behind.
func (c *testCluster) stop(name string, crash bool) {
	m := c.members[name]
	if m.agent == nil {
		return
	}
	if crash {
		m.agent.Shutdown(true)
	} else {
		m.cancel()
	}
	select {
	case err := <-m.done:
		if err != nil {
			c.t.Logf("%s: agent ended: %v", name, err)
		}
	case <-time.After(60 * time.Second):
		c.t.Fatalf("%s: agent did not stop", name)
	}
	m.cancel()
	m.agent = nil
}

// kill loses a member's host: the agent is gone and PostgreSQL stops at
// once, without handing anything over.
func (c *testCluster) kill(name string) {
	c.stop(name, true)
	m := c.members[name]
	in := &pg.Instance{BinDir: testBinDir, DataDir: m.cfg.Postgres.DataDir, User: "postgres"}
	if err := in.Fence(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

// waitRoles waits until the running agents show exactly one leader
// (a running primary holding the lease) and every other running agent a
// streaming replica; it returns the leader's name.
func (c *testCluster) waitRoles(timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		leader, replicas, running := "", 0, 0
		var states []string
		for _, name := range c.names {
			m := c.members[name]
			if m.agent == nil {
				continue
			}
			running++
			s := m.agent.Snapshot()
			states = append(states, fmt.Sprintf("%s=%s/%s leader=%v streaming=%v", name, s.Role, s.State, s.IsLeader, s.Streaming))
			switch {
			case s.Role == api.RolePrimary && s.IsLeader && s.PostgresRunning:
				if leader != "" {
					c.t.Fatalf("two leaders: %s and %s", leader, name)
				}
				leader = name
			case s.Role == api.RoleReplica && s.Streaming:
				replicas++
			}
		}
		last = strings.Join(states, "; ")
		// The leader shows as such from the pass that sees its new
		// primary running, whose bookkeeping then sets the superuser's
		// password (ensureRoles): the tests log in as the superuser.
		if leader != "" && replicas == running-1 && c.canLogIn(leader) {
			return leader
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("cluster did not settle in %s: %s", timeout, last)
	return ""
}

// canLogIn reports whether the superuser logs in on member name.
func (c *testCluster) canLogIn(name string) bool {
	conn, err := c.connect(name)
	if err != nil {
		return false
	}
	conn.Close(context.Background())
	return true
}

func (c *testCluster) connect(name string) (*pgx.Conn, error) {
	m := c.members[name]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres password=su-secret dbname=postgres %s",
		m.cfg.Address, m.cfg.Postgres.Port, c.sslMode(name)))
}

func (c *testCluster) conn(name string) *pgx.Conn {
	c.t.Helper()
	conn, err := c.connect(name)
	if err != nil {
		c.t.Fatalf("connect to %s: %v", name, err)
	}
	c.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func (c *testCluster) exec(name, sql string) {
	c.t.Helper()
	conn := c.conn(name)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		c.t.Fatalf("%s: %s: %v", name, sql, err)
	}
}

func (c *testCluster) count(name string) int {
	c.t.Helper()
	var n int
	conn := c.conn(name)
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM t").Scan(&n); err != nil {
		c.t.Fatalf("%s: count: %v", name, err)
	}
	return n
}

// waitCount waits until the member has replayed n rows of t.
func (c *testCluster) waitCount(name string, n int) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	conn := c.conn(name)
	var have int
	var err error
	for time.Now().Before(deadline) {
		// The table itself may not have been replayed yet.
		err = conn.QueryRow(context.Background(), "SELECT count(*) FROM t").Scan(&have)
		if err == nil && have == n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("%s: has %d rows (%v), want %d", name, have, err, n)
}

func (c *testCluster) post(name, path, body string) (int, string) {
	c.t.Helper()
	m := c.members[name]
	req, _ := http.NewRequest(http.MethodPost, c.apiURL(name)+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+m.cfg.API.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		c.t.Fatalf("POST %s to %s: %v", path, name, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// switchover asks the leader through the API to hand over to another
// running member, waits until it has, and returns the new leader.
func (c *testCluster) switchover(leader string) string {
	c.t.Helper()
	target := c.others(leader)[0]
	code, body := c.post(leader, "/switchover", fmt.Sprintf(`{"leader": %q, "candidate": %q}`, leader, target))
	if code != http.StatusOK {
		c.t.Fatalf("switchover: %d %s", code, body)
	}
	if got := c.waitRoles(60 * time.Second); got != target {
		c.t.Fatalf("leader is %s after a switchover to %s", got, target)
	}
	return target
}

func (c *testCluster) others(name string) []string {
	var o []string
	for _, n := range c.names {
		if n != name && c.members[n].agent != nil {
			o = append(o, n)
		}
	}
	return o
}

// TestAgentLifecycle runs three agents against real PostgreSQL and etcd:
// bootstrap, replication, failover after the primary's loss, rejoin of the
// old primary with pg_rewind, switchover through the API, and a clean
// shutdown that hands over at once.
func TestAgentLifecycle(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for _, n := range c.names {
		c.start(n)
	}
	leader := c.waitRoles(90 * time.Second)
	t.Logf("bootstrapped: leader %s", leader)
	c.exec(leader, "CREATE TABLE t (id int primary key)")
	c.exec(leader, "INSERT INTO t SELECT generate_series(1, 100)")
	for _, r := range c.others(leader) {
		c.waitCount(r, 100)
		// The replication password is in a password file: PostgreSQL
		// logs primary_conninfo whenever a reload changes it.
		var ci string
		if err := c.conn(r).QueryRow(context.Background(), "SHOW primary_conninfo").Scan(&ci); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(ci, "repl-secret") || !strings.Contains(ci, "passfile=") {
			t.Fatalf("%s: primary_conninfo %q: want a passfile, not the password", r, ci)
		}
	}

	t.Run("failover after the primary's loss", func(t *testing.T) {
		old := leader
		// The old primary takes a write that no replica will see: after
		// the failover it has diverged and must rewind to rejoin.
		c.exec(old, "SELECT pg_switch_wal()")
		c.kill(old)
		start := time.Now()
		leader = c.waitRoles(60 * time.Second)
		if leader == old {
			t.Fatalf("the lost primary is still leader")
		}
		t.Logf("failover to %s after %s", leader, time.Since(start).Round(100*time.Millisecond))
		if n := c.count(leader); n != 100 {
			t.Fatalf("new primary has %d rows, want 100", n)
		}
		c.exec(leader, "INSERT INTO t SELECT generate_series(101, 200)")

		c.start(old)
		if got := c.waitRoles(90 * time.Second); got != leader {
			t.Fatalf("leader changed to %s when the old primary came back", got)
		}
		c.waitCount(old, 200)
	})

	t.Run("switchover through the API", func(t *testing.T) {
		old := leader
		leader = c.switchover(leader)
		c.exec(leader, "INSERT INTO t SELECT generate_series(201, 300)")
		c.waitCount(old, 300)
	})

	t.Run("clean shutdown hands over at once", func(t *testing.T) {
		old := leader
		start := time.Now()
		c.stop(old, false)
		leader = c.waitRoles(30 * time.Second)
		t.Logf("handover to %s after %s", leader, time.Since(start).Round(100*time.Millisecond))
		if n := c.count(leader); n != 300 {
			t.Fatalf("new primary has %d rows, want 300", n)
		}
	})

	t.Run("a data directory left midway by pg_rewind is reinitialized, never started", func(t *testing.T) {
		var r string
		for _, n := range c.others(leader) {
			if c.members[n].agent != nil {
				r = n
			}
		}
		if r == "" {
			t.Fatal("no running replica")
		}
		// As if the host died while pg_rewind rewrote the directory:
		// the marker stays behind, and the control file is gone.
		c.kill(r)
		dataDir := c.members[r].cfg.Postgres.DataDir
		if err := os.WriteFile(dataDir+".pgherd-incomplete", []byte("pg_rewind\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dataDir, "global", "pg_control"), filepath.Join(c.base, r+"-pg_control")); err != nil {
			t.Fatal(err)
		}
		c.exec(leader, "INSERT INTO t SELECT generate_series(301, 400)")
		c.start(r)
		if got := c.waitRoles(90 * time.Second); got != leader {
			t.Fatalf("leader changed to %s", got)
		}
		c.waitCount(r, 400)
		if _, err := os.Stat(dataDir + ".pgherd-incomplete"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the marker is still there after the reinitialization: %v", err)
		}
		aside, _ := filepath.Glob(dataDir + ".pgherd-old-*")
		if len(aside) != 1 {
			t.Errorf("the unusable directory was not moved aside: %v", aside)
		}
	})
}

// TestAgentSyncMode: with synchronous_mode on, the leader makes one
// standby synchronous and publishes it in the sync key; when the primary is
// lost, only that standby may take over, and every commit the old primary
// acknowledged is on the new one.
func TestAgentSyncMode(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.HA.SynchronousMode = "on" })
	for _, n := range c.names {
		c.start(n)
	}
	leader := c.waitRoles(90 * time.Second)
	var syncName string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && syncName == "" {
		if s := c.members[leader].agent.Snapshot(); len(s.Cluster.SyncStandbys) == 1 {
			syncName = s.Cluster.SyncStandbys[0]
		}
		time.Sleep(200 * time.Millisecond)
	}
	if syncName == "" {
		t.Fatalf("no synchronous standby published")
	}
	var ssn string
	if err := c.conn(leader).QueryRow(context.Background(), "SHOW synchronous_standby_names").Scan(&ssn); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ssn, syncName) {
		t.Fatalf("synchronous_standby_names = %q, sync key names %s", ssn, syncName)
	}
	c.exec(leader, "CREATE TABLE t (id int primary key)")
	// Every INSERT returns only once the sync standby has it.
	conn := c.conn(leader)
	for i := 1; i <= 200; i++ {
		if _, err := conn.Exec(context.Background(), fmt.Sprintf("INSERT INTO t VALUES (%d)", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.kill(leader)
	got := c.waitRoles(60 * time.Second)
	if got != syncName {
		t.Fatalf("%s took over, but only the synchronous standby %s may", got, syncName)
	}
	if n := c.count(got); n != 200 {
		t.Fatalf("new primary has %d of the 200 acknowledged rows", n)
	}
}
