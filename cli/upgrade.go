package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/spec"
)

// The names a major upgrade gives its objects: the publication on every
// database of the old cluster and the subscription on the same database
// of the new one; the replication slots on the old primary are
// upgradeName_<the database's oid there> (slot names are cluster-wide).
const upgradeName = "pgherd_upgrade"

// errUpgradeRefused marks a preflight refusal: nothing was changed.
var errUpgradeRefused = errors.New("major upgrade refused (nothing was changed)")

func (a *app) upgradeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade a cluster's PostgreSQL",
		Long: `upgrade holds the upgrades that are not a change of the spec: a minor upgrade
or a rolling restart is an apply of the changed spec (docs/runbooks/upgrade.md).`,
	}
	c.AddCommand(a.upgradeMajorCommand())
	return c
}

func (a *app) upgradeMajorCommand() *cobra.Command {
	var f specFlags
	var from, to []string
	var dryRun, rollback, autoApprove bool
	var o upgradeOptions
	c := &cobra.Command{
		Use:   "major --from OLD_SPEC --to NEW_SPEC [flags]",
		Short: "Move a cluster to a new major PostgreSQL version by logical replication (blue/green)",
		Long: `upgrade major moves the databases of a running cluster (the old spec) into
another pgherd cluster at a newer major version (the new spec, applied
beforehand, on other hosts), by logical replication, and switches writes
over to it:

  1. preflight: both clusters have a leader; the new major version is higher;
     the old primary runs with wal_level = logical; the new cluster's
     databases hold no tables of their own (unless a previous run made them);
     the new primary can log in to the old one.
  2. prepare: the roles the new cluster lacks (pg_dumpall --roles-only of
     the old version), the missing databases, then per database a
     publication FOR ALL TABLES and a replication slot on the old primary,
     and on the new one, in one transaction, the schema (pg_dump -s of the
     old version), a subscription, and the database made read-only
     (default_transaction_read_only) until the switch.
  3. catch up: wait until every table is copied and the lag is below
     --max-lag, showing progress.
  4. switch (the downtime): the old databases made read-only and their
     client sessions ended; wait until the new cluster confirmed the old
     primary's last WAL position; the sequences copied; the subscriptions
     disabled and the new databases made writable. Then the subscriptions,
     slots and publications are dropped.

Clients that list both clusters' primary ports in a multi-host connection
string with target_session_attrs=read-write follow the switch by themselves
(docs/runbooks/upgrade.md). The old cluster is left intact, read-only.

Every step is idempotent: a run that was interrupted is continued by running
the command again. --dry-run shows the steps and what is done already and
changes nothing. --rollback makes the old cluster writable again (and the
new one read-only, with its client sessions ended): writes acknowledged by
the new cluster after the switch are not on the old one.

Exit codes: 0 done; 1 error or refused (a refusal changes nothing).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(from) == 0 || len(to) == 0 {
				return errors.New("both --from (the old cluster's spec) and --to (the new cluster's) are required")
			}
			oldM, err := a.load(from, &f)
			if err != nil {
				return err
			}
			newM, err := a.load(to, &f)
			if err != nil {
				return err
			}
			if oldM.Cluster == nil || newM.Cluster == nil {
				return errNoCluster("upgrade major")
			}
			mask := func(s string) string { return newM.Mask(oldM.Mask(s)) }
			out := maskedWriter{a.env.Stdout, mask}
			log := a.logger()
			oldPool, newPool := executors.NewPool(log), executors.NewPool(log)
			defer oldPool.Close()
			defer newPool.Close()
			u := &majorUpgrade{out: out, opts: o,
				old: &pgSide{label: "old", m: oldM, c: oldM.Cluster, connect: poolConnector(oldM, oldPool)},
				new: &pgSide{label: "new", m: newM, c: newM.Cluster, connect: poolConnector(newM, newPool)},
			}
			err = u.run(ctx, dryRun, rollback, func() (bool, error) {
				if autoApprove {
					return true, nil
				}
				return a.confirm()
			})
			if err != nil {
				return errors.New(mask(err.Error()))
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().StringArrayVar(&from, "from", nil, "the old cluster's spec: a file or a directory of *.hcl files (repeatable)")
	c.Flags().StringArrayVar(&to, "to", nil, "the new cluster's spec, applied already (repeatable)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "show the steps and which are done; change nothing")
	c.Flags().BoolVar(&rollback, "rollback", false, "make the old cluster writable again and the new one read-only")
	c.Flags().BoolVar(&autoApprove, "auto-approve", false, "do not ask for confirmation")
	c.Flags().Int64Var(&o.maxLag, "max-lag", 1<<20, "switch once every table is copied and the lag is below this many bytes")
	c.Flags().DurationVar(&o.catchUpTimeout, "timeout", 30*time.Minute, "how long to wait for the copy and the catch-up")
	c.Flags().DurationVar(&o.switchTimeout, "switch-timeout", 30*time.Second,
		"how long the switch may wait for the last writes to arrive; past it the old cluster is made writable again")
	return c
}

// upgradeOptions are the tunables of a major upgrade.
type upgradeOptions struct {
	maxLag         int64
	catchUpTimeout time.Duration
	switchTimeout  time.Duration
}

// pgSide is one of the two clusters of a major upgrade, reached on its
// primary's host as postgres over the local socket (peer authentication),
// with that cluster's own binaries.
type pgSide struct {
	label   string
	m       *spec.Model
	c       *spec.Cluster
	connect hostConnector

	leader string // the primary's host name
	addr   string // its address
	host   statusHost
}

// findLeader asks the cluster's agents for the leader and checks that it
// runs as primary with a valid lease.
func (s *pgSide) findLeader(ctx context.Context) error {
	cs, errs := findCluster(ctx, s.c, s.connect)
	if cs == nil {
		return fmt.Errorf("%w: no agent of the %s cluster %q answered: %w", errUpgradeRefused, s.label, s.c.Name, errors.Join(errs...))
	}
	if cs.Leader == "" {
		return fmt.Errorf("%w: the %s cluster %q has no leader (see pgherd status)", errUpgradeRefused, s.label, s.c.Name)
	}
	h, err := s.connect(ctx, cs.Leader)
	if err != nil {
		return err
	}
	var st memberStatus
	if err := newAPIClient(h, s.c, cs.Leader, s.c.HA.APIPort).getJSON(ctx, "/patroni", &st); err != nil {
		return err
	}
	if st.Role != "primary" || !st.Pgherd.IsLeader || !st.Pgherd.LeaseValid {
		return fmt.Errorf("%w: the %s cluster's leader %s is not a healthy primary now (role %s, lease valid %v): see pgherd status",
			errUpgradeRefused, s.label, cs.Leader, st.Role, st.Pgherd.LeaseValid)
	}
	i := slices.IndexFunc(s.m.Hosts, func(h spec.Host) bool { return h.Name == cs.Leader })
	if i < 0 {
		return fmt.Errorf("the %s cluster's leader %q is not a host of its spec", s.label, cs.Leader)
	}
	s.leader, s.addr, s.host = cs.Leader, s.m.Hosts[i].Address, h
	return nil
}

// tool is the command line of one of the cluster's PostgreSQL programs,
// run as postgres on the socket of its primary. The session may write
// whatever the database's default says.
func (s *pgSide) tool(name string, args ...string) string {
	words := []string{"runuser", "-u", "postgres", "--", "env", "PGOPTIONS=-c default_transaction_read_only=off",
		fmt.Sprintf("/usr/lib/postgresql/%d/bin/%s", s.c.Postgres.Version, name),
		"-h", "/var/run/postgresql", "-p", strconv.Itoa(s.c.Postgres.Port)}
	return executors.Join(append(words, args...)...)
}

// run runs a command on the primary's host and returns its standard
// output.
func (s *pgSide) run(ctx context.Context, cmd string, stdin io.Reader) (string, error) {
	res, err := s.host.Run(ctx, cmd, stdin)
	if err != nil {
		return "", fmt.Errorf("%s primary %s: %w", s.label, s.leader, err)
	}
	if err := res.Err(s.leader, cmd); err != nil {
		return "", err
	}
	return string(res.Stdout), nil
}

// sql runs script with psql on database db, stopping at the first error,
// and returns its rows, their fields split at tabs. A script may move to
// another database with psqlConnect.
func (s *pgSide) sql(ctx context.Context, db, script string) ([][]string, error) {
	out, err := s.run(ctx, s.tool("psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-d", db, "-f", "-"),
		strings.NewReader(script))
	if err != nil {
		return nil, err
	}
	var rows [][]string
	for _, line := range strings.Split(out, "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows, nil
}

// psqlConnect is the psql meta-command that moves a script to database
// db. Names that psql would need quoted otherwise are refused by
// checkDatabaseName.
func psqlConnect(db string) string { return `\connect '` + db + "'\n" }

func checkDatabaseName(db string) error {
	if strings.ContainsAny(db, "'\\\n\r\t\x00") {
		return fmt.Errorf("%w: database %q: its name holds a quote, a backslash or a control character, which this command does not handle", errUpgradeRefused, db)
	}
	return nil
}

// sqlIdent quotes an SQL identifier.
func sqlIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// sqlString quotes an SQL string literal (standard_conforming_strings on).
func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// upgradeDB is one database of the old cluster and what a run found of it.
type upgradeDB struct {
	name, owner string
	oid         string // on the old cluster
	// On the old cluster: read-only, with a publication and a slot.
	oldReadOnly, published, slotted bool
	// On the new one: present, read-only, its user tables, and the
	// subscription ("" none, "enabled" or "disabled").
	newExists, newReadOnly bool
	newTables              int
	sub                    string
}

func (d upgradeDB) slot() string { return upgradeName + "_" + d.oid }

// majorUpgrade is one run of pgherd upgrade major.
type majorUpgrade struct {
	out      io.Writer
	opts     upgradeOptions
	old, new *pgSide
	dbs      []upgradeDB
}

func (u *majorUpgrade) printf(format string, args ...any) { fmt.Fprintf(u.out, format, args...) }

func (u *majorUpgrade) run(ctx context.Context, dryRun, rollback bool, confirm func() (bool, error)) error {
	if err := u.preflight(ctx, rollback); err != nil {
		return err
	}
	if rollback {
		u.printf("\nRollback: the old cluster's databases are made writable, the new cluster's read-only (their client sessions ended).\n")
		if dryRun {
			return nil
		}
		if ok, err := confirm(); err != nil || !ok {
			return errors.Join(err, errors.New("rollback cancelled"))
		}
		return u.rollback(ctx)
	}
	done := u.printPlan()
	if done || dryRun {
		return nil
	}
	if ok, err := confirm(); err != nil || !ok {
		return errors.Join(err, errors.New("major upgrade cancelled"))
	}
	start := time.Now()
	if err := u.prepare(ctx); err != nil {
		return err
	}
	if err := u.catchUp(ctx); err != nil {
		return err
	}
	downtime, err := u.switchOver(ctx)
	if err != nil {
		return err
	}
	if err := u.cleanUp(ctx); err != nil {
		return fmt.Errorf("the switch is done (writes go to the new cluster), but cleaning up failed; run the command again to finish: %w", err)
	}
	u.printf("\nMajor upgrade complete: cluster %q (PostgreSQL %d) takes the writes of %q (PostgreSQL %d), left read-only.\n",
		u.new.c.Name, u.new.c.Postgres.Version, u.old.c.Name, u.old.c.Postgres.Version)
	u.printf("Downtime (old read-only to new writable): %s; total %s.\n",
		downtime.Round(time.Millisecond), time.Since(start).Round(time.Second))
	return nil
}

// preflight checks both clusters and reads the state of every database.
// It changes nothing. For a rollback, the new cluster may hold anything.
func (u *majorUpgrade) preflight(ctx context.Context, rollback bool) error {
	if u.new.c.Postgres.Version <= u.old.c.Postgres.Version {
		return fmt.Errorf("%w: the new cluster's version %d is not above the old one's %d", errUpgradeRefused,
			u.new.c.Postgres.Version, u.old.c.Postgres.Version)
	}
	for _, s := range []*pgSide{u.old, u.new} {
		if err := s.findLeader(ctx); err != nil {
			return err
		}
	}
	if u.old.addr == u.new.addr && u.old.c.Postgres.Port == u.new.c.Postgres.Port {
		return fmt.Errorf("%w: both specs name the same server (%s:%d)", errUpgradeRefused, u.old.addr, u.old.c.Postgres.Port)
	}
	u.printf("Old cluster %q: PostgreSQL %d, primary %s (%s:%d)\n", u.old.c.Name, u.old.c.Postgres.Version, u.old.leader, u.old.addr, u.old.c.Postgres.Port)
	u.printf("New cluster %q: PostgreSQL %d, primary %s (%s:%d)\n", u.new.c.Name, u.new.c.Postgres.Version, u.new.leader, u.new.addr, u.new.c.Postgres.Port)

	rows, err := u.old.sql(ctx, "postgres", "SHOW wal_level;\n"+dbListQuery+
		"SELECT 'slot', slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgherd\\_upgrade\\_%';\n")
	if err != nil {
		return err
	}
	if len(rows) == 0 || rows[0][0] != "logical" {
		level := "?"
		if len(rows) > 0 {
			level = rows[0][0]
		}
		return fmt.Errorf("%w: the old primary runs with wal_level = %s: set parameters = { wal_level = \"logical\" } in the old cluster's spec and apply it (a rolling restart, docs/runbooks/upgrade.md)",
			errUpgradeRefused, level)
	}
	slots := map[string]bool{}
	for _, r := range rows[1:] {
		switch r[0] {
		case "db":
			if err := checkDatabaseName(r[2]); err != nil {
				return err
			}
			u.dbs = append(u.dbs, upgradeDB{oid: r[1], name: r[2], owner: r[3], oldReadOnly: r[4] == "t"})
		case "slot":
			slots[r[1]] = true
		}
	}
	var script strings.Builder
	for i := range u.dbs {
		u.dbs[i].slotted = slots[u.dbs[i].slot()]
		script.WriteString(psqlConnect(u.dbs[i].name))
		fmt.Fprintf(&script, "SELECT 'pub', %s, count(*) FROM pg_publication WHERE pubname = %s;\n", sqlString(u.dbs[i].name), sqlString(upgradeName))
	}
	if rows, err = u.old.sql(ctx, "postgres", script.String()); err != nil {
		return err
	}
	for _, r := range rows {
		if i := u.db(r[1]); i >= 0 {
			u.dbs[i].published = r[2] != "0"
		}
	}

	rows, err = u.new.sql(ctx, "postgres", dbListQuery+
		"SELECT 'sub', d.datname, CASE WHEN s.subenabled THEN 'enabled' ELSE 'disabled' END FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE s.subname = "+sqlString(upgradeName)+";\n")
	if err != nil {
		return err
	}
	script.Reset()
	for _, r := range rows {
		switch r[0] {
		case "db": // db, oid, name, owner, read-only
			if i := u.db(r[2]); i >= 0 {
				u.dbs[i].newExists, u.dbs[i].newReadOnly = true, r[4] == "t"
				script.WriteString(psqlConnect(r[2]))
				fmt.Fprintf(&script, "SELECT 'tables', %s, count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "+
					"WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%';\n", sqlString(r[2]))
			}
		case "sub": // sub, name, enabled or disabled
			if i := u.db(r[1]); i >= 0 {
				u.dbs[i].sub = r[2]
			}
		}
	}
	if script.Len() > 0 {
		if rows, err = u.new.sql(ctx, "postgres", script.String()); err != nil {
			return err
		}
		for _, r := range rows {
			if i := u.db(r[1]); i >= 0 {
				u.dbs[i].newTables, _ = strconv.Atoi(r[2])
			}
		}
	}
	if rollback || u.switched() {
		return nil
	}
	for _, d := range u.dbs {
		if d.sub == "" && d.newTables > 0 {
			return fmt.Errorf("%w: database %q of the new cluster holds %d tables that no previous run of this command made: the new cluster must start empty (drop them, or the database)",
				errUpgradeRefused, d.name, d.newTables)
		}
	}
	return u.checkLogin(ctx)
}

// dbListQuery lists the connectable databases as rows
// db, oid, name, owner, read-only (t/f).
const dbListQuery = `SELECT 'db', d.oid, d.datname, pg_get_userbyid(d.datdba),
  EXISTS (SELECT 1 FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0
    AND 'default_transaction_read_only=on' = ANY (s.setconfig))
  FROM pg_database d WHERE d.datallowconn AND NOT d.datistemplate ORDER BY d.datname;
`

func (u *majorUpgrade) db(name string) int {
	return slices.IndexFunc(u.dbs, func(d upgradeDB) bool { return d.name == name })
}

// switched reports whether a previous run finished the switch: the old
// databases read-only, the new ones writable, no subscription left.
func (u *majorUpgrade) switched() bool {
	for _, d := range u.dbs {
		if !d.oldReadOnly || !d.newExists || d.newReadOnly || d.sub != "" {
			return false
		}
	}
	return len(u.dbs) > 0
}

// conninfo is how the new primary reaches database db on the old one, as
// the old cluster's superuser.
func (u *majorUpgrade) conninfo(db string) string {
	kv := func(k, v string) string { return k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'" }
	return strings.Join([]string{kv("host", u.old.addr), kv("port", strconv.Itoa(u.old.c.Postgres.Port)), kv("dbname", db),
		kv("user", "postgres"), kv("password", u.old.c.Postgres.SuperuserPassword), kv("application_name", upgradeName)}, " ")
}

// checkLogin tries, from the new primary's host, the connection its
// subscriptions will make to the old primary.
func (u *majorUpgrade) checkLogin(ctx context.Context) error {
	for _, d := range u.dbs {
		if d.sub != "" {
			continue
		}
		// The conninfo, password included, goes on standard input,
		// never on a command line.
		cmd := executors.Join("runuser", "-u", "postgres", "--", "sh", "-c", `IFS= read -r c && exec "$0" -X -A -t -c 'SELECT 1' "$c"`,
			fmt.Sprintf("/usr/lib/postgresql/%d/bin/psql", u.new.c.Postgres.Version))
		if _, err := u.new.run(ctx, cmd, strings.NewReader(u.conninfo(d.name)+"\n")); err != nil {
			return fmt.Errorf("%w: the new primary %s cannot log in to database %q of the old primary %s:%d as postgres: "+
				"the old cluster's spec needs an hba rule such as hba { type = \"host\" database = \"all\" user = \"postgres\" address = \"%s/32\" } (one per host of the new cluster): %w",
				errUpgradeRefused, u.new.leader, d.name, u.old.addr, u.old.c.Postgres.Port, u.new.addr, err)
		}
	}
	return nil
}

// printPlan shows the steps and what is done already. It returns true
// when everything is.
func (u *majorUpgrade) printPlan() bool {
	if u.switched() {
		u.printf("\nThe switch is done already: the old cluster is read-only and the new one takes the writes. Nothing to do (--rollback makes the old cluster writable again).\n")
		return true
	}
	mark := func(done bool) string {
		if done {
			return "done"
		}
		return "to do"
	}
	u.printf("\nSteps:\n")
	u.printf("  1. roles the new cluster lacks, copied from the old one (pg_dumpall --roles-only, PostgreSQL %d)\n", u.old.c.Postgres.Version)
	for _, d := range u.dbs {
		u.printf("  2. database %s:\n", d.name)
		u.printf("     - create it on the new cluster (owner %s): %s\n", d.owner, mark(d.newExists))
		u.printf("     - publication %s FOR ALL TABLES on the old primary: %s\n", upgradeName, mark(d.published))
		u.printf("     - replication slot %s on the old primary: %s\n", d.slot(), mark(d.slotted))
		u.printf("     - schema (pg_dump -s, PostgreSQL %d), subscription %s, read-only until the switch: %s\n", u.old.c.Postgres.Version, upgradeName, mark(d.sub != ""))
	}
	u.printf("  3. wait until every table is copied and the lag is below %d bytes\n", u.opts.maxLag)
	u.printf("  4. switch: old databases read-only and their sessions ended, wait for the last WAL position, copy the sequences, new databases writable\n")
	u.printf("  5. drop the subscriptions, the slots and the publications\n")
	return false
}

// prepare copies the roles and the schema and starts the replication.
func (u *majorUpgrade) prepare(ctx context.Context) error {
	u.printf("\nPreparing the new cluster.\n")
	if err := u.copyRoles(ctx); err != nil {
		return err
	}
	for i := range u.dbs {
		d := &u.dbs[i]
		if !d.newExists {
			if _, err := u.new.sql(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s;\n", sqlIdent(d.name), sqlIdent(d.owner))); err != nil {
				return fmt.Errorf("creating database %s on the new cluster: %w", d.name, err)
			}
			d.newExists = true
			u.printf("  %s: created on the new cluster\n", d.name)
		}
		if !d.published {
			if _, err := u.old.sql(ctx, d.name, fmt.Sprintf("CREATE PUBLICATION %s FOR ALL TABLES;\n", sqlIdent(upgradeName))); err != nil {
				return fmt.Errorf("creating the publication on database %s of the old cluster: %w", d.name, err)
			}
			d.published = true
			u.printf("  %s: publication %s created on the old primary\n", d.name, upgradeName)
		}
		if d.sub != "" {
			continue
		}
		if !d.slotted {
			if _, err := u.old.sql(ctx, d.name, fmt.Sprintf("SELECT pg_create_logical_replication_slot(%s, 'pgoutput');\n", sqlString(d.slot()))); err != nil {
				return fmt.Errorf("creating the replication slot of database %s on the old primary: %w", d.name, err)
			}
			d.slotted = true
			u.printf("  %s: replication slot %s created on the old primary\n", d.name, d.slot())
		}
		schema, err := u.old.run(ctx, u.old.tool("pg_dump", "--schema-only", "-d", d.name), nil)
		if err != nil {
			return fmt.Errorf("dumping the schema of database %s: %w", d.name, err)
		}
		// One transaction: the schema, the subscription and the
		// read-only default all land, or none does.
		script := schema + fmt.Sprintf("\nCREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (create_slot = false, slot_name = %s);\n"+
			"ALTER DATABASE %s SET default_transaction_read_only = on;\n",
			sqlIdent(upgradeName), sqlString(u.conninfo(d.name)), sqlIdent(upgradeName), sqlString(d.slot()), sqlIdent(d.name))
		if _, err := u.new.run(ctx, u.new.tool("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", d.name, "-f", "-"),
			strings.NewReader(script)); err != nil {
			return fmt.Errorf("loading the schema of database %s into the new cluster: %w", d.name, err)
		}
		d.sub, d.newReadOnly = "enabled", true
		u.printf("  %s: schema loaded, subscription %s started, read-only until the switch\n", d.name, upgradeName)
	}
	return nil
}

// copyRoles creates on the new cluster the roles it lacks, from the old
// cluster's pg_dumpall --roles-only: the roles it has already (the spec's,
// the superuser) are left as they are.
func (u *majorUpgrade) copyRoles(ctx context.Context) error {
	dump, err := u.old.run(ctx, u.old.tool("pg_dumpall", "--roles-only"), nil)
	if err != nil {
		return fmt.Errorf("dumping the roles of the old cluster: %w", err)
	}
	rows, err := u.new.sql(ctx, "postgres", "SELECT quote_ident(rolname) FROM pg_roles;\n")
	if err != nil {
		return err
	}
	script, created := filterRoles(dump, rows)
	if len(created) == 0 {
		return nil
	}
	// Without ON_ERROR_STOP: a membership granted already is a notice
	// on some versions and an error on others.
	res, err := u.new.host.Run(ctx, u.new.tool("psql", "-X", "-q", "-d", "postgres", "-f", "-"), strings.NewReader(script))
	if err != nil {
		return fmt.Errorf("creating roles on the new cluster: %w", err)
	}
	if err := res.Err(u.new.leader, "psql (roles)"); err != nil {
		return fmt.Errorf("creating roles on the new cluster: %w", err)
	}
	u.printf("  roles created on the new cluster: %s\n", strings.Join(created, ", "))
	return nil
}

// filterRoles drops from a pg_dumpall --roles-only script the statements
// that create or alter the roles listed in existing (quoted as
// quote_ident does), and returns the script and the roles it creates.
func filterRoles(dump string, existing [][]string) (string, []string) {
	have := map[string]bool{}
	for _, r := range existing {
		have[r[0]] = true
	}
	var b strings.Builder
	var created []string
	for _, line := range strings.SplitAfter(dump, "\n") {
		if rest, ok := strings.CutPrefix(line, "CREATE ROLE "); ok {
			name := strings.TrimSuffix(strings.TrimSpace(rest), ";")
			if have[name] {
				continue
			}
			created = append(created, name)
		}
		if rest, ok := strings.CutPrefix(line, "ALTER ROLE "); ok {
			if name, _, _ := strings.Cut(rest, " "); have[name] {
				continue
			}
		}
		b.WriteString(line)
	}
	return b.String(), created
}

// catchUp waits until every subscribed table is copied and the lag is
// below maxLag, printing the progress.
func (u *majorUpgrade) catchUp(ctx context.Context) error {
	u.printf("\nWaiting for the copy and the catch-up (lag below %d bytes).\n", u.opts.maxLag)
	ctx, cancel := context.WithTimeout(ctx, u.opts.catchUpTimeout)
	defer cancel()
	var last string
	lastAt := time.Time{}
	for {
		notReady, total, lag, err := u.progress(ctx)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("  tables copied %d/%d, lag %d bytes", total-notReady, total, lag)
		if line != last || time.Since(lastAt) > 10*time.Second {
			u.printf("%s\n", line)
			last, lastAt = line, time.Now()
		}
		if notReady == 0 && lag < u.opts.maxLag {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the copy and the catch-up: %w (%s; run the command again to go on waiting)", ctx.Err(), strings.TrimSpace(line))
		case <-time.After(time.Second):
		}
	}
}

// progress is the number of tables not copied yet, of all, and the
// largest lag of the enabled subscriptions' slots in bytes.
func (u *majorUpgrade) progress(ctx context.Context) (notReady, total int, lag int64, err error) {
	var script strings.Builder
	var slots []string
	for _, d := range u.dbs {
		if d.sub != "enabled" {
			continue
		}
		slots = append(slots, sqlString(d.slot()))
		script.WriteString(psqlConnect(d.name))
		fmt.Fprintf(&script, "SELECT count(*) FILTER (WHERE r.srsubstate <> 'r'), count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = %s;\n", sqlString(upgradeName))
	}
	if len(slots) == 0 {
		return 0, 0, 0, nil
	}
	rows, err := u.new.sql(ctx, "postgres", script.String())
	if err != nil {
		return 0, 0, 0, err
	}
	for _, r := range rows {
		n, _ := strconv.Atoi(r[0])
		t, _ := strconv.Atoi(r[1])
		notReady, total = notReady+n, total+t
	}
	rows, err = u.old.sql(ctx, "postgres", fmt.Sprintf("SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)::bigint, count(*) FROM pg_replication_slots WHERE slot_name IN (%s);\n", strings.Join(slots, ", ")))
	if err != nil {
		return 0, 0, 0, err
	}
	if len(rows) != 1 || rows[0][1] != strconv.Itoa(len(slots)) {
		return 0, 0, 0, fmt.Errorf("the old primary %s lacks some of the replication slots %s: was it failed over? Run the command with --rollback, drop the subscriptions on the new cluster and start again",
			u.old.leader, strings.Join(slots, ", "))
	}
	lag, _ = strconv.ParseInt(rows[0][0], 10, 64)
	return notReady, total, lag, nil
}

// switchOver makes the old cluster read-only, waits until the new one
// has every write, copies the sequences and makes the new cluster
// writable. It returns the downtime: from the old cluster read-only to
// the new one writable. When the last writes do not arrive within
// switchTimeout, the old cluster is made writable again.
func (u *majorUpgrade) switchOver(ctx context.Context) (time.Duration, error) {
	u.printf("\nSwitching.\n")
	start := time.Now()
	var script strings.Builder
	for _, d := range u.dbs {
		fmt.Fprintf(&script, "ALTER DATABASE %s SET default_transaction_read_only = on;\n", sqlIdent(d.name))
	}
	// Sessions opened before the new default are ended; pg_terminate_backend
	// waits (up to 5 s) until each is gone, so that a write it acknowledged
	// is below the position read next.
	script.WriteString("SELECT 'ended', count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid();\n")
	script.WriteString("SELECT 'lsn', pg_current_wal_lsn();\n")
	for _, d := range u.dbs {
		if d.sub == "enabled" {
			script.WriteString(psqlConnect(d.name))
			fmt.Fprintf(&script, "SELECT 'seq', %s, format('%%I.%%I', schemaname, sequencename), last_value FROM pg_sequences WHERE last_value IS NOT NULL;\n", sqlString(d.name))
		}
	}
	rows, err := u.old.sql(ctx, "postgres", script.String())
	if err != nil {
		return 0, u.undoReadOnly(ctx, fmt.Errorf("making the old cluster read-only: %w", err))
	}
	var lsn, ended string
	seqs := map[string][][2]string{}
	for _, r := range rows {
		switch r[0] {
		case "lsn":
			lsn = r[1]
		case "ended":
			ended = r[1]
		case "seq":
			seqs[r[1]] = append(seqs[r[1]], [2]string{r[2], r[3]})
		}
	}
	u.printf("  old cluster read-only, %s client sessions ended, last WAL position %s\n", ended, lsn)

	if err := u.waitConfirmed(ctx, lsn); err != nil {
		return 0, u.undoReadOnly(ctx, err)
	}
	u.printf("  the new cluster confirmed %s (%s after read-only)\n", lsn, time.Since(start).Round(time.Millisecond))

	script.Reset()
	n := 0
	for _, d := range u.dbs {
		if d.sub != "enabled" {
			continue
		}
		script.WriteString(psqlConnect(d.name))
		for _, s := range seqs[d.name] {
			fmt.Fprintf(&script, "SELECT setval(%s::regclass, %s, true);\n", sqlString(s[0]), s[1])
			n++
		}
		fmt.Fprintf(&script, "ALTER SUBSCRIPTION %s DISABLE;\n", sqlIdent(upgradeName))
	}
	script.WriteString(psqlConnect("postgres"))
	for _, d := range u.dbs {
		fmt.Fprintf(&script, "ALTER DATABASE %s RESET default_transaction_read_only;\n", sqlIdent(d.name))
	}
	if _, err := u.new.sql(ctx, "postgres", script.String()); err != nil {
		return 0, fmt.Errorf("copying the sequences and making the new cluster writable (run the command again to finish, or --rollback): %w", err)
	}
	downtime := time.Since(start)
	for i := range u.dbs {
		u.dbs[i].oldReadOnly, u.dbs[i].newReadOnly = true, false
		if u.dbs[i].sub == "enabled" {
			u.dbs[i].sub = "disabled"
		}
	}
	u.printf("  %d sequences copied, subscriptions disabled, new cluster writable: downtime %s\n", n, downtime.Round(time.Millisecond))
	return downtime, nil
}

// waitConfirmed waits until the slot of every enabled subscription has
// confirmed lsn.
func (u *majorUpgrade) waitConfirmed(ctx context.Context, lsn string) error {
	var slots []string
	for _, d := range u.dbs {
		if d.sub == "enabled" {
			slots = append(slots, sqlString(d.slot()))
		}
	}
	if len(slots) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, u.opts.switchTimeout)
	defer cancel()
	q := fmt.Sprintf("SELECT count(*) FILTER (WHERE confirmed_flush_lsn >= %s::pg_lsn) FROM pg_replication_slots WHERE slot_name IN (%s);\n", sqlString(lsn), strings.Join(slots, ", "))
	for {
		rows, err := u.old.sql(ctx, "postgres", q)
		if err == nil && len(rows) == 1 && rows[0][0] == strconv.Itoa(len(slots)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the new cluster did not confirm the old primary's last position %s within %s: %w", lsn, u.opts.switchTimeout, errors.Join(ctx.Err(), err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// undoReadOnly makes the old cluster writable again after a failed
// switch, and returns cause with what it did.
func (u *majorUpgrade) undoReadOnly(ctx context.Context, cause error) error {
	if err := u.setOldWritable(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("%w; making the old cluster writable again failed too (run the command with --rollback): %w", cause, err)
	}
	return fmt.Errorf("%w; the old cluster is writable again, nothing switched", cause)
}

func (u *majorUpgrade) setOldWritable(ctx context.Context) error {
	var script strings.Builder
	for _, d := range u.dbs {
		fmt.Fprintf(&script, "ALTER DATABASE %s RESET default_transaction_read_only;\n", sqlIdent(d.name))
	}
	_, err := u.old.sql(ctx, "postgres", script.String())
	return err
}

// cleanUp drops the subscriptions on the new cluster, then the slots and
// the publications on the old one.
func (u *majorUpgrade) cleanUp(ctx context.Context) error {
	var script strings.Builder
	for _, d := range u.dbs {
		if d.sub == "" {
			continue
		}
		// Detached from its slot first: DROP SUBSCRIPTION would
		// otherwise drop the slot itself, and fail while its walsender
		// is still ending.
		script.WriteString(psqlConnect(d.name))
		fmt.Fprintf(&script, "ALTER SUBSCRIPTION %[1]s DISABLE;\nALTER SUBSCRIPTION %[1]s SET (slot_name = NONE);\nDROP SUBSCRIPTION %[1]s;\n", sqlIdent(upgradeName))
	}
	if script.Len() > 0 {
		if _, err := u.new.sql(ctx, "postgres", script.String()); err != nil {
			return fmt.Errorf("dropping the subscriptions: %w", err)
		}
	}
	for i := range u.dbs {
		u.dbs[i].sub = ""
	}
	script.Reset()
	for _, d := range u.dbs {
		script.WriteString(psqlConnect(d.name))
		fmt.Fprintf(&script, "DROP PUBLICATION IF EXISTS %s;\n", sqlIdent(upgradeName))
		fmt.Fprintf(&script, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s;\n", sqlString(d.slot()))
	}
	// A slot is busy while its walsender ends: retry for a while.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := u.old.sql(ctx, "postgres", script.String())
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dropping the slots and publications on the old primary: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	u.printf("  subscriptions, replication slots and publications dropped\n")
	return nil
}

// rollback makes the old cluster writable and the new one read-only,
// ending the new one's client sessions so that clients move back.
func (u *majorUpgrade) rollback(ctx context.Context) error {
	var script strings.Builder
	for _, d := range u.dbs {
		if d.newExists {
			fmt.Fprintf(&script, "ALTER DATABASE %s SET default_transaction_read_only = on;\n", sqlIdent(d.name))
		}
	}
	script.WriteString("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid();\n")
	if _, err := u.new.sql(ctx, "postgres", script.String()); err != nil {
		return fmt.Errorf("making the new cluster read-only: %w", err)
	}
	if err := u.setOldWritable(ctx); err != nil {
		return fmt.Errorf("making the old cluster writable: %w", err)
	}
	u.printf("Rolled back: the old cluster %q is writable, the new cluster %q read-only.\n", u.old.c.Name, u.new.c.Name)
	for _, d := range u.dbs {
		if d.sub != "" {
			u.printf("The subscriptions on the new cluster still exist (database %s, ...): a run without --rollback goes on from there.\n", d.name)
			break
		}
	}
	return nil
}
