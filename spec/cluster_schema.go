package spec

import "github.com/zclconf/go-cty/cty"

// Defaults of the cluster block that the decoder also needs.
const (
	// RolePostgres is the host role whose hosts run PostgreSQL when the
	// postgres block names no hosts.
	RolePostgres = "postgres"
	// RoleEtcd is the host role whose hosts run etcd when the etcd block
	// names no hosts.
	RoleEtcd = "etcd"
	// RoleHAProxy is the host role whose hosts run HAProxy when the
	// haproxy block names no hosts.
	RoleHAProxy = "haproxy"

	minPGVersion = 13
	maxPGVersion = 17
)

func hostsAttrs(what, def string) []Attr {
	return []Attr{
		{Name: "hosts", Type: listOfString, Kind: KindHostRefs, DefaultDoc: def,
			Description: "The hosts that run " + what + "."},
		{Name: "roles", Type: listOfString, Kind: KindRoleRefs,
			Description: "The hosts that have any of these roles run " + what + " (with `hosts`, both sets do)."},
	}
}

func passwordAttr(name, desc string, required bool) Attr {
	return Attr{Name: name, Type: cty.String, Required: required,
		Description: desc + " Give it from a variable declared with `sensitive = true`; a value that is not sensitive draws a warning, since plans would show it."}
}

