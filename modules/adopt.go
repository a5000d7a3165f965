package modules

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// PostgresAdopt is the migration of a running PostgreSQL, installed by hand
// as Debian's <major>/main cluster, into the pgherd cluster, without
// stopping it. Its address is "postgres_adopt.<major>/main".
//
// The probe reads what the pre-flight checks need (Preflight, a pure
// function of AdoptFacts and AdoptWant); a refusal is a Diff error, so the
// plan cannot be applied and nothing changes. The steps move the cluster's
// configuration into the data directory, where the agent keeps it and
// where the replicas' clones find it, and leave in /etc/postgresql a file
// that includes it, so that the running postmaster (started with
// config_file in /etc) reads the same settings on every reload; pg_hba.conf
// and pg_ident.conf there become links into the data directory. Then
// Debian's cluster is retired: start.conf says disabled (pg_ctlcluster and
// postgresql.service never start it again) and its unit is masked (the
// UnitMask of PostgresHostResources), while the running postmaster keeps
// running until the agent restarts it. The /etc file is written last: it
// marks the migration as done, and a second plan is empty.
type PostgresAdopt struct {
	Want AdoptWant
	// Cluster is the pgherd cluster's name, for the plan.
	Cluster string
	// Replicas are the hosts cloned from the adopted primary, and
	// Proxies the HAProxy (and keepalived) hosts, for the plan's steps.
	Replicas, Proxies []string
	// IncludeLine includes the agent-managed parameters; it ends the data
	// directory's postgresql.conf.
	IncludeLine string
}

// AdoptWant is what the spec asks of the adopted server.
type AdoptWant struct {
	Major   int
	DataDir string
	Port    int
	// Address is the host's address, which the replicas connect to.
	Address string
	// HBA are the rules pgherd writes to pg_hba.conf: each rule of the
	// running server must be among them.
	HBA []HBARule
	// Packages are the packages the spec installs on every PostgreSQL
	// host (extensions from outside postgresql-<major> must be there).
	Packages []string
	// MinFreeBytes is the free space the data directory's file system
	// needs for the WAL kept while the replicas clone (0: max_wal_size
	// plus 1 GiB).
	MinFreeBytes int64
	// LongTransaction is the age from which an open transaction is
	// reported (default 5 minutes).
	LongTransaction time.Duration
}

// AdoptFacts are what the probe saw of the running server.
type AdoptFacts struct {
	// Adopted: the /etc configuration is already pgherd's include.
	Adopted bool
	// Running: a server answered on the spec's port.
	Running  bool
	ConnErr  string
	Settings map[string]string
	// FreeBytes is the space free for the server's data directory (-1:
	// df could not tell); DBBytes the size of all databases.
	FreeBytes, DBBytes int64
	// OldestXact is the age of the oldest open transaction (0: none).
	OldestXact time.Duration
	OldestWho  string
	Prepared   int
	Roles      []string
	Extensions []AdoptExtension
	HBA        []AdoptHBALine
	// AlterSystem are the replication settings postgresql.auto.conf
	// holds (ALTER SYSTEM), by name.
	AlterSystem map[string]string
}

// AdoptExtension is an extension installed in a database, and the Debian
// package that ships it ("" when dpkg does not know).
type AdoptExtension struct{ Database, Name, Package string }

// AdoptHBALine is a rule of the running server's pg_hba.conf, as
// pg_hba_file_rules shows it.
type AdoptHBALine struct {
	Line                                   int
	Type, Database, User, Address, Netmask string
	Method, Options, Error                 string
}

// Finding is one result of the pre-flight checks. A refusal blocks the
// migration; Fix says what to change.
type Finding struct {
	Refuse bool
	// Restart: the migration restarts PostgreSQL once, for this reason.
	Restart bool
	Check   string
	Message string
	Fix     string
}

func (f Finding) String() string {
	s := f.Check + ": " + f.Message
	if f.Fix != "" {
		s += "\n  Fix: " + f.Fix
	}
	return s
}

// adoptSettings are the server settings the checks read.
var adoptSettings = []string{"server_version", "server_version_num", "data_directory", "config_file", "hba_file", "ident_file",
	"external_pid_file", "port", "listen_addresses", "wal_level", "max_wal_senders", "max_replication_slots", "hot_standby",
	"wal_log_hints", "data_checksums", "max_wal_size", "in_recovery"}

