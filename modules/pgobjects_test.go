package modules

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/agent/backup/backuptest"
	"github.com/pgherd/pgherd/agent/pg"
	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// TestPostgresObjectsLive reads a real server's catalog: missing roles,
// databases and extensions are drift; once created as the spec says
// (SCRAM password included), the diff is empty; a changed password or
// attribute is drift again, and the password never shows.
func TestPostgresObjectsLive(t *testing.T) {
	s := startPostgres(t)
	h := localHost{}
	o := PostgresObjects{Cluster: "c", Port: s.port, SocketDir: s.dir,
		Roles: []pg.Role{{Name: "app", Password: "s3cret-pw", Login: true, ConnectionLimit: -1, MemberOf: []string{"readers"}},
			{Name: "readers", ConnectionLimit: -1}},
		Databases: []pg.Database{{Name: "appdb", Owner: "app", Extensions: []string{"pgcrypto"}}}}
	diff := func() planner.Change {
		t.Helper()
		res, err := h.Run(context.Background(), o.Probe(), nil)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("probe: %v %s", err, res.Stderr)
		}
		ch, _, err := o.Diff(Fact{Stdout: res.Stdout})
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	sql := func(db, q string) {
		t.Helper()
		out, err := exec.Command("runuser", "-u", "postgres", "--", s.bin+"/psql", "-XAtq", "-h", s.dir, "-p", strconv.Itoa(s.port), "-d", db, "-c", q).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v %s", q, err, out)
		}
	}
	ch := diff()
	if ch.Action != planner.Update || !strings.Contains(ch.Reason, "role app missing") || !strings.Contains(ch.Reason, "database appdb missing") {
		t.Fatalf("empty server: %+v", ch)
	}
	sql("postgres", "CREATE ROLE readers; CREATE ROLE app LOGIN PASSWORD 's3cret-pw' IN ROLE readers")
	sql("postgres", "CREATE DATABASE appdb OWNER app")
	sql("appdb", "CREATE EXTENSION pgcrypto")
	if ch := diff(); !ch.IsNoOp() {
		t.Fatalf("after creating everything: %+v", ch)
	}
	sql("postgres", "ALTER ROLE app PASSWORD 'other' CREATEDB")
	ch = diff()
	if !strings.Contains(ch.Reason, "role app password differs") || !strings.Contains(ch.Reason, "role app attributes differ") {
		t.Fatalf("changed role: %+v", ch)
	}
	for _, a := range ch.Attrs {
		if strings.Contains(a.Before+a.After, "s3cret") || strings.Contains(a.Before+a.After, "other") {
			t.Fatalf("a password shows in %+v", a)
		}
	}
}

// TestPostgresObjectsProbeAllOrNothing: a server that stops between the
// probe's queries (here a psql that answers the recovery check and the
// roles, then loses the connection, as against a server shutting down)
// is seen as down, not as a server without the roles' memberships and the
// databases, which the plan would then create. The race cannot be had on
// purpose from a real server; psql is replaced on PATH.
func TestPostgresObjectsProbeAllOrNothing(t *testing.T) {
	// psql runs as postgres: its directory must be reachable.
	dir := backuptest.NewPGDir(t).Mkdir(t, "bin")
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	o := PostgresObjects{Cluster: "c", Port: 5432, SocketDir: "/var/run/postgresql", First: true,
		Roles:     []pg.Role{{Name: "app", Login: true, ConnectionLimit: -1}},
		Databases: []pg.Database{{Name: "appdb", Owner: "app"}}}
	probe := func(lost string) string {
		t.Helper()
		fake := `#!/bin/sh
case "$*" in
*pg_is_in_recovery*) echo f ;;
*pg_authid*) printf 'role\tapp\tt\tf\tf\tf\tf\t-1\t\n' ;;
*` + lost + `*) echo 'psql: error: server closed the connection unexpectedly' >&2; exit 2 ;;
esac
`
		if err := os.WriteFile(filepath.Join(dir, "psql"), []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
		res, err := localHost{}.Run(context.Background(), o.Probe(), nil)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("probe: %v %s", err, res.Stderr)
		}
		return strings.TrimSpace(string(res.Stdout))
	}
	// The fake answers: the role shows.
	if got := probe("no-query-has-this"); !strings.HasPrefix(got, "role\tapp") {
		t.Fatalf("probe with every query answered printed %q, want the role", got)
	}
	got := probe("pg_auth_members")
	if got != "#down" {
		t.Fatalf("probe printed %q, want #down", got)
	}
	res := executors.Result{Stdout: []byte(got)}
	ch, steps, err := o.Diff(Fact{Stdout: res.Stdout})
	if err != nil || len(steps) != 0 || !strings.Contains(ch.Reason, "once the cluster runs") {
		t.Fatalf("diff of a server gone mid-probe: %+v %v %v, want no step until it runs", ch, steps, err)
	}
}
