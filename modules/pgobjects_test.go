package modules

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/agent/pg"
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