// replicationSettings are the settings the agent sets for replication
// whose blocking values (alterSystemBlocks) postgresql.auto.conf, read
// after the agent's managed file, would keep.
var replicationSettings = []string{"wal_level", "max_wal_senders", "max_replication_slots", "hot_standby", "wal_log_hints"}

// Address implements Resource.
func (a PostgresAdopt) Address() string {
	return "postgres_adopt." + strconv.Itoa(a.Want.Major) + "/main"
}

func (a PostgresAdopt) etcDir() string {
	return "/etc/postgresql/" + strconv.Itoa(a.Want.Major) + "/main"
}

func (a PostgresAdopt) backupDir() string {
	return "/var/lib/pgherd/adopt/" + strconv.Itoa(a.Want.Major) + "-main"
}

// adoptMarker starts the /etc postgresql.conf once the migration is done.
const adoptMarker = "# pgherd: adopted"

func (a PostgresAdopt) psql(sql string) string {
	return executors.Join("runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q", "-F", "|",
		"-h", "/var/run/postgresql", "-p", strconv.Itoa(a.Want.Port), "-d", "postgres", "-c", sql)
}

// Probe implements Resource. It only reads.
func (a PostgresAdopt) Probe() string {
	if a.Want.Major <= 0 || !strings.HasPrefix(a.Want.DataDir, "/") {
		return invalidProbe
	}
	etc := executors.Quote(a.etcDir())
	var names []string
	for _, n := range adoptSettings {
		names = append(names, "'"+n+"'")
	}
	var repl []string
	for _, n := range replicationSettings {
		repl = append(repl, "'"+n+"'")
	}
	settings := "SELECT 'setting.'||name||'='||setting FROM pg_settings WHERE name IN (" + strings.Join(names, ",") + ")" +
		" UNION ALL SELECT 'alter_system.'||name||'='||setting FROM pg_file_settings WHERE sourcefile LIKE '%/postgresql.auto.conf' AND error IS NULL AND name IN (" + strings.Join(repl, ",") + ")" +
		" UNION ALL SELECT 'setting.in_recovery='||pg_is_in_recovery()" +
		" UNION ALL SELECT 'db_bytes='||sum(pg_database_size(oid)) FROM pg_database" +
		" UNION ALL SELECT 'oldest_xact='||coalesce(extract(epoch FROM now()-min(xact_start))::bigint, 0) FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'" +
		" UNION ALL (SELECT 'oldest_who='||coalesce(usename,'')||'@'||coalesce(client_addr::text,'local') FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY xact_start LIMIT 1)" +
		" UNION ALL SELECT 'prepared='||count(*) FROM pg_prepared_xacts" +
		" UNION ALL SELECT 'role='||rolname FROM pg_roles WHERE rolname !~ '^pg_'" +
		" UNION ALL SELECT 'hba='||line_number||'|'||type||'|'||coalesce(array_to_string(database, ','),'')||'|'||coalesce(array_to_string(user_name, ','),'')||'|'||coalesce(address,'')||'|'||coalesce(netmask,'')||'|'||coalesce(auth_method,'')||'|'||coalesce(array_to_string(options, ' '),'')||'|'||coalesce(error,'') FROM pg_hba_file_rules"
	return "if head -n1 " + etc + "/postgresql.conf 2>/dev/null | grep -q " + executors.Quote("^"+adoptMarker) + "; then echo adopted=yes; exit 0; fi\n" +
		"echo adopted=no\n" +
		"out=$(" + a.psql(settings) + " 2>&1) || { echo running=no; printf 'conn_err=%s\\n' \"$(echo \"$out\" | head -n1)\"; exit 0; }\n" +
		"echo running=yes\nprintf '%s\\n' \"$out\"\n" +
		// The server's own data directory: the spec's may not exist (a
		// spec of another version), which the checks report.
		"dd=$(printf '%s\\n' \"$out\" | sed -n 's/^setting\\.data_directory=//p')\n" +
		"printf 'free_bytes=%s\\n' \"$(df -B1 --output=avail \"$dd\" 2>/dev/null | tail -n1 | tr -d ' ')\"\n" +
		"for db in $(" + a.psql("SELECT datname FROM pg_database WHERE datallowconn") + "); do\n" +
		"  for e in $(runuser -u postgres -- psql -X -A -t -q -h /var/run/postgresql -p " + strconv.Itoa(a.Want.Port) + " -d \"$db\" -c \"SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'\"); do\n" +
		"    pkg=$(dpkg -S \"/usr/share/postgresql/" + strconv.Itoa(a.Want.Major) + "/extension/$e.control\" 2>/dev/null | cut -d: -f1)\n" +
		"    echo \"ext=$db|$e|$pkg\"\n  done\ndone\n"
}

