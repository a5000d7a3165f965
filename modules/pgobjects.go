package modules

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pgherd/pgherd/agent/pg"
	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// PostgresObjects is the roles and databases the spec asks for, as seen on
// one database host. The agent leading the cluster creates and updates them
// (never drops); this resource detects drift and asks the agent to apply
// them again (a reload of pgherd-agent: on the leader it re-applies roles
// and databases, elsewhere it does nothing). Catalogs are the same on every
// member, so the drift shows on whichever member is probed: the resource is
// placed on every database host, and only a running primary reports it (a
// replica and a stopped server report nothing, the first host says when
// the cluster does not run yet).
type PostgresObjects struct {
	Cluster   string
	Port      int
	SocketDir string
	Roles     []pg.Role
	Databases []pg.Database
	// First marks the host that speaks for the cluster while no member
	// runs.
	First bool
}

// Address implements Resource.
func (o PostgresObjects) Address() string { return "postgres_objects." + o.Cluster }

func sqlLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func sqlList(names []string) string {
	if len(names) == 0 {
		return "NULL"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = sqlLiteral(n)
	}
	return strings.Join(q, ",")
}

// Probe implements Resource: "#down", "#replica", or tab-separated rows
// (role, member, db, ext) read as postgres over the local socket.
func (o PostgresObjects) Probe() string {
	psql := "runuser -u postgres -- psql -XAtq -F '\t' -h " + executors.Quote(o.SocketDir) + " -p " + strconv.Itoa(o.Port)
	var roles, dbs []string
	for _, r := range o.Roles {
		roles = append(roles, r.Name)
	}
	for _, d := range o.Databases {
		dbs = append(dbs, d.Name)
	}
	q := func(db, sql string) string {
		return psql + " -d " + executors.Quote(db) + " -c " + executors.Quote(sql)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "r=$(%s 2>/dev/null) || { echo '#down'; exit 0; }; ", q("postgres", "select pg_is_in_recovery()"))
	b.WriteString(`[ "$r" = t ] && { echo '#replica'; exit 0; }; `)
	// The roles, memberships and databases are shown all or not at all: a
	// server that stops between two queries would otherwise look as if it
	// lacked what the failed ones read, and the plan would create it.
	b.WriteString("o=$({ " + q("postgres", "select 'role', rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolconnlimit, coalesce(rolpassword, '') from pg_authid where rolname in ("+sqlList(roles)+")") + " && ")
	b.WriteString(q("postgres", "select 'member', m.rolname, r.rolname from pg_auth_members am join pg_roles r on r.oid = am.roleid join pg_roles m on m.oid = am.member where m.rolname in ("+sqlList(roles)+")") + " && ")
	b.WriteString(q("postgres", "select 'db', datname, pg_get_userbyid(datdba) from pg_database where datname in ("+sqlList(dbs)+")") + "; } 2>/dev/null) || { echo '#down'; exit 0; }; ")
	b.WriteString(`printf '%s\n' "$o"; `)
	for _, d := range o.Databases {
		if len(d.Extensions) > 0 {
			b.WriteString(q(d.Name, "select 'ext', current_database(), extname from pg_extension") + " 2>/dev/null; ")
		}
	}
	b.WriteString("true")
	return b.String()
}

type liveRole struct {
	login, super, createdb, createrole, replication bool
	connlimit                                       int
	password                                        string
}

// Diff implements Resource.
func (o PostgresObjects) Diff(f Fact) (planner.Change, []Step, error) {
	ch := planner.Change{Resource: o.Address(), Action: planner.NoOp}
	out := strings.TrimSpace(string(f.Stdout))
	switch out {
	case "#replica":
		return ch, nil, nil
	case "#down":
		if !o.First || len(o.Roles)+len(o.Databases) == 0 {
			return ch, nil, nil
		}
		ch.Action, ch.Reason = planner.Create, "created by the leading agent once the cluster runs"
		for _, r := range o.Roles {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "role " + r.Name, After: "present"})
		}
		for _, d := range o.Databases {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "database " + d.Name, After: "owner " + d.Owner})
		}
		return ch, nil, nil
	}
	roles := map[string]liveRole{}
	members := map[string][]string{}
	dbs := map[string]string{}
	exts := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(f.Stdout))
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		switch {
		case fs[0] == "role" && len(fs) == 9:
			n, _ := strconv.Atoi(fs[7])
			roles[fs[1]] = liveRole{login: fs[2] == "t", super: fs[3] == "t", createdb: fs[4] == "t", createrole: fs[5] == "t",
				replication: fs[6] == "t", connlimit: n, password: fs[8]}
		case fs[0] == "member" && len(fs) == 3:
			members[fs[1]] = append(members[fs[1]], fs[2])
		case fs[0] == "db" && len(fs) == 3:
			dbs[fs[1]] = fs[2]
		case fs[0] == "ext" && len(fs) == 3:
			exts[fs[1]] = append(exts[fs[1]], fs[2])
		}
	}
	var reasons []string
	attr := func(name, before, after string, sensitive bool) {
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: name, Before: before, After: after, Sensitive: sensitive})
	}
	for _, r := range o.Roles {
		live, ok := roles[r.Name]
		if !ok {
			attr("role "+r.Name, "", "present", false)
			reasons = append(reasons, "role "+r.Name+" missing")
			continue
		}
		want := liveRole{login: r.Login, super: r.Superuser, createdb: r.CreateDB, createrole: r.CreateRole,
			replication: r.Replication, connlimit: r.ConnectionLimit}
		have := live
		have.password = ""
		if have != want {
			attr("role "+r.Name+" attributes", roleAttrs(have), roleAttrs(want), false)
			reasons = append(reasons, "role "+r.Name+" attributes differ")
		}
		if r.Password != "" && !pg.SCRAMMatches(live.password, r.Password) {
			attr("role "+r.Name+" password", "(sensitive)", "(sensitive)", true)
			reasons = append(reasons, "role "+r.Name+" password differs")
		}
		for _, g := range r.MemberOf {
			if !slices.Contains(members[r.Name], g) {
				attr("role "+r.Name+" member of "+g, "no", "yes", false)
				reasons = append(reasons, "role "+r.Name+" not in "+g)
			}
		}
	}
	for _, d := range o.Databases {
		owner, ok := dbs[d.Name]
		switch {
		case !ok:
			attr("database "+d.Name, "", "owner "+d.Owner, false)
			reasons = append(reasons, "database "+d.Name+" missing")
			continue
		case owner != d.Owner:
			attr("database "+d.Name+" owner", owner, d.Owner, false)
			reasons = append(reasons, "database "+d.Name+" owner differs")
		}
		for _, e := range d.Extensions {
			if !slices.Contains(exts[d.Name], e) {
				attr("extension "+d.Name+"."+e, "", "present", false)
				reasons = append(reasons, "extension "+e+" missing in "+d.Name)
			}
		}
	}
	if len(reasons) == 0 {
		return ch, nil, nil
	}
	ch.Action, ch.Reason = planner.Update, strings.Join(reasons, "; ")
	return ch, []Step{{Desc: "ask the agent to apply the roles and databases again (reload)",
		Cmd: reloadAgentCmd}}, nil
}

func roleAttrs(r liveRole) string {
	var a []string
	flag := func(on bool, s string) {
		if on {
			a = append(a, s)
		}
	}
	flag(r.login, "login")
	flag(r.super, "superuser")
	flag(r.createdb, "createdb")
	flag(r.createrole, "createrole")
	flag(r.replication, "replication")
	a = append(a, fmt.Sprintf("connection_limit=%d", r.connlimit))
	return strings.Join(a, " ")
}
