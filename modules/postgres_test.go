package modules

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/internal/porttest"
)

// The rows are (setting, unit, vartype) as PostgreSQL 15's pg_settings
// shows them for a fresh initdb.
func TestNormalizeSetting(t *testing.T) {
	for _, tc := range []struct {
		param, want, setting, unit, vartype string
		equal                               bool
	}{
		{"shared_buffers", "128MB", "16384", "8kB", "integer", true},
		{"shared_buffers", "16384", "16384", "8kB", "integer", true},
		{"shared_buffers", "256MB", "16384", "8kB", "integer", false},
		{"shared_buffers", "1GB", "131072", "8kB", "integer", true},
		{"work_mem", "4MB", "4096", "kB", "integer", true},
		{"work_mem", "4096kB", "4096", "kB", "integer", true},
		{"work_mem", "1.5MB", "1536", "kB", "integer", true},
		{"effective_cache_size", "4GB", "524288", "8kB", "integer", true},
		{"max_wal_size", "1GB", "1024", "MB", "integer", true},
		{"wal_buffers", "-1", "-1", "8kB", "integer", true},
		{"checkpoint_timeout", "5min", "300", "s", "integer", true},
		{"checkpoint_timeout", "300s", "300", "s", "integer", true},
		{"checkpoint_timeout", "300000ms", "300", "s", "integer", true},
		{"log_min_duration_statement", "-1", "-1", "ms", "integer", true},
		{"log_min_duration_statement", "1s", "1000", "ms", "integer", true},
		{"log_min_duration_statement", "250", "250", "ms", "integer", true},
		{"wal_sender_timeout", "1min", "60000", "ms", "integer", true},
		{"max_connections", "100", "100", "", "integer", true},
		{"max_connections", "200", "100", "", "integer", false},
		{"autovacuum_vacuum_scale_factor", "0.2", "0.2", "", "real", true},
		{"autovacuum_vacuum_cost_delay", "2ms", "2", "ms", "real", true},
		{"checkpoint_completion_target", "0.90", "0.9", "", "real", true},
		{"fsync", "on", "on", "", "bool", true},
		{"fsync", "true", "on", "", "bool", true},
		{"fsync", "YES", "on", "", "bool", true},
		{"jit", "0", "on", "", "bool", false},
		{"hot_standby", "1", "on", "", "bool", true},
		{"wal_level", "replica", "replica", "", "enum", true},
		{"synchronous_commit", "LOCAL", "local", "", "enum", true},
		{"archive_command", "pgherd wal-push %p", "(disabled)", "", "string", false},
		{"application_name", "psql", "psql", "", "string", true},
	} {
		t.Run(tc.param+"="+tc.want, func(t *testing.T) {
			live, want, err := NormalizeSetting(tc.want, tc.setting, tc.unit, tc.vartype)
			if err != nil {
				t.Fatal(err)
			}
			if (live == want) != tc.equal {
				t.Errorf("live %q, want %q: equal = %v, want %v", live, want, live == want, tc.equal)
			}
		})
	}
}