// ParseAdoptFacts reads the probe's output.
func ParseAdoptFacts(out []byte) (AdoptFacts, error) {
	f := AdoptFacts{Settings: map[string]string{}, AlterSystem: map[string]string{}}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		var err error
		switch {
		case k == "adopted":
			f.Adopted = v == "yes"
		case k == "running":
			f.Running = v == "yes"
		case k == "conn_err":
			f.ConnErr = v
		case strings.HasPrefix(k, "setting."):
			f.Settings[strings.TrimPrefix(k, "setting.")] = v
		case strings.HasPrefix(k, "alter_system."):
			f.AlterSystem[strings.TrimPrefix(k, "alter_system.")] = v
		case k == "free_bytes" && v == "":
			f.FreeBytes = -1
		case k == "free_bytes":
			f.FreeBytes, err = strconv.ParseInt(v, 10, 64)
		case k == "db_bytes":
			f.DBBytes, err = strconv.ParseInt(v, 10, 64)
		case k == "oldest_xact":
			var s int64
			s, err = strconv.ParseInt(v, 10, 64)
			f.OldestXact = time.Duration(s) * time.Second
		case k == "oldest_who":
			f.OldestWho = v
		case k == "prepared":
			f.Prepared, err = strconv.Atoi(v)
		case k == "role":
			f.Roles = append(f.Roles, v)
		case k == "ext":
			p := strings.SplitN(v, "|", 3)
			if len(p) != 3 {
				return f, fmt.Errorf("extension line %q: %w", v, ErrProbe)
			}
			f.Extensions = append(f.Extensions, AdoptExtension{Database: p[0], Name: p[1], Package: p[2]})
		case k == "hba":
			p := strings.SplitN(v, "|", 9)
			if len(p) != 9 {
				return f, fmt.Errorf("pg_hba line %q: %w", v, ErrProbe)
			}
			n, _ := strconv.Atoi(p[0])
			f.HBA = append(f.HBA, AdoptHBALine{Line: n, Type: p[1], Database: p[2], User: p[3], Address: p[4], Netmask: p[5],
				Method: p[6], Options: p[7], Error: p[8]})
		}
		if err != nil {
			return f, fmt.Errorf("%s=%q: %w", k, v, ErrProbe)
		}
	}
	return f, nil
}

