package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

var (
	clusterName = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	pgIdent     = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	pgParam     = regexp.MustCompile(`^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$`)
	extName     = regexp.MustCompile(`^[a-z0-9_][a-z0-9_-]*$`)
	ifaceName   = regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,15}$`)
)

// reservedParameters are the server parameters pgherd sets itself, with
// what to do instead.
var reservedParameters = map[string]string{
	"port":                      "set port in the postgres block",
	"data_directory":            "set data_dir in the postgres block",
	"config_file":               "pgherd writes the configuration files itself",
	"hba_file":                  "give hba blocks",
	"ident_file":                "pgherd writes the configuration files itself",
	"primary_conninfo":          "the agent sets it on replicas",
	"primary_slot_name":         "the agent sets it on replicas",
	"synchronous_standby_names": "set synchronous_mode in the ha block",
}

// decodeCluster decodes the cluster block. It runs once every host is
// known.
func (l *loader) decodeCluster(blocks []*blockIn) {
	if len(blocks) == 0 {
		return
	}
	for _, b := range blocks[1:] {
		l.errorf(b.blk.DefRange.Ptr(), "Duplicate cluster block",
			"Only one cluster block is allowed; the first is at %s.", posString(blocks[0].blk.DefRange))
	}
	b := blocks[0]
	name := b.blk.Labels[0]
	l.checkLabel(b, clusterName.MatchString(name), "Invalid cluster name",
		fmt.Sprintf("%q is not a valid cluster name: use at most 63 lower-case letters, digits and dashes, starting with a letter and not ending with a dash.", name))
	d := l.decodeBlock(b)
	c := &Cluster{Name: name, Range: b.blk.DefRange}
	ports := &portUses{byHost: map[string][]portUse{}}
	c.Postgres = l.decodePostgres(d, ports)
	c.Etcd = l.decodeEtcd(d, c.Postgres.Hosts, ports)
	c.HA = l.decodeHA(d, c, ports)
	c.Rolling = l.decodeRolling(d)
	c.Members = l.decodeMembers(d, c)
	l.checkSyncCandidates(c)
	c.HAProxy = l.decodeHAProxy(d, c.Postgres.Hosts, ports)
	c.Keepalived = l.decodeKeepalived(d, c.HAProxy)
	c.Backup = l.decodeBackup(d, c)
	c.TLS = l.decodeTLS(d, c)
	l.checkPorts(ports)
	l.m.Cluster = c
}

// one decodes the nested block typ of parent, given at most once. When it
// is absent, ok is false and d holds the schema's defaults, its ranges
// pointing at the parent.
func (l *loader) one(parent *decoded, typ string) (d *decoded, ok bool) {
	schema := parent.schema.Block(typ)
	blocks := parent.children[typ]
	if len(blocks) == 0 {
		if schema.Required {
			l.errorf(parent.b.blk.DefRange.Ptr(), "Missing "+typ+" block",
				"A %s block needs a %s block.", parent.schema.Type, typ)
		}
		d = defaults(schema)
		d.b = parent.b
		return d, false
	}
	for _, b := range blocks[1:] {
		l.errorf(b.blk.DefRange.Ptr(), "Duplicate "+typ+" block",
			"Only one %s block is allowed in a %s block; the first is at %s.", typ, parent.schema.Type, posString(blocks[0].blk.DefRange))
	}
	return l.decodeWith(blocks[0], schema), true
}

func (d *decoded) defRange() hcl.Range { return d.b.blk.DefRange }

// duration returns a duration attribute, 0 when it is invalid (already
// reported).
func (d *decoded) duration(name string) time.Duration {
	v, _ := time.ParseDuration(d.str(name))
	return v
}

// good reports whether every named attribute has a valid value.
func (d *decoded) good(names ...string) bool {
	for _, n := range names {
		if d.bad[n] || !d.has(n) {
			return false
		}
	}
	return true
}

func (l *loader) hostNames() []string {
	names := make([]string, 0, len(l.m.Hosts))
	for _, h := range l.m.Hosts {
		names = append(names, h.Name)
	}
	return names
}

func (l *loader) hostsWithRole(role string) []string {
	var out []string
	for _, h := range l.m.Hosts {
		if slices.Contains(h.Roles, role) {
			out = append(out, h.Name)
		}
	}
	return out
}

// hostsOf resolves the hosts and roles attributes of d to host names, in
// the order the hosts are declared; def gives them when neither is set.
func (l *loader) hostsOf(d *decoded, def func() []string) []string {
	if d.bad["hosts"] || d.bad["roles"] {
		return nil
	}
	if !d.has("hosts") && !d.has("roles") {
		return def()
	}
	want := map[string]bool{}
	reported := false
	for _, h := range d.list("hosts") {
		if _, ok := l.hosts[h]; !ok {
			l.errorf(d.rng("hosts"), "Unknown host",
				"No host named %q is declared.%s", h, suggest(h, l.hostNames()))
			reported = true
			continue
		}
		want[h] = true
	}
	var roles []string
	for r := range l.roles {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range d.list("roles") {
		if !l.roles[r] {
			l.errorf(d.rng("roles"), "Unknown role",
				"No host has the role %q.%s", r, suggest(r, roles))
			reported = true
			continue
		}
		for _, h := range l.hostsWithRole(r) {
			want[h] = true
		}
	}
	var out []string
	for _, h := range l.m.Hosts {
		if want[h.Name] {
			out = append(out, h.Name)
		}
	}
	if len(out) == 0 && !reported {
		attr := "hosts"
		if !d.has("hosts") {
			attr = "roles"
		}
		l.errorf(d.rng(attr), "No hosts", "The %s block names no host: give at least one.", d.schema.Type)
	}
	return out
}

// password reads a password attribute: a value that is not sensitive
// draws a warning.
func (l *loader) password(d *decoded, name, where string) string {
	if !d.has(name) {
		return ""
	}
	v := d.str(name)
	if v == "" {
		l.errorf(d.rng(name), "Empty password", "The %s must not be empty.", where)
		return ""
	}
	if !d.sens[name] {
		l.warnf(d.rng(name), "Password is not sensitive",
			"The %s is not sensitive: it would be shown in plans. Give it from a variable declared with sensitive = true.", where)
	}
	return v
}

func (l *loader) decodePostgres(c *decoded, ports *portUses) Postgres {
	d, _ := l.one(c, "postgres")
	p := Postgres{
		Version:         d.integer("version"),
		PackageVersion:  d.str("package_version"),
		Port:            d.integer("port"),
		DataDir:         d.str("data_dir"),
		ReplicationUser: d.str("replication_user"),
		Parameters:      d.mapping("parameters"),
		Range:           d.defRange(),
	}
	if d.good("version") && (p.Version < minPGVersion || p.Version > maxPGVersion) {
		l.errorf(d.rng("version"), "Unsupported PostgreSQL version",
			"PostgreSQL %d is not supported: pgherd runs the major versions %d to %d.", p.Version, minPGVersion, maxPGVersion)
	}
	if d.good("version", "package_version") && !strings.HasPrefix(p.PackageVersion, strconv.Itoa(p.Version)+".") {
		l.errorf(d.rng("package_version"), "Package version does not match",
			"The package version %q is not a version of PostgreSQL %d: it must start with \"%d.\", such as \"%d.1-1\".", p.PackageVersion, p.Version, p.Version, p.Version)
	}
	if !d.has("data_dir") && !d.bad["data_dir"] {
		p.DataDir = fmt.Sprintf("/var/lib/postgresql/%d/main", p.Version)
	}
	p.Hosts = l.hostsOf(d, func() []string {
		if hs := l.hostsWithRole(RolePostgres); len(hs) > 0 {
			return hs
		}
		return l.hostNames()
	})
	if d.good("adopt") {
		p.Adopt = d.str("adopt")
		if !slices.Contains(p.Hosts, p.Adopt) {
			l.errorf(d.rng("adopt"), "Adopted host is not a PostgreSQL host",
				"adopt names %q, which is not one of the PostgreSQL hosts (%s): the host to adopt must be in hosts.%s",
				p.Adopt, strings.Join(p.Hosts, ", "), suggest(p.Adopt, p.Hosts))
		}
	}
	p.SuperuserPassword = l.password(d, "superuser_password", "superuser_password")
	p.ReplicationPassword = l.password(d, "replication_password", "replication_password")
	if d.good("replication_user") && (!pgIdent.MatchString(p.ReplicationUser) || p.ReplicationUser == "postgres" || strings.HasPrefix(p.ReplicationUser, "pg_")) {
		l.errorf(d.rng("replication_user"), "Invalid role name",
			"%q cannot be the replication user: %s", p.ReplicationUser, roleNameRule)
	}
	var keys []string
	for k := range p.Parameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if hint, ok := reservedParameters[k]; ok {
			l.errorf(d.rng("parameters"), "Parameter set by pgherd",
				"The parameter %q is set by pgherd: %s.", k, hint)
		} else if !pgParam.MatchString(k) {
			l.errorf(d.rng("parameters"), "Invalid parameter name",
				"%q is not a PostgreSQL parameter name: lower-case letters, digits and underscores, with one dot for an extension's parameter (\"auto_explain.log_min_duration\").", k)
		}
	}
	p.HBA = l.decodeHBA(d)
	p.Roles = l.decodeRoles(d, p.ReplicationUser)
	p.Databases = l.decodeDatabases(d, p.Roles)
	ports.add(p.Hosts, p.Port, "postgres.port", d.rng("port"))
	return p
}

const roleNameRule = "a role name holds at most 63 lower-case letters, digits and underscores, starts with a letter or underscore, and is not postgres or a name starting with pg_ (PostgreSQL's own)."

func (l *loader) decodeHBA(pg *decoded) []HBARule {
	schema := pg.schema.Block("hba")
	var rules []HBARule
	for _, b := range pg.children["hba"] {
		d := l.decodeWith(b, schema)
		r := HBARule{
			Type: d.str("type"), Database: d.str("database"), User: d.str("user"),
			Address: d.str("address"), Method: d.str("method"), Range: b.blk.DefRange,
		}
		if d.good("type") {
			switch {
			case r.Type == "local" && d.has("address"):
				l.errorf(d.rng("address"), "Address in a local rule",
					"A rule of type \"local\" matches Unix-socket connections, which have no address: remove address.")
			case r.Type != "local" && !d.has("address") && !d.bad["address"]:
				l.errorf(b.blk.DefRange.Ptr(), "Missing required argument",
					"The argument \"address\" is required in an hba rule of type %q: give a CIDR such as \"10.0.0.0/24\".", r.Type)
			}
		}
		if d.good("type", "method") {
			switch {
			case r.Method == "peer" && r.Type != "local":
				l.errorf(d.rng("method"), "Invalid method for this rule",
					"The method \"peer\" only works for connections of type \"local\".")
			case r.Method == "cert" && r.Type != "hostssl":
				l.errorf(d.rng("method"), "Invalid method for this rule",
					"The method \"cert\" only works for connections of type \"hostssl\".")
			}
		}
		for _, a := range []string{"database", "user"} {
			if d.good(a) && strings.TrimSpace(d.str(a)) == "" {
				l.errorf(d.rng(a), "Empty value", "The %s of an hba rule must not be empty; \"all\" matches every one.", a)
			}
		}
		rules = append(rules, r)
	}
	return rules
}

func (l *loader) decodeRoles(pg *decoded, replicationUser string) []Role {
	schema := pg.schema.Block("role")
	var (
		roles    []Role
		memberOf []*decoded
		declared = map[string]hcl.Range{}
	)
	for _, b := range pg.children["role"] {
		name := b.blk.Labels[0]
		switch {
		case !pgIdent.MatchString(name) || name == "postgres" || strings.HasPrefix(name, "pg_"):
			l.errorf(b.blk.LabelRanges[0].Ptr(), "Invalid role name", "%q is not a valid role name: %s", name, roleNameRule)
		case name == replicationUser:
			l.errorf(b.blk.LabelRanges[0].Ptr(), "Invalid role name",
				"%q is the replication user, which pgherd manages: give it another name, or change replication_user.", name)
		}
		if prev, ok := declared[name]; ok {
			l.errorf(b.blk.DefRange.Ptr(), "Duplicate role", "The role %q was already declared at %s.", name, posString(prev))
			continue
		}
		declared[name] = b.blk.DefRange
		d := l.decodeWith(b, schema)
		r := Role{
			Name:     name,
			Password: l.password(d, "password", fmt.Sprintf("password of role %q", name)),
			Login:    d.boolean("login"), Superuser: d.boolean("superuser"), CreateDB: d.boolean("createdb"),
			CreateRole: d.boolean("createrole"), Replication: d.boolean("replication"),
			ConnectionLimit: d.integer("connection_limit"), MemberOf: d.list("member_of"),
			Range: b.blk.DefRange,
		}
		if d.good("connection_limit") && r.ConnectionLimit < -1 {
			l.errorf(d.rng("connection_limit"), "Invalid connection limit",
				"The connection_limit of role %q must be -1 (no limit) or more.", name)
		}
		roles = append(roles, r)
		memberOf = append(memberOf, d)
	}
	names := make([]string, 0, len(declared))
	for n := range declared {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, r := range roles {
		for _, m := range r.MemberOf {
			switch _, ok := declared[m]; {
			case m == r.Name:
				l.errorf(memberOf[i].rng("member_of"), "Role member of itself", "The role %q cannot be a member of itself.", m)
			case strings.HasPrefix(m, "pg_") || ok:
			default:
				l.errorf(memberOf[i].rng("member_of"), "Undeclared role",
					"The role %q is not declared.%s Declare it with a role block, or name one of PostgreSQL's predefined pg_ roles.", m, suggest(m, names))
			}
		}
	}
	return roles
}

func (l *loader) decodeDatabases(pg *decoded, roles []Role) []Database {
	schema := pg.schema.Block("database")
	owners := []string{"postgres"}
	for _, r := range roles {
		owners = append(owners, r.Name)
	}
	var (
		dbs      []Database
		declared = map[string]hcl.Range{}
	)
	for _, b := range pg.children["database"] {
		name := b.blk.Labels[0]
		if !pgIdent.MatchString(name) || name == "postgres" || name == "template0" || name == "template1" {
			l.errorf(b.blk.LabelRanges[0].Ptr(), "Invalid database name",
				"%q is not a valid database name: it holds at most 63 lower-case letters, digits and underscores, starts with a letter or underscore, and is not postgres, template0 or template1.", name)
		}
		if prev, ok := declared[name]; ok {
			l.errorf(b.blk.DefRange.Ptr(), "Duplicate database", "The database %q was already declared at %s.", name, posString(prev))
			continue
		}
		declared[name] = b.blk.DefRange
		d := l.decodeWith(b, schema)
		db := Database{Name: name, Owner: d.str("owner"), Extensions: d.list("extensions"), Range: b.blk.DefRange}
		if d.good("owner") && !slices.Contains(owners, db.Owner) {
			l.errorf(d.rng("owner"), "Undeclared owner",
				"The owner %q of database %q is not a declared role.%s Declare it with a role block, or use \"postgres\".", db.Owner, name, suggest(db.Owner, owners))
		}
		for _, e := range db.Extensions {
			if !extName.MatchString(e) {
				l.errorf(d.rng("extensions"), "Invalid extension name",
					"%q is not an extension name such as \"pg_stat_statements\".", e)
			}
		}
		dbs = append(dbs, db)
	}
	return dbs
}

func (l *loader) decodeEtcd(c *decoded, pgHosts []string, ports *portUses) Etcd {
	d, _ := l.one(c, "etcd")
	e := Etcd{
		ClientPort: d.integer("client_port"), PeerPort: d.integer("peer_port"),
		HeartbeatInterval: d.duration("heartbeat_interval"), ElectionTimeout: d.duration("election_timeout"),
		TLS: len(c.children["tls"]) > 0, Range: d.defRange(),
	}
	switch {
	case !d.good("tls"):
	case d.boolean("tls") && !e.TLS:
		l.errorf(d.rng("tls"), "TLS without certificates",
			"etcd over TLS needs the cluster's certificates: add a tls block to the cluster (ca_cert, and ca_key for pgherd to issue the hosts' certificates), which turns TLS on for every service; then remove tls = true here.")
	case !d.boolean("tls") && e.TLS:
		l.errorf(d.rng("tls"), "etcd without TLS",
			"The cluster has a tls block, so etcd serves its clients and peers over TLS like every other service: remove tls = false.")
	}
	e.Hosts = l.hostsOf(d, func() []string {
		if hs := l.hostsWithRole(RoleEtcd); len(hs) > 0 {
			return hs
		}
		return pgHosts
	})
	if n := len(e.Hosts); n > 0 && n%2 == 0 {
		attr := "hosts"
		if !d.has("hosts") {
			attr = "roles"
		}
		l.warnf(d.rng(attr), "Even number of etcd members",
			"An etcd cluster of %d members survives the loss of %d, no more than one of %d: use an odd number of hosts.", n, (n-1)/2, n-1)
	}
	if d.good("heartbeat_interval", "election_timeout") && e.ElectionTimeout < 5*e.HeartbeatInterval {
		l.errorf(d.rng("election_timeout"), "Election timeout too short",
			"The election_timeout (%s) must be at least 5 times the heartbeat_interval (%s): etcd refuses to start otherwise.", e.ElectionTimeout, e.HeartbeatInterval)
	}
	ports.add(e.Hosts, e.ClientPort, "etcd.client_port", d.rng("client_port"))
	ports.add(e.Hosts, e.PeerPort, "etcd.peer_port", d.rng("peer_port"))
	return e
}

func (l *loader) decodeRolling(c *decoded) Rolling {
	d, _ := l.one(c, "rolling")
	r := Rolling{MaxTransactionAge: d.duration("max_transaction_age"), Timeout: d.duration("timeout"), Range: d.defRange()}
	r.MaxLag, _ = parseSize(d.str("max_lag"))
	return r
}

func (l *loader) decodeHA(c *decoded, cl *Cluster, ports *portUses) HA {
	d, _ := l.one(c, "ha")
	h := HA{
		TTL: d.duration("ttl"), LoopWait: d.duration("loop_wait"), RetryTimeout: d.duration("retry_timeout"),
		SwitchoverTimeout: d.duration("switchover_timeout"),
		SynchronousMode:   SyncMode(d.str("synchronous_mode")), SynchronousNodeCount: d.integer("synchronous_node_count"),
		SynchronousQuorum: d.boolean("synchronous_quorum"), APIPort: d.integer("api_port"),
		APIToken: l.password(d, "api_token", "api_token"), Pause: d.boolean("pause"), Range: d.defRange(),
	}
	h.MaximumLagOnFailover, _ = parseSize(d.str("maximum_lag_on_failover"))
	if d.good("ttl") && h.TTL < 2*time.Second {
		l.errorf(d.rng("ttl"), "TTL too short",
			"The ttl (%s) must be at least 2s: a primary must be able to renew its lease over a slow network.", h.TTL)
	} else if d.good("ttl", "loop_wait") && h.TTL <= 2*h.LoopWait {
		l.errorf(d.rng("ttl"), "TTL too short",
			"The ttl (%s) must be more than twice loop_wait (%s), so that a primary renews its lease at least twice before it expires.", h.TTL, h.LoopWait)
	}
	if d.good("ttl", "retry_timeout") && h.RetryTimeout >= h.TTL {
		l.errorf(d.rng("retry_timeout"), "Retry timeout too long",
			"The retry_timeout (%s) must be less than the ttl (%s): a primary must give up on a failing etcd before its lease expires.", h.RetryTimeout, h.TTL)
	}
	if e := cl.Etcd; d.good("ttl") && e.HeartbeatInterval > 0 && e.ElectionTimeout > 0 {
		// etcd grants no lease shorter than 1.5 election timeouts, rounded
		// up to the second.
		minTTL := (3 * e.ElectionTimeout / 2).Round(time.Second)
		if minTTL < 3*e.ElectionTimeout/2 {
			minTTL += time.Second
		}
		if h.TTL < minTTL {
			l.warnf(d.rng("ttl"), "TTL shorter than etcd allows",
				"etcd grants no lease shorter than %s with an election_timeout of %s: the leader lease will last %s, not %s.", minTTL, e.ElectionTimeout, minTTL, h.TTL)
		}
	}
	if d.good("switchover_timeout") && h.SwitchoverTimeout < time.Second {
		l.errorf(d.rng("switchover_timeout"), "Switchover timeout too short",
			"The switchover_timeout (%s) must be at least 1s: the target needs time to replay what the old primary wrote last.", h.SwitchoverTimeout)
	}
	if d.good("synchronous_node_count") {
		n := len(cl.Postgres.Hosts)
		switch {
		case h.SynchronousNodeCount < 1:
			l.errorf(d.rng("synchronous_node_count"), "Invalid synchronous node count",
				"The synchronous_node_count must be at least 1.")
		case h.SynchronousMode != SyncOff && n > 0 && h.SynchronousNodeCount >= n:
			l.errorf(d.rng("synchronous_node_count"), "Too many synchronous replicas",
				"The synchronous_node_count (%d) must be less than the number of PostgreSQL hosts (%d): the primary is not its own replica.", h.SynchronousNodeCount, n)
		}
	}
	ports.add(cl.Postgres.Hosts, h.APIPort, "ha.api_port", d.rng("api_port"))
	return h
}

func (l *loader) decodeMembers(c *decoded, cl *Cluster) []Member {
	schema := c.schema.Block("member")
	pg := cl.Postgres.Hosts
	given := map[string]Member{}
	for _, b := range c.children["member"] {
		host := b.blk.Labels[0]
		d := l.decodeWith(b, schema)
		_, declared := l.hosts[host]
		switch {
		case !declared:
			l.errorf(b.blk.LabelRanges[0].Ptr(), "Unknown host",
				"No host named %q is declared.%s", host, suggest(host, pg))
			continue
		case !slices.Contains(pg, host):
			l.errorf(b.blk.LabelRanges[0].Ptr(), "Not a PostgreSQL host",
				"The host %q does not run PostgreSQL in this cluster, whose PostgreSQL hosts are %s: a member block is for one of them.", host, quoteList(pg))
			continue
		}
		if prev, ok := given[host]; ok {
			l.errorf(b.blk.DefRange.Ptr(), "Duplicate member",
				"The member %q was already declared at %s.", host, posString(prev.Range))
			continue
		}
		m := Member{Host: host, Priority: d.integer("priority"), NoFailover: d.boolean("nofailover"), NoSync: d.boolean("nosync"), Range: b.blk.DefRange}
		if d.good("priority") && m.Priority < 0 {
			l.errorf(d.rng("priority"), "Invalid priority", "The priority must be 0 or more.")
		}
		given[host] = m
	}
	def := defaults(schema)
	var (
		members  []Member
		eligible int
	)
	for _, h := range pg {
		m, ok := given[h]
		if !ok {
			m = Member{Host: h, Priority: def.integer("priority"), NoFailover: def.boolean("nofailover"), NoSync: def.boolean("nosync"), Range: cl.Range}
		}
		if !m.NoFailover && m.Priority > 0 {
			eligible++
		}
		members = append(members, m)
	}
	if len(pg) > 1 && eligible == 0 {
		l.warnf(cl.Range.Ptr(), "No member can fail over",
			"Every PostgreSQL host has nofailover = true or priority = 0: when the primary fails, no replica takes over.")
	}
	return members
}

// checkSyncCandidates warns when nosync leaves fewer possible synchronous
// replicas than synchronous_node_count while a host that may be synchronous
// is the primary.
func (l *loader) checkSyncCandidates(c *Cluster) {
	h := c.HA
	if h.SynchronousMode == SyncOff || h.SynchronousNodeCount < 1 || h.SynchronousNodeCount >= len(c.Postgres.Hosts) {
		return // off, or already reported
	}
	can := 0
	for _, m := range c.Members {
		if !m.NoSync {
			can++
		}
	}
	if can > 0 && can-1 < h.SynchronousNodeCount {
		rng := h.Range
		l.warnf(&rng, "Too few synchronous candidates",
			"With synchronous_node_count = %d and %d PostgreSQL hosts without nosync, a primary among them has only %d possible synchronous replicas, fewer than asked.",
			h.SynchronousNodeCount, can, can-1)
	}
}

func (l *loader) decodeHAProxy(c *decoded, pgHosts []string, ports *portUses) *HAProxy {
	d, ok := l.one(c, "haproxy")
	if !ok {
		return nil
	}
	hp := &HAProxy{
		PrimaryPort: d.integer("primary_port"), ReplicaPort: d.integer("replica_port"), StatsPort: d.integer("stats_port"),
		CheckInterval: d.duration("check_interval"), MaxConnections: d.integer("max_connections"), Range: d.defRange(),
	}
	hp.Hosts = l.hostsOf(d, func() []string {
		if hs := l.hostsWithRole(RoleHAProxy); len(hs) > 0 {
			return hs
		}
		return pgHosts
	})
	if d.good("max_connections") && hp.MaxConnections < 1 {
		l.errorf(d.rng("max_connections"), "Invalid connection limit", "The max_connections must be at least 1.")
	}
	ports.add(hp.Hosts, hp.PrimaryPort, "haproxy.primary_port", d.rng("primary_port"))
	ports.add(hp.Hosts, hp.ReplicaPort, "haproxy.replica_port", d.rng("replica_port"))
	ports.add(hp.Hosts, hp.StatsPort, "haproxy.stats_port", d.rng("stats_port"))
	return hp
}

func (l *loader) decodeKeepalived(c *decoded, hp *HAProxy) *Keepalived {
	d, ok := l.one(c, "keepalived")
	if !ok {
		return nil
	}
	k := &Keepalived{
		VIP: d.str("vip"), Interface: d.str("interface"), RouterID: d.integer("router_id"),
		Password: l.password(d, "password", "VRRP password"), Range: d.defRange(),
	}
	if hp == nil {
		l.errorf(d.b.blk.DefRange.Ptr(), "keepalived without haproxy",
			"keepalived moves the VIP between HAProxy hosts, and the cluster has none: add an haproxy block.")
	} else {
		k.Hosts = l.hostsOf(d, func() []string { return hp.Hosts })
		attr := "hosts"
		if !d.has("hosts") {
			attr = "roles"
		}
		for _, h := range k.Hosts {
			if !slices.Contains(hp.Hosts, h) {
				l.errorf(d.rng(attr), "keepalived host without HAProxy",
					"The host %q does not run HAProxy, so the VIP would lead nowhere while it holds it: keepalived hosts must be among the HAProxy hosts, %s.", h, quoteList(hp.Hosts))
			}
		}
	}
	if d.good("vip") {
		vip, _ := netip.ParsePrefix(k.VIP)
		for _, h := range l.m.Hosts {
			if a, err := netip.ParseAddr(h.Address); err == nil && a.Unmap() == vip.Addr().Unmap() {
				l.errorf(d.rng("vip"), "VIP is a host's address",
					"The VIP %s is the address of host %q: choose an unused address of that network.", vip.Addr(), h.Name)
			}
		}
		if vip.Addr() == vip.Masked().Addr() && vip.Bits() < vip.Addr().BitLen() {
			l.errorf(d.rng("vip"), "VIP is a network address",
				"%s is the address of the network itself: give the VIP with its prefix length, such as \"%s/%d\".", vip.Addr(), vip.Addr().Next(), vip.Bits())
		}
	}
	if d.good("interface") && !ifaceName.MatchString(k.Interface) {
		l.errorf(d.rng("interface"), "Invalid interface name",
			"%q is not a network interface name such as \"eth0\" (at most 15 characters).", k.Interface)
	}
	if d.good("router_id") && (k.RouterID < 1 || k.RouterID > 255) {
		l.errorf(d.rng("router_id"), "Invalid router id", "The router_id must be from 1 to 255.")
	}
	if n := len([]rune(k.Password)); n > 8 {
		l.errorf(d.rng("password"), "VRRP password too long",
			"The VRRP password has %d characters; VRRP's PASS authentication uses at most 8, and keepalived would silently cut it.", n)
	}
	return k
}

// portUse is a port a service listens on.
type portUse struct {
	port int
	what string // "postgres.port"
	rng  *hcl.Range
}

// portUses are the ports of each host.
type portUses struct {
	byHost map[string][]portUse
}

func (p *portUses) add(hosts []string, port int, what string, rng *hcl.Range) {
	if port == 0 {
		return // invalid, already reported
	}
	for _, h := range hosts {
		p.byHost[h] = append(p.byHost[h], portUse{port: port, what: what, rng: rng})
	}
}

// checkPorts reports two services on one port of a host, once for each
// pair of attributes.
func (l *loader) checkPorts(p *portUses) {
	type clash struct {
		a, b  portUse
		hosts []string
	}
	var clashes []*clash
	seen := map[[2]string]*clash{}
	for _, h := range l.hostNames() {
		uses := p.byHost[h]
		for j := range uses {
			for i := 0; i < j; i++ {
				if uses[i].port != uses[j].port {
					continue
				}
				key := [2]string{uses[i].what, uses[j].what}
				c, ok := seen[key]
				if !ok {
					c = &clash{a: uses[i], b: uses[j]}
					seen[key] = c
					clashes = append(clashes, c)
				}
				c.hosts = append(c.hosts, h)
			}
		}
	}
	for _, c := range clashes {
		word := "host"
		if len(c.hosts) > 1 {
			word = "hosts"
		}
		l.errorf(c.b.rng, "Port clash",
			"The port %d of %s is also the port of %s, on %s %s: give them different ports.", c.b.port, c.b.what, c.a.what, word, quoteList(c.hosts))
	}
}