var clusterSchema = Block{
	Type: "cluster", Label: "name", LabelKind: KindDNSLabel, AtMostOnce: true,
	LabelDoc: "The cluster's name; the agent keeps its keys in etcd under `/pgherd/<name>/`.",
	Description: "A highly available PostgreSQL cluster: PostgreSQL on several hosts run by the pgherd agent, " +
		"an etcd cluster that holds the leader lease, and optionally HAProxy in front of them and keepalived moving a virtual IP between the HAProxy hosts. " +
		"At most one `cluster` block. Ports of the services must not clash on a host that runs several of them.",
	Blocks: []Block{
		{
			Type: "postgres", Required: true,
			Description: "PostgreSQL, installed from Debian's `postgresql-<version>` package and run by the pgherd agent (Debian's own `postgresql@` units stay off). " +
				"pgherd adds the `pg_hba.conf` rules that replication and the agent need before the `hba` rules given here.",
			Attrs: append([]Attr{
				{Name: "version", Type: cty.Number, Default: cty.NumberIntVal(15), Description: "The major version, 13 to 17."},
				{Name: "package_version", Type: cty.String, DefaultDoc: "any",
					Description: "An exact Debian version of `postgresql-<version>`, such as `\"15.18-0+deb12u1\"`; it must start with the major version."},
				{Name: "port", Type: cty.Number, Kind: KindPort, Default: cty.NumberIntVal(5432), Description: "The port PostgreSQL listens on."},
				{Name: "data_dir", Type: cty.String, Kind: KindAbsPath, DefaultDoc: "`\"/var/lib/postgresql/<version>/main\"`", Description: "The data directory. Its parent must be writable by the `postgres` user: pgherd makes `/var/lib/postgresql/<version>` so, creates a missing parent as postgres's, and refuses (a plan error) an existing one postgres cannot write to. The agent moves a replaced data directory aside there, builds a restored one beside it, and marks an unfinished pg_rewind or clone with `<data_dir>.pgherd-incomplete`."},
				{Name: "adopt", Type: cty.String, DefaultDoc: "none",
					Description: "A host of `hosts` whose running PostgreSQL, installed by hand (Debian's `<version>/main` cluster), becomes the cluster's first primary without a restart; the other hosts are cloned from it. " +
						"`plan` checks it first and shows the migration's steps with their client impact (see docs/runbooks/migration.md)."},
			}, append(hostsAttrs("PostgreSQL", "the hosts with the role `postgres`, else every host"),
				passwordAttr("superuser_password", "The password of the `postgres` superuser.", true),
				Attr{Name: "replication_user", Type: cty.String, Default: cty.StringVal("replicator"), Description: "The role replicas connect as."},
				passwordAttr("replication_password", "The password of the replication role.", true),
				Attr{Name: "parameters", Type: mapOfString,
					Description: "Server parameters (`postgresql.conf`); values may be strings, numbers or bools. The parameters pgherd sets itself (`port`, `data_directory`, `hba_file`, `primary_conninfo`, …) are refused. A parameter removed from the map returns to PostgreSQL's default (or `postgresql.conf`'s value); what `ALTER SYSTEM` set is drift."},
			)...),
			Blocks: []Block{
				{
					Type: "hba", Repeatable: true,
					Description: "A `pg_hba.conf` rule; rules keep their order.",
					Attrs: []Attr{
						{Name: "type", Type: cty.String, Default: cty.StringVal("host"), Enum: []string{"local", "host", "hostssl", "hostnossl"}, Description: "The connection type."},
						{Name: "database", Type: cty.String, Default: cty.StringVal("all"), Description: "The databases the rule matches."},
						{Name: "user", Type: cty.String, Default: cty.StringVal("all"), Description: "The roles the rule matches."},
						{Name: "address", Type: cty.String, Kind: KindHBAAddr, DefaultDoc: "required unless `type = \"local\"`", Description: "The client addresses the rule matches; not allowed with `type = \"local\"`."},
						{Name: "method", Type: cty.String, Default: cty.StringVal("scram-sha-256"), Enum: []string{"scram-sha-256", "md5", "trust", "reject", "peer", "cert"},
							Description: "How clients authenticate; `peer` needs `type = \"local\"` and `cert` needs `type = \"hostssl\"`."},
					},
				},
				{
					Type: "role", Label: "name", Repeatable: true,
					LabelDoc:    "The role's name: lower-case letters, digits and underscores, starting with a letter or underscore, at most 63; not `postgres`, the replication user, or a name starting with `pg_`.",
					Description: "A database role (a user or a group).",
					Attrs: []Attr{
						passwordAttr("password", "The role's password; none when unset.", false),
						{Name: "login", Type: cty.Bool, Default: cty.True, Description: "The role can log in."},
						{Name: "superuser", Type: cty.Bool, Default: cty.False, Description: "The role is a superuser."},
						{Name: "createdb", Type: cty.Bool, Default: cty.False, Description: "The role can create databases."},
						{Name: "createrole", Type: cty.Bool, Default: cty.False, Description: "The role can create roles."},
						{Name: "replication", Type: cty.Bool, Default: cty.False, Description: "The role can replicate."},
						{Name: "connection_limit", Type: cty.Number, Default: cty.NumberIntVal(-1), Description: "How many connections the role may open at once; -1 for no limit."},
						{Name: "member_of", Type: listOfString, Description: "Roles it is a member of: declared roles or PostgreSQL's predefined `pg_` roles."},
					},
				},
				{
					Type: "database", Label: "name", Repeatable: true,
					LabelDoc:    "The database's name, with the same rules as a role's; not `postgres`, `template0` or `template1`.",
					Description: "A database.",
					Attrs: []Attr{
						{Name: "owner", Type: cty.String, Default: cty.StringVal("postgres"), Description: "The owner: a declared `role` or `postgres`."},
						{Name: "extensions", Type: listOfString, Description: "Extensions created in the database."},
					},
				},
			},
		},
		{
			Type:        "etcd",
			Description: "The etcd cluster that holds the leader lease and the cluster's state. Without an `etcd` block, every default applies.",
			Attrs: append(hostsAttrs("etcd", "the hosts with the role `etcd`, else the PostgreSQL hosts"),
				Attr{Name: "client_port", Type: cty.Number, Kind: KindPort, Default: cty.NumberIntVal(2379), Description: "The port clients connect to."},
				Attr{Name: "peer_port", Type: cty.Number, Kind: KindPort, Default: cty.NumberIntVal(2380), Description: "The port members talk to each other on."},
				Attr{Name: "heartbeat_interval", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("50ms"), Description: "How often the etcd leader heartbeats its followers."},
				Attr{Name: "election_timeout", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("500ms"),
					Description: "How long a follower waits for a heartbeat before it calls an election; at least 5 times `heartbeat_interval`. With a dead etcd leader, failover takes this much longer."},
				Attr{Name: "tls", Type: cty.Bool, DefaultDoc: "`true` when the cluster has a `tls` block",
					Description: "Serve clients and peers over TLS, with the certificates of the cluster's `tls` block (required for `true`). It cannot be `false` when the cluster has a `tls` block: every service then uses TLS."},
			),
		},
		{
			Type:        "ha",
			Description: "How the pgherd agent runs the cluster. Without an `ha` block, every default applies.",
			Attrs: []Attr{
				{Name: "ttl", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("3s"),
					Description: "The leader lease: a primary that cannot renew it stops accepting writes 1s before it could expire; a lost primary host is replaced about `ttl` after its last renewal. At least 2s and more than twice `loop_wait` (docs/ha.md, Default timings)."},
				{Name: "loop_wait", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("500ms"), Description: "The pause between two runs of the agent's loop; the primary renews its lease every run."},
				{Name: "retry_timeout", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("2s"), Description: "How long etcd and PostgreSQL operations are retried; less than `ttl`."},
				{Name: "maximum_lag_on_failover", Type: cty.String, Kind: KindSize, Default: cty.StringVal("1MB"), Description: "A replica further behind than this is never promoted."},
				{Name: "synchronous_mode", Type: cty.String, Default: cty.StringVal("off"), Enum: []string{"off", "on", "strict"},
					Description: "`on` makes commits wait for synchronous replicas while there are some; `strict` also when there are none (writes stop)."},
				{Name: "synchronous_node_count", Type: cty.Number, Default: cty.NumberIntVal(1), Description: "How many synchronous replicas; fewer than the PostgreSQL hosts."},
				{Name: "synchronous_quorum", Type: cty.Bool, Default: cty.False, Description: "Wait for `ANY n` of the replicas instead of the `FIRST n`."},
				{Name: "switchover_timeout", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("30s"),
					Description: "How long a switchover waits for its target to replay everything the old primary wrote; past it the switchover is abandoned and the old primary resumes (the outcome is in `pgherd status` and the `switchover_result` key)."},
				{Name: "api_port", Type: cty.Number, Kind: KindPort, Default: cty.NumberIntVal(8008), Description: "The port of the agent's REST API (HAProxy checks it)."},
				passwordAttr("api_token", "The bearer token the REST API's write verbs (switchover, restart, reload, pause) require; they are refused when unset.", false),
				{Name: "pause", Type: cty.Bool, Default: cty.False, Description: "Maintenance mode: the agents take no automatic action."},
			},
		},
		{
			Type: "rolling",
			Description: "The gates of a rolling procedure (a minor upgrade, a restart for a parameter): before each member's turn, `apply` checks the cluster's health, " +
				"every replica's lag and the member's open transactions, and stops with what to fix when one fails (docs/runbooks/upgrade.md). Without a `rolling` block, every default applies.",
			Attrs: []Attr{
				{Name: "max_lag", Type: cty.String, Kind: KindSize, Default: cty.StringVal("16MB"), Description: "A replica further behind the leader than this fails the gate."},
				{Name: "max_transaction_age", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("5m"),
					Description: "A transaction open on the member for longer than this fails its gate: its restart would end it."},
				{Name: "timeout", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("5m"),
					Description: "How long each wait of the procedure may last (a member back to streaming, a switchover)."},
			},
		},
		{
			Type: "member", Label: "host", Repeatable: true,
			LabelDoc:    "A PostgreSQL host of the cluster.",
			Description: "HA settings of one PostgreSQL host; a host without a `member` block has the defaults.",
			Attrs: []Attr{
				{Name: "priority", Type: cty.Number, Default: cty.NumberIntVal(1), Description: "Failover priority: among replicas equally advanced, the highest wins; 0 never becomes primary by failover."},
				{Name: "nofailover", Type: cty.Bool, Default: cty.False, Description: "The host never becomes primary."},
				{Name: "nosync", Type: cty.Bool, Default: cty.False, Description: "The host is never a synchronous replica."},
			},
		},
		{
			Type:        "haproxy",
			Description: "HAProxy routes clients to the primary and to the replicas, using the agents' REST API as health check. Not installed when absent.",
			Attrs: append(hostsAttrs("HAProxy", "the hosts with the role `haproxy`, else the PostgreSQL hosts"),
				Attr{Name: "primary_port", Type: cty.Number, Kind: KindPort, Default: cty.NumberIntVal(5000), Description: "Read-write connections, sent to the primary."},
				Attr{Name: "replica_port", Type: cty.Number, Kind: KindPort, Default: cty.NumberIntVal(5001), Description: "Read-only connections, spread over the replicas."},
				Attr{Name: "stats_port", Type: cty.Number, Kind: KindPort, Default: cty.NumberIntVal(7000), Description: "HAProxy's statistics page."},
				Attr{Name: "check_interval", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("1s"), Description: "How often each backend is checked."},
				Attr{Name: "max_connections", Type: cty.Number, Default: cty.NumberIntVal(1000), Description: "The most client connections HAProxy accepts."},
			),
		},
		{
			Type:        "keepalived",
			Description: "keepalived holds a virtual IP on one of the HAProxy hosts and moves it when that host fails. Needs an `haproxy` block. Not installed when absent.",
			Attrs: []Attr{
				{Name: "hosts", Type: listOfString, Kind: KindHostRefs, DefaultDoc: "the HAProxy hosts", Description: "The hosts that may hold the VIP; HAProxy hosts only."},
				{Name: "roles", Type: listOfString, Kind: KindRoleRefs, Description: "The hosts that have any of these roles may hold the VIP (with `hosts`, both sets do)."},
				{Name: "vip", Type: cty.String, Kind: KindCIDR, Required: true, Description: "The virtual IP and its prefix length, such as `\"10.0.0.100/24\"`; not the address of a host."},
				{Name: "interface", Type: cty.String, Default: cty.StringVal("eth0"), Description: "The network interface the VIP is added to."},
				{Name: "router_id", Type: cty.Number, Default: cty.NumberIntVal(51), Description: "The VRRP virtual router id, 1 to 255, unique on the network."},
				passwordAttr("password", "The VRRP password, at most 8 characters (the limit of VRRP's PASS authentication); none when unset.", false),
			},
		},
		backupSchema,
		tlsSchema,
	},
}