// Preflight checks the running server against the spec. It is pure: the
// findings, refusals first in check order, then restarts and notes.
func Preflight(f AdoptFacts, w AdoptWant) []Finding {
	var out []Finding
	refuse := func(check, msg, fix string) {
		out = append(out, Finding{Refuse: true, Check: check, Message: msg, Fix: fix})
	}
	restart := func(check, msg string) { out = append(out, Finding{Restart: true, Check: check, Message: msg}) }
	note := func(check, msg string) { out = append(out, Finding{Check: check, Message: msg}) }
	major := strconv.Itoa(w.Major)
	if !f.Running {
		refuse("server", fmt.Sprintf("no PostgreSQL answers on port %d over /var/run/postgresql (%s)", w.Port, f.ConnErr),
			fmt.Sprintf("start Debian's cluster (systemctl start postgresql@%s-main), or set port to the port it listens on", major))
		return out
	}
	s := f.Settings
	num, _ := strconv.Atoi(s["server_version_num"])
	serverMajor := num / 10000
	if serverMajor != w.Major {
		refuse("version", fmt.Sprintf("the server is PostgreSQL %s, the spec says version = %d", s["server_version"], w.Major),
			fmt.Sprintf("set version = %d in the postgres block (the replicas run the same major version), or upgrade the server first", serverMajor))
	}
	if s["in_recovery"] == "true" {
		refuse("role", "the server is a standby (in recovery): only a primary can be adopted", "adopt the primary it replicates from")
	}
	// The spec's default data directory follows its version: with the
	// version wrong, only the version is reported.
	if serverMajor == w.Major && s["data_directory"] != w.DataDir {
		refuse("data directory", fmt.Sprintf("the server's data directory is %s, the spec's data_dir is %s", s["data_directory"], w.DataDir),
			fmt.Sprintf("set data_dir = %q in the postgres block", s["data_directory"]))
	}
	if want := fmt.Sprintf("/etc/postgresql/%d/main/postgresql.conf", serverMajor); s["config_file"] != want {
		refuse("configuration", fmt.Sprintf("the server reads %s; pgherd adopts Debian's %d/main cluster, configured in %s", s["config_file"], serverMajor, want),
			"create the cluster with pg_createcluster (Debian's layout), or migrate by logical replication (docs/runbooks/migration.md)")
	}
	if p, _ := strconv.Atoi(s["port"]); p != w.Port {
		refuse("port", fmt.Sprintf("the server listens on port %s, the spec's port is %d", s["port"], w.Port), fmt.Sprintf("set port = %s in the postgres block", s["port"]))
	}

	// Replication: what needs a restart, and what a restart fixes.
	var restarts []string
	if s["wal_level"] == "minimal" {
		restarts = append(restarts, "wal_level=minimal")
	}
	if s["max_wal_senders"] == "0" {
		restarts = append(restarts, "max_wal_senders=0")
	}
	if s["max_replication_slots"] == "0" {
		restarts = append(restarts, "max_replication_slots=0")
	}
	for _, r := range restarts {
		restart("replication", r)
	}
	restarting := len(restarts) > 0
	if s["data_checksums"] != "on" && s["wal_log_hints"] != "on" {
		if restarting {
			restart("rewind", "wal_log_hints=off with data checksums off")
		} else {
			refuse("rewind", "data checksums are off and wal_log_hints is off: after a failover, pg_rewind could not bring this server back as a replica",
				"ALTER SYSTEM SET wal_log_hints = on, and restart PostgreSQL once at a time of your choosing; then plan again")
		}
	}
	if !listensOn(s["listen_addresses"], w.Address) {
		if restarting {
			restart("listen", "listen_addresses="+s["listen_addresses"])
		} else {
			refuse("listen", fmt.Sprintf("listen_addresses = %q does not include %s: the replicas could not connect", s["listen_addresses"], w.Address),
				"ALTER SYSTEM SET listen_addresses = '*', and restart PostgreSQL once at a time of your choosing; then plan again")
		}
	}
	// ALTER SYSTEM's file is read after the agent's managed file and
	// wins: a blocking value there would outlast pgherd's settings and
	// the restart.
	for _, n := range replicationSettings {
		v, ok := f.AlterSystem[n]
		if ok && alterSystemBlocks(n, v, s["data_checksums"] == "on") {
			refuse("ALTER SYSTEM", fmt.Sprintf("%s = %s is set by ALTER SYSTEM (postgresql.auto.conf), which PostgreSQL reads after pgherd's settings: pgherd could not change it, and replication needs it changed", n, v),
				fmt.Sprintf("ALTER SYSTEM RESET %s and SELECT pg_reload_conf() (no restart needed for that), then plan again", n))
		}
	}
	if s["hot_standby"] == "off" {
		note("hot_standby", "hot_standby is off here; pgherd turns it on for the replicas (it matters only on a standby)")
	}

	// Disk: the WAL the replication slots keep while the replicas clone.
	need := w.MinFreeBytes
	if need == 0 {
		mb, _ := strconv.ParseInt(s["max_wal_size"], 10, 64)
		need = mb<<20 + 1<<30
	}
	switch {
	case f.FreeBytes < 0:
		refuse("disk", fmt.Sprintf("df could not tell the free space for %s, where the WAL is kept while the replicas clone", s["data_directory"]),
			"check that df -B1 works on that directory, then plan again")
	case f.FreeBytes < need:
		refuse("disk", fmt.Sprintf("%s free for %s, %s needed for the WAL kept while the replicas clone", bytesText(f.FreeBytes), s["data_directory"], bytesText(need)),
			"free space on that file system (or grow it), then plan again")
	}

	// pg_hba.conf: each rule the server has must survive the migration.
	for _, l := range f.HBA {
		if l.Error != "" {
			refuse("pg_hba", fmt.Sprintf("pg_hba.conf line %d is invalid: %s", l.Line, l.Error), "fix or remove that line, then reload and plan again")
			continue
		}
		if !slices.ContainsFunc(w.HBA, func(r HBARule) bool { return sameHBA(l, r) }) {
			refuse("pg_hba", fmt.Sprintf("pg_hba.conf line %d (%s) is not in the spec: pgherd writes pg_hba.conf, and the clients that line admits would be refused", l.Line, l.text()),
				"add to the postgres block:"+l.hclBlock())
		}
	}

	// Extensions whose files come from another package than PostgreSQL's.
	pkg := "postgresql-" + major
	for _, e := range f.Extensions {
		if e.Package != "" && e.Package != pkg && !slices.Contains(w.Packages, e.Package) {
			refuse("extensions", fmt.Sprintf("extension %s (database %s) comes from the package %s, which the replicas would lack", e.Name, e.Database, e.Package),
				fmt.Sprintf("add package %q { roles = [...] } (or hosts) for every PostgreSQL host", e.Package))
		}
	}
	if len(f.Extensions) > 0 {
		var names []string
		for _, e := range f.Extensions {
			names = append(names, e.Database+"."+e.Name)
		}
		note("extensions", "kept: "+strings.Join(names, ", "))
	}
	if len(f.Roles) > 0 {
		note("roles", "kept unchanged unless the spec declares them: "+strings.Join(f.Roles, ", "))
	}
	long := w.LongTransaction
	if long == 0 {
		long = 5 * time.Minute
	}
	if f.OldestXact >= long {
		note("transactions", fmt.Sprintf("a transaction of %s has been open for %s: the replicas accept reads only once it ends", f.OldestWho, f.OldestXact))
	}
	if f.Prepared > 0 {
		note("transactions", fmt.Sprintf("%d prepared transactions: they are kept, and replicated", f.Prepared))
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		rank := func(f Finding) int {
			switch {
			case f.Refuse:
				return 0
			case f.Restart:
				return 1
			}
			return 2
		}
		return rank(a) - rank(b)
	})
	return out
}