func TestNormalizeSettingInvalid(t *testing.T) {
	for _, tc := range []struct{ want, unit, vartype string }{
		{"128mb", "8kB", "integer"}, // units are case-sensitive
		{"5 minutes", "s", "integer"},
		{"1GB", "", "integer"},
		{"1s", "kB", "integer"},
		{"maybe", "", "bool"},
		{"o", "", "bool"},
		{"lots", "", "real"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if _, _, err := NormalizeSetting(tc.want, "1", tc.unit, tc.vartype); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestRenderPgHBA(t *testing.T) {
	got, err := RenderPgHBA([]HBARule{
		{Type: "local", Database: "all", User: "postgres", Method: "peer"},
		{Type: "local", Database: "all", User: "all"},
		{Type: "hostssl", Database: "replication", User: "replicator", Address: "10.77.0.0/24"},
		{Type: "host", Database: "app,report", User: "app", Address: "fd00::/64", Method: "scram-sha-256"},
		{Type: "hostssl", Database: "all", User: "admin", Address: "all", Method: "cert", Options: []string{"clientcert=verify-full"}},
		{Type: "host", Database: "all", User: "monitor", Address: "samenet", Method: "scram-sha-256"},
		{Type: "host", Database: "all", User: "all", Address: "0.0.0.0/0", Method: "reject"},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "postgres/pg_hba.conf", got)
}

func TestRenderPgHBAInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule HBARule
	}{
		{"type", HBARule{Type: "hosts", Database: "all", User: "all", Address: "10.0.0.0/8"}},
		{"method", HBARule{Type: "host", Database: "all", User: "all", Address: "10.0.0.0/8", Method: "scram"}},
		{"host bits", HBARule{Type: "host", Database: "all", User: "all", Address: "10.0.0.1/8"}},
		{"no address", HBARule{Type: "host", Database: "all", User: "all"}},
		{"local address", HBARule{Type: "local", Database: "all", User: "all", Address: "10.0.0.0/8"}},
		{"user space", HBARule{Type: "local", Database: "all", User: "a b"}},
		{"option", HBARule{Type: "local", Database: "all", User: "all", Options: []string{"x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := RenderPgHBA([]HBARule{tc.rule}); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestPostgresHostResources(t *testing.T) {
	rs := PostgresHostResources(PostgresHost{Major: 15, Version: "15.18-0+deb12u1", Hold: true})
	var addrs []string
	for _, r := range rs {
		addrs = append(addrs, r.Address())
	}
	want := "file./etc/postgresql-common/createcluster.conf unit_mask.postgresql@15-main.service packages.postgres " +
		"directory./etc/postgresql/15/main directory./var/lib/postgresql/15 directory./var/lib/postgresql/15/pgherd"
	if got := strings.Join(addrs, " "); got != want {
		t.Errorf("order = %q\nwant %q", got, want)
	}
	if c := rs[0].(File).Content; !strings.Contains(c, "\ncreate_main_cluster = false\n") {
		t.Errorf("createcluster.conf = %q", c)
	}
	pk := rs[2].(Packages).Packages
	if len(pk) != 2 || pk[0].Name != "postgresql-15" || pk[1].Name != "postgresql-client-15" || pk[1].Version != "15.18-0+deb12u1" || !pk[0].Hold {
		t.Errorf("packages = %+v", pk)
	}
}

// pgServer is a throwaway PostgreSQL 15 server run as the postgres user on
// a Unix socket in its own directory.
type pgServer struct {
	dir, bin string
	port     int
}

func startPostgres(t *testing.T) pgServer {
	t.Helper()
	bin := "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(bin + "/initdb"); err != nil {
		t.Skip("PostgreSQL 15 not installed (apt-get install postgresql-15)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the server as the postgres user")
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		t.Skip("runuser not installed")
	}
	// Not t.TempDir(): its parent is 0700 root, out of postgres' reach.
	dir, err := os.MkdirTemp("", "pgherd-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := pgServer{dir: dir, bin: bin, port: porttest.Free(t)}
	as := func(args ...string) {
		t.Helper()
		out, err := exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if out, err := exec.Command("chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	as(bin+"/initdb", "-D", dir+"/data", "-A", "peer", "--no-sync")
	conf, err := os.OpenFile(dir+"/data/postgresql.conf", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// What the agent's postgresql.conf does: include the file pgherd owns.
	conf.WriteString("include_if_exists = '" + dir + "/pgherd.conf'\n")
	conf.Close()
	as(bin+"/pg_ctl", "-D", dir+"/data", "-l", dir+"/log", "-w", "-o",
		"-k "+dir+" -p "+strconv.Itoa(s.port)+" -c listen_addresses=''", "start")
	t.Cleanup(func() {
		exec.Command("runuser", "-u", "postgres", "--", bin+"/pg_ctl", "-D", dir+"/data", "-m", "immediate", "stop").Run()
	})
	return s
}

// TestPostgresParametersLive converges parameters of a real server: values
// given in other units than pg_settings' match, a reload-only change is
// applied live, a postmaster one is reported as needing a restart, and the
// next plan is empty while the restart is pending.
func TestPostgresParametersLive(t *testing.T) {
	s := startPostgres(t)
	h := localHost{}
	p := PostgresParameters{ConfFile: s.dir + "/pgherd.conf", Port: s.port, SocketDir: s.dir, Parameters: map[string]string{
		// initdb's values, in other units than pg_settings'.
		"shared_buffers":               "131072kB",
		"work_mem":                     "4MB",
		"checkpoint_timeout":           "300s",
		"max_wal_size":                 "1024MB",
		"effective_cache_size":         "4GB",
		"log_min_duration_statement":   "-1",
		"synchronous_commit":           "ON",
		"checkpoint_completion_target": "0.90",
		"fsync":                        "true",
	}}
	ch, steps, err := p.Diff(probe(t, h, p))
	if err != nil || ch.Action != "create" || len(ch.Attrs) != 0 || ch.Impact != "" {
		t.Fatalf("defaults in other units: %+v, %v; want only the file created", ch, err)
	}
	run(t, h, steps...)
	if ch, steps, err := p.Diff(probe(t, h, p)); err != nil || !ch.IsNoOp() || len(steps) != 0 {
		t.Fatalf("second plan: %+v, %d steps, %v", ch, len(steps), err)
	}

	p.Parameters["work_mem"] = "64MB"
	p.Parameters["log_min_duration_statement"] = "1s"
	ch, steps, err = p.Diff(probe(t, h, p))
	if err != nil || ch.Impact != "reload" || len(ch.Attrs) != 2 {
		t.Fatalf("reload change: %+v, %v", ch, err)
	}
	run(t, h, steps...)
	if ch, steps, err := p.Diff(probe(t, h, p)); err != nil || !ch.IsNoOp() || len(steps) != 0 {
		t.Fatalf("after reload: %+v, %d steps, %v", ch, len(steps), err)
	}

	p.Parameters["shared_buffers"] = "256MB"
	ch, steps, err = p.Diff(probe(t, h, p))
	if err != nil || ch.Impact != "restart needed" || len(ch.Attrs) != 1 || ch.Attrs[0].Before != "16384 (8kB)" {
		t.Fatalf("restart change: %+v, %v", ch, err)
	}
	run(t, h, steps...)
	ch, steps, err = p.Diff(probe(t, h, p))
	if err != nil || !ch.IsNoOp() || len(steps) != 0 || !strings.Contains(ch.Reason, "restart pending for shared_buffers") {
		t.Fatalf("pending restart: %+v, %d steps, %v", ch, len(steps), err)
	}

	p.Parameters["no_such_parameter"] = "1"
	if _, _, err := p.Diff(probe(t, h, p)); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown parameter: %v, want ErrInvalid", err)
	}
}

// TestRenderPgHBALive has the real server parse the rendered pg_hba.conf
// (pg_hba_file_rules reads the file on disk and reports errors per line).
func TestRenderPgHBALive(t *testing.T) {
	s := startPostgres(t)
	b, err := os.ReadFile(filepath.Join("testdata", "postgres", "pg_hba.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.dir+"/data/pg_hba.conf", b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := PostgresParameters{Port: s.port, SocketDir: s.dir}
	// The test server has no SSL: its complaint about hostssl lines is
	// expected; any other error is a rendering bug.
	out, err := exec.Command("sh", "-c", p.psql("select count(*), count(error) filter (where error not like 'hostssl record cannot match because SSL is disabled%'), string_agg(error, '; ') from pg_hba_file_rules")).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, "7|0|") {
		t.Errorf("pg_hba_file_rules rows|errors|messages = %q, want 7 rows, 0 errors", got)
	}
}