// alterSystemBlocks reports whether value, set by ALTER SYSTEM for the
// replication setting name, keeps the cluster from replicating (or, for
// wal_log_hints without data checksums, from rewinding).
func alterSystemBlocks(name, value string, checksums bool) bool {
	off := slices.Contains([]string{"off", "false", "no", "0"}, strings.ToLower(value))
	switch name {
	case "wal_level":
		return value == "minimal"
	case "max_wal_senders", "max_replication_slots":
		return value == "0"
	case "hot_standby":
		return off
	case "wal_log_hints":
		return off && !checksums
	}
	return false
}

// listensOn reports whether listen_addresses covers addr.
func listensOn(listen, addr string) bool {
	for _, a := range strings.Split(listen, ",") {
		a = strings.TrimSpace(a)
		if a == "*" || a == "0.0.0.0" && !strings.Contains(addr, ":") || a == "::" || a == addr {
			return true
		}
	}
	return false
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// cidr is the line's address as pgherd writes it.
func (l AdoptHBALine) cidr() string {
	if l.Type == "local" {
		return ""
	}
	if l.Address == "all" {
		return "all"
	}
	ip, err := netip.ParseAddr(l.Address)
	if err != nil {
		return l.Address // a host name: never equal to a CIDR
	}
	bits := ip.BitLen()
	if l.Netmask != "" {
		if m, err := netip.ParseAddr(l.Netmask); err == nil {
			bits = 0
			for _, b := range m.AsSlice() {
				for ; b != 0; b <<= 1 {
					bits++
				}
			}
		}
	}
	return netip.PrefixFrom(ip, bits).Masked().String()
}

func (l AdoptHBALine) text() string {
	return strings.Join(slices.DeleteFunc([]string{l.Type, l.Database, l.User, l.cidr(), l.Method, l.Options},
		func(s string) bool { return s == "" }), " ")
}

func (l AdoptHBALine) hclBlock() string {
	s := fmt.Sprintf("\n    hba {\n      type     = %q\n      database = %q\n      user     = %q\n", l.Type, l.Database, l.User)
	if a := l.cidr(); a != "" {
		s += fmt.Sprintf("      address  = %q\n", a)
	}
	return s + fmt.Sprintf("      method   = %q\n    }", l.Method)
}

// sameHBA reports whether the rule pgherd writes admits what line l does.
func sameHBA(l AdoptHBALine, r HBARule) bool {
	return l.Type == r.Type && l.Database == r.Database && l.User == r.User && l.cidr() == r.Address &&
		l.Method == orDefault(r.Method, "scram-sha-256") && l.Options == strings.Join(r.Options, " ")
}

// Diff implements Resource.
func (a PostgresAdopt) Diff(fact Fact) (planner.Change, []Step, error) {
	addr := a.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if a.Want.Major <= 0 || !strings.HasPrefix(a.Want.DataDir, "/") || a.IncludeLine == "" {
		return ch, nil, fmt.Errorf("%s: major version, absolute data directory and include line needed: %w", addr, ErrInvalid)
	}
	if fact.ExitCode != 0 {
		return ch, nil, probeFailed(addr, fact)
	}
	f, err := ParseAdoptFacts(fact.Stdout)
	if err != nil {
		return ch, nil, fmt.Errorf("%s: %w", addr, err)
	}
	if f.Adopted {
		return ch, nil, nil
	}
	findings := Preflight(f, a.Want)
	var refusals []string
	for _, fd := range findings {
		if fd.Refuse {
			refusals = append(refusals, fd.String())
		}
	}
	if len(refusals) > 0 {
		return ch, nil, fmt.Errorf("the migration is %w; nothing was changed:\n%s", ErrRefused, strings.Join(refusals, "\n"))
	}
	ch.Action = planner.Create
	ch.Reason = fmt.Sprintf("migrate the running PostgreSQL %s (%s, %s) into cluster %s",
		f.Settings["server_version"], a.Want.DataDir, bytesText(f.DBBytes), a.Cluster)
	ch.Impact = "reload only"
	var restarts []string
	for _, fd := range findings {
		if fd.Restart {
			restarts = append(restarts, fd.Message)
		}
	}
	if len(restarts) > 0 {
		ch.Impact = "restart needed because " + strings.Join(restarts, ", ") + " (one fast restart, by the agent)"
	}
	n := 0
	stepAttr := func(what, impact string) {
		n++
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: fmt.Sprintf("step %d", n), After: what + " [" + impact + "]"})
	}
	stepAttr("pre-flight checks passed: version, data directory, replication settings, disk, pg_hba, extensions", "no client impact")
	stepAttr("configuration moved into "+a.Want.DataDir+"; "+a.etcDir()+" includes it; copy kept in "+a.backupDir(), "reload only")
	stepAttr("Debian's postgresql@"+strconv.Itoa(a.Want.Major)+"-main retired (start.conf disabled, unit masked); the running postmaster keeps running", "no client impact")
	stepAttr("etcd, then the pgherd agent adopts the running postmaster as leader; pgherd's pg_hba.conf, parameters and replication role", "reload only")
	if len(restarts) > 0 {
		stepAttr("the agent restarts PostgreSQL once with pgherd's settings (replicas cannot stream before) and supervises it from then on", "restart needed because "+strings.Join(restarts, ", "))
	}
	if len(a.Replicas) > 0 {
		stepAttr("replicas "+strings.Join(a.Replicas, ", ")+" cloned from this host and streaming", "no client impact")
	}
	if len(a.Proxies) > 0 {
		stepAttr("HAProxy (and keepalived) on "+strings.Join(a.Proxies, ", ")+": clients may move to them when they choose", "no client impact")
	}
	for _, fd := range findings {
		if !fd.Refuse && !fd.Restart {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "note " + fd.Check, After: fd.Message})
		}
	}
	return ch, []Step{{Desc: "move the configuration into the data directory and retire Debian's cluster (reload)", Cmd: a.script(f)}}, nil
}

// script is the migration's one step; every part is idempotent, and the
// /etc postgresql.conf, written last, marks it done.
func (a PostgresAdopt) script(f AdoptFacts) string {
	q := executors.Quote
	e, d, b := a.etcDir(), a.Want.DataDir, a.backupDir()
	var wrapper strings.Builder
	wrapper.WriteString(adoptMarker + " " + a.Cluster + ". The configuration lives in the data directory.\n" +
		"# Kept here only for the postmaster started by Debian, which reads this file until its next restart.\n")
	for _, n := range []string{"data_directory", "hba_file", "ident_file", "external_pid_file"} {
		if v := f.Settings[n]; v != "" {
			fmt.Fprintf(&wrapper, "%s = '%s'\n", n, strings.ReplaceAll(v, "'", "''"))
		}
	}
	fmt.Fprintf(&wrapper, "include '%s/postgresql.conf'\n", strings.ReplaceAll(d, "'", "''"))
	return "set -e\numask 077\n" +
		"E=" + q(e) + "; D=" + q(d) + "; B=" + q(b) + "\n" +
		"if [ ! -d \"$B\" ]; then mkdir -p \"$(dirname \"$B\")\"; rm -rf \"$B.tmp\"; cp -a \"$E\" \"$B.tmp\"; mv \"$B.tmp\" \"$B\"; fi\n" +
		"sed -E 's/^[[:space:]]*(data_directory|hba_file|ident_file|external_pid_file)[[:space:]]*=/#pgherd adopt: &/' \"$B/postgresql.conf\" > \"$D/postgresql.conf.pgherd\"\n" +
		"printf '\\n# pgherd: the agent-managed parameters come last and win.\\n%s\\n' " + q(a.IncludeLine) + " >> \"$D/postgresql.conf.pgherd\"\n" +
		"[ -f \"$D/pgherd.conf\" ] || printf '# Managed by the pgherd agent: edits here are overwritten.\\n' > \"$D/pgherd.conf\"\n" +
		"[ -e \"$D/pg_hba.conf\" ] || cp \"$B/pg_hba.conf\" \"$D/pg_hba.conf\"\n" +
		"[ -e \"$D/pg_ident.conf\" ] || cp \"$B/pg_ident.conf\" \"$D/pg_ident.conf\"\n" +
		"if [ -d \"$B/conf.d\" ] && [ ! -e \"$D/conf.d\" ]; then cp -a \"$B/conf.d\" \"$D/conf.d\"; fi\n" +
		"chown -R postgres:postgres \"$D/postgresql.conf.pgherd\" \"$D/pgherd.conf\" \"$D/pg_hba.conf\" \"$D/pg_ident.conf\"\n" +
		"[ ! -e \"$D/conf.d\" ] || chown -R postgres:postgres \"$D/conf.d\"\n" +
		"mv \"$D/postgresql.conf.pgherd\" \"$D/postgresql.conf\"\n" +
		"ln -sfn \"$D/pg_hba.conf\" \"$E/pg_hba.conf.pgherd\" && mv -T \"$E/pg_hba.conf.pgherd\" \"$E/pg_hba.conf\"\n" +
		"ln -sfn \"$D/pg_ident.conf\" \"$E/pg_ident.conf.pgherd\" && mv -T \"$E/pg_ident.conf.pgherd\" \"$E/pg_ident.conf\"\n" +
		"echo disabled > \"$E/start.conf\"\n" +
		"printf '%s' " + q(wrapper.String()) + " > \"$E/postgresql.conf.pgherd\"\n" +
		"chown postgres:postgres \"$E/postgresql.conf.pgherd\"; chmod 0644 \"$E/postgresql.conf.pgherd\"\n" +
		"mv \"$E/postgresql.conf.pgherd\" \"$E/postgresql.conf\"\n" +
		a.psql("SELECT pg_reload_conf()") + " >/dev/null\n" +
		"errs=$(" + a.psql("SELECT sourcefile||':'||sourceline||': '||error FROM pg_file_settings WHERE error IS NOT NULL") + ")\n" +
		"if [ -n \"$errs\" ]; then echo \"the server reports configuration errors after the move: $errs\" >&2; exit 1; fi\n"
}
