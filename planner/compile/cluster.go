package compile

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/agent/pg"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner/engine"
	"github.com/pgherd/pgherd/spec"
)

// Paths of what pgherd installs for the agent.
const (
	agentConfigDir = "/etc/pgherd"
	agentUnit      = modules.AgentUnit
)

// agentUnitFile runs the agent as postgres. KillMode=process: stopping or
// restarting the unit signals the agent alone, which stops PostgreSQL
// itself on a clean shutdown (handing leadership over) and leaves it
// running when it exits for an in-place upgrade.
const agentUnitFile = `[Unit]
Description=pgherd HA agent
After=network-online.target
Wants=network-online.target

[Service]
User=postgres
Group=postgres
ExecStart=` + modules.AgentBinaryPath + ` agent --config ` + agent.ConfigPath + `
ExecReload=/bin/kill -HUP $MAINPID
RuntimeDirectory=pgherd
RuntimeDirectoryPreserve=yes
KillMode=process
Restart=always
RestartSec=1
TimeoutStopSec=120
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`

// clusterPhases are the phases of the HA cluster, in apply order: etcd,
// PostgreSQL and the agent, the other hosts detached from the cluster, the
// wait for the cluster to come up, the rolling procedure (leader last),
// HAProxy, keepalived. Within a phase the hosts are worked on in parallel.
func clusterPhases(m *spec.Model, c *spec.Cluster, keep func(string) bool, bin modules.AgentBinary, removeData []string, leader string, now time.Time) ([]engine.Phase, error) {
	host := func(name string) spec.Host {
		i := slices.IndexFunc(m.Hosts, func(h spec.Host) bool { return h.Name == name })
		return m.Hosts[i]
	}
	var phases []engine.Phase
	add := func(name string, hosts []string, build func(spec.Host) ([]modules.Resource, error)) error {
		p := engine.Phase{Name: name}
		for _, hn := range hosts {
			if !keep(hn) {
				continue
			}
			rs, err := build(host(hn))
			if err != nil {
				return fmt.Errorf("%s on %s: %w", name, hn, err)
			}
			p.Hosts = append(p.Hosts, engine.HostResources{Host: hn, Resources: rs})
		}
		if len(p.Hosts) > 0 {
			phases = append(phases, p)
		}
		return nil
	}

	ct, err := newClusterTLS(c, now)
	if err != nil {
		return nil, err
	}
	scheme := "http://"
	if ct != nil {
		scheme = "https://"
	}
	var peers []modules.EtcdPeer
	var endpoints []string
	for _, hn := range c.Etcd.Hosts {
		addr := host(hn).Address
		peers = append(peers, modules.EtcdPeer{Name: hn, PeerURL: modules.EtcdPeerURL(addr, c.Etcd.PeerPort, ct != nil)})
		endpoints = append(endpoints, scheme+hostPort(addr, c.Etcd.ClientPort))
	}
	etcdResources := func(h spec.Host) ([]modules.Resource, error) {
		rs, err := modules.EtcdResources(modules.EtcdConfig{
			Name: h.Name, Address: h.Address, ClientPort: c.Etcd.ClientPort, PeerPort: c.Etcd.PeerPort,
			Members: peers, ClusterState: "new", Token: "pgherd-" + c.Name,
			Heartbeat: c.Etcd.HeartbeatInterval, ElectionTimeout: c.Etcd.ElectionTimeout, TLS: ct.etcdTLS(),
		})
		if err != nil || h.Name != c.Etcd.Hosts[0] {
			return rs, err
		}
		// One member reads the membership of the running cluster and
		// removes the members the spec no longer has; each member joins
		// from its own host (etcd_member).
		local := "http://127.0.0.1:" + strconv.Itoa(c.Etcd.ClientPort)
		if ct != nil { // the host's address, which its certificate names
			local = scheme + hostPort(h.Address, c.Etcd.ClientPort)
		}
		return append(rs, modules.EtcdMembership{Cluster: sanitize(c.Name), Members: peers, JoinOnHosts: true,
			Endpoints: []string{local}, TLS: ct.etcdClient()}), nil
	}

	roles, dbs := pgObjects(c)
	hba, err := renderHBA(m, c, ct != nil)
	if err != nil {
		return nil, err
	}
	pgResources := func(h spec.Host) ([]modules.Resource, error) {
		adopt := h.Name == c.Postgres.Adopt
		rs := modules.PostgresHostResources(modules.PostgresHost{
			Major: c.Postgres.Version, Version: c.Postgres.PackageVersion, Hold: c.Postgres.PackageVersion != "",
			DataDir: c.Postgres.DataDir, Adopt: adopt, Rolling: true,
		})
		if adopt {
			r, err := adoptResource(m, c, h)
			if err != nil {
				return nil, err
			}
			rs = append([]modules.Resource{r}, rs...)
		}
		cfg, err := agentConfig(m, c, h, endpoints, hba, ct.agentFiles())
		if err != nil {
			return nil, err
		}
		enabled := true
		rs = append(rs,
			bin,
			modules.Directory{Path: agentConfigDir, Owner: "root", Group: "postgres", Mode: "0750"},
			modules.File{Path: agent.ConfigPath, Content: cfg, Owner: "postgres", Group: "postgres", Mode: "0600",
				Sensitive: true, NotifyList: []string{"service." + agentUnit}})
		// The repositories are initialized before the agent starts: its
		// PostgreSQL archives from its first segment on, and a push into
		// a repository not yet initialized fails (and is retried). A
		// shared one is initialized from the first host only: another
		// host's agent that bootstraps the cluster first waits for it
		// before initdb (agent.waitRepositories).
		rs = append(rs, backupResources(c, h)...)
		rs = append(rs,
			modules.Service{Name: agentUnit, Enabled: &enabled, State: modules.Running, Reload: true, Unit: agentUnitFile,
				Watch: []string{"file." + agent.ConfigPath}},
			modules.PgHBA{DataDir: c.Postgres.DataDir, Content: hba},
			modules.PostgresParameters{ConfFile: filepath.Join(c.Postgres.DataDir, "postgresql.auto.conf"),
				Parameters: pgParameters(c, ct.agentFiles()), Port: c.Postgres.Port, Agent: true},
			modules.PostgresObjects{Cluster: c.Name, Port: c.Postgres.Port, SocketDir: "/var/run/postgresql",
				Roles: roles, Databases: dbs, First: h.Name == c.Postgres.Hosts[0]},
		)
		return rs, nil
	}
	// etcd and PostgreSQL with the agent go in one phase, each host's
	// packages in one apt-get run: etcd need not wait for the agents (they
	// wait for etcd), and the cluster bootstraps in the next phase.
	var dbHosts []string
	for _, hn := range m.Hosts {
		if slices.Contains(c.Etcd.Hosts, hn.Name) || slices.Contains(c.Postgres.Hosts, hn.Name) {
			dbHosts = append(dbHosts, hn.Name)
		}
	}
	if err := add("etcd and postgres", dbHosts, func(h spec.Host) ([]modules.Resource, error) {
		var lists [][]modules.Resource
		if slices.Contains(c.Etcd.Hosts, h.Name) {
			rs, err := etcdResources(h)
			if err != nil {
				return nil, err
			}
			lists = append(lists, rs)
		}
		if slices.Contains(c.Postgres.Hosts, h.Name) {
			rs, err := pgResources(h)
			if err != nil {
				return nil, err
			}
			lists = append(lists, rs)
		}
		rs := mergePackages(lists...)
		if ct != nil {
			rs = withTLS(rs, ct.files(c, h))
		}
		return rs, nil
	}); err != nil {
		return nil, err
	}
	// etcd reads its CA bundle only when it starts: a member whose bundle
	// changed restarts, one at a time.
	if ct != nil {
		p := engine.Phase{Name: "etcd tls", Serial: true}
		for _, hn := range c.Etcd.Hosts {
			if keep(hn) {
				p.Hosts = append(p.Hosts, engine.HostResources{Host: hn, Resources: []modules.Resource{
					modules.TLSRestart{Unit: "etcd", WatchList: []string{"tls." + hn}}}})
			}
		}
		if len(p.Hosts) > 0 {
			phases = append(phases, p)
		}
	}
	// The local agent's API as the host itself reaches it.
	localAPI := func(h spec.Host) string {
		if ct != nil {
			return hostPort(h.Address, c.HA.APIPort)
		}
		return "127.0.0.1:" + strconv.Itoa(c.HA.APIPort)
	}

	var members []string
	for _, mb := range c.Members {
		members = append(members, mb.Host)
	}
	// Scale in: the other hosts of the spec are drained and detached where
	// the cluster's agent still runs (a no-op elsewhere), before the wait
	// for the cluster, which then has its new leader.
	var others, detached []string
	for _, hn := range c.Postgres.Hosts {
		others = append(others, hostPort(host(hn).Address, c.HA.APIPort))
	}
	for _, h := range m.Hosts {
		if !slices.Contains(c.Postgres.Hosts, h.Name) {
			detached = append(detached, h.Name)
		}
	}
	if err := add("detach", detached, func(h spec.Host) ([]modules.Resource, error) {
		return []modules.Resource{modules.DetachedMember{Cluster: c.Name, Name: h.Name, API: localAPI(h), TLSCA: ct.caFile(),
			Others: others, DataDir: c.Postgres.DataDir, RemoveData: slices.Contains(removeData, h.Name)}}, nil
	}); err != nil {
		return nil, err
	}
	// One host waits for the whole cluster.
	if err := add("cluster", c.Postgres.Hosts[:1], func(h spec.Host) ([]modules.Resource, error) {
		return []modules.Resource{modules.ClusterReady{Cluster: c.Name, Members: members, Detached: detached,
			API: localAPI(h), TLSCA: ct.caFile()}}, nil
	}); err != nil {
		return nil, err
	}
	var trust []*x509.Certificate
	if ct != nil {
		trust = ct.trust
	}
	if p := rollingPhase(c, keep, leader, func(hn string) string { return host(hn).Address }, trust); len(p.Hosts) > 0 {
		phases = append(phases, p)
	}

	// HAProxy and keepalived: one phase, one apt-get run per host (the
	// keepalived hosts are HAProxy hosts).
	if hp := c.HAProxy; hp != nil {
		var backends []modules.Backend
		for _, hn := range c.Postgres.Hosts {
			backends = append(backends, modules.Backend{Name: hn, Address: host(hn).Address, PGPort: c.Postgres.Port})
		}
		ka := c.Keepalived
		name := "haproxy"
		if ka != nil {
			name = "haproxy and keepalived"
		}
		if err := add(name, hp.Hosts, func(h spec.Host) ([]modules.Resource, error) {
			rs, err := modules.HAProxyResources(modules.HAProxyConfig{
				Cluster: c.Name, PrimaryPort: hp.PrimaryPort, ReplicaPort: hp.ReplicaPort, StatsPort: hp.StatsPort,
				APIPort: c.HA.APIPort, Members: backends, MaxConn: hp.MaxConnections,
				Check: modules.HAProxyCheck{Inter: hp.CheckInterval}, CAFile: ct.caFile(),
			})
			if err == nil && ct != nil {
				rs = haproxyTLS(rs, ct, c, h)
			}
			if err != nil || ka == nil || !slices.Contains(ka.Hosts, h.Name) {
				return rs, err
			}
			var others []string
			prio := 0
			for i, hn := range ka.Hosts {
				if hn == h.Name {
					prio = 150 - 10*i
				} else {
					others = append(others, host(hn).Address)
				}
			}
			kr, err := modules.KeepalivedResources(modules.KeepalivedConfig{
				Instance: "pgherd_" + sanitize(c.Name), VIP: ka.VIP, Interface: ka.Interface, RouterID: ka.RouterID,
				Priority: prio, UnicastSrcIP: h.Address, UnicastPeers: others, AuthPass: ka.Password,
			})
			if err != nil {
				return nil, err
			}
			return mergePackages(rs, kr), nil
		}); err != nil {
			return nil, err
		}
	}
	return phases, nil
}

// mergePackages joins resource lists that each install their packages in
// one Packages resource: what comes before the packages in every list
// (files the packages read when they install), then all the packages in
// one apt-get run, then what comes after in every list.
func mergePackages(lists ...[]modules.Resource) []modules.Resource {
	var pre, post []modules.Resource
	merged := modules.Packages{}
	var names []string
	for _, rs := range lists {
		i := slices.IndexFunc(rs, func(r modules.Resource) bool { _, ok := r.(modules.Packages); return ok })
		if i < 0 {
			post = append(post, rs...)
			continue
		}
		p := rs[i].(modules.Packages)
		names = append(names, p.Name)
		merged.Packages = append(merged.Packages, p.Packages...)
		pre = append(pre, rs[:i]...)
		post = append(post, rs[i+1:]...)
	}
	if len(names) == 0 {
		return post
	}
	merged.Name = strings.Join(names, "+")
	out := append(pre, merged)
	return append(out, post...)
}

// renderHBA is the cluster's pg_hba.conf: local peer access for the
// postgres user, replication and pg_rewind between the members, then the
// spec's rules in order.
func renderHBA(m *spec.Model, c *spec.Cluster, tls bool) (string, error) {
	rules, err := hbaRules(m, c, tls)
	if err != nil {
		return "", err
	}
	return modules.RenderPgHBA(rules)
}

// hbaRules are the rules of the cluster's pg_hba.conf, in order.
// With TLS, the rules of type host are hostssl: no connection over the
// network without TLS.
func hbaRules(m *spec.Model, c *spec.Cluster, tls bool) ([]modules.HBARule, error) {
	host := "host"
	if tls {
		host = "hostssl"
	}
	rules := []modules.HBARule{{Type: "local", Database: "all", User: "postgres", Method: "peer"}}
	for _, hn := range c.Postgres.Hosts {
		i := slices.IndexFunc(m.Hosts, func(h spec.Host) bool { return h.Name == hn })
		addr := m.Hosts[i].Address + "/32"
		rules = append(rules,
			modules.HBARule{Type: host, Database: "replication", User: c.Postgres.ReplicationUser, Address: addr},
			modules.HBARule{Type: host, Database: "postgres", User: "postgres", Address: addr},
		)
	}
	for _, r := range c.Postgres.HBA {
		if r.Type == "host" {
			r.Type = host
		}
		rules = append(rules, modules.HBARule{Type: r.Type, Database: r.Database, User: r.User, Address: r.Address, Method: r.Method})
	}
	return rules, nil
}

// pgObjects are the spec's roles and databases, as the agent applies them.
func pgObjects(c *spec.Cluster) ([]pg.Role, []pg.Database) {
	var roles []pg.Role
	var dbs []pg.Database
	for _, r := range c.Postgres.Roles {
		roles = append(roles, pg.Role{Name: r.Name, Password: r.Password, Login: r.Login,
			Superuser: r.Superuser, CreateDB: r.CreateDB, CreateRole: r.CreateRole, Replication: r.Replication,
			ConnectionLimit: r.ConnectionLimit, MemberOf: r.MemberOf})
	}
	for _, d := range c.Postgres.Databases {
		dbs = append(dbs, pg.Database{Name: d.Name, Owner: d.Owner, Extensions: d.Extensions})
	}
	return roles, dbs
}

// agentConfig is the agent's configuration file for host h.
func agentConfig(m *spec.Model, c *spec.Cluster, h spec.Host, endpoints []string, hba string, tls agent.TLSFiles) (string, error) {
	var cfg agent.Config
	cfg.Cluster, cfg.Name, cfg.Address = c.Name, h.Name, h.Address
	cfg.Postgres.BinDir = fmt.Sprintf("/usr/lib/postgresql/%d/bin", c.Postgres.Version)
	cfg.Postgres.DataDir = c.Postgres.DataDir
	cfg.Postgres.Port = c.Postgres.Port
	cfg.Postgres.SocketDir = "/var/run/postgresql"
	cfg.Postgres.Listen = "*"
	// Debian's log directory belongs to postgres.
	cfg.Postgres.LogFile = fmt.Sprintf("/var/log/postgresql/postgresql-%d-pgherd.log", c.Postgres.Version)
	cfg.Postgres.Parameters = pgParameters(c, tls)
	cfg.TLS = tls
	cfg.Backup = backupConfig(c)
	cfg.Postgres.HBA = hba
	cfg.Postgres.Adopt = c.Postgres.Adopt
	cfg.Postgres.Superuser = agent.Credentials{User: "postgres", Password: c.Postgres.SuperuserPassword}
	cfg.Postgres.Replication = agent.Credentials{User: c.Postgres.ReplicationUser, Password: c.Postgres.ReplicationPassword}
	cfg.Postgres.Roles, cfg.Postgres.Databases = pgObjects(c)
	cfg.Etcd.Endpoints = endpoints
	cfg.API.Listen = ":" + strconv.Itoa(c.HA.APIPort)
	cfg.API.Token = c.HA.APIToken
	cfg.HA.TTL.Duration = c.HA.TTL
	cfg.HA.LoopWait.Duration = c.HA.LoopWait
	cfg.HA.RetryTimeout.Duration = c.HA.RetryTimeout
	cfg.HA.SwitchoverTimeout.Duration = c.HA.SwitchoverTimeout
	cfg.HA.MaximumLagOnFailover = c.HA.MaximumLagOnFailover
	cfg.HA.SynchronousMode = string(c.HA.SynchronousMode)
	cfg.HA.SynchronousNodeCount = c.HA.SynchronousNodeCount
	cfg.HA.SynchronousQuorum = c.HA.SynchronousQuorum
	if mb, ok := c.Member(h.Name); ok {
		cfg.HA.Priority, cfg.HA.NoFailover, cfg.HA.NoSync = mb.Priority, mb.NoFailover, mb.NoSync
	}
	b, err := json.MarshalIndent(&cfg, "", "  ")
	if err != nil {
		return "", err
	}
	return string(b) + "\n", nil
}

func hostPort(host string, port int) string {
	if slices.Contains([]byte(host), ':') {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// sanitize keeps letters, digits, '_' and '-' of s.
func sanitize(s string) string {
	out := []rune{}
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			out = append(out, r)
		} else {
			out = append(out, '_')
		}
	}
	return string(out)
}

// pgParameters are the server parameters of the spec, with archiving and
// ssl.
func pgParameters(c *spec.Cluster, tls agent.TLSFiles) map[string]string {
	p := archiveParameters(c)
	// Crash recovery first flushes the whole data directory, file by file
	// by default: seconds to minutes on a large one, 250 ms on the lab's
	// small one, all of it added to the write gap of a crashed primary.
	// syncfs (PostgreSQL 14 and later, Linux) flushes each file system
	// at once.
	if _, set := p["recovery_init_sync_method"]; !set && c.Postgres.Version >= 14 {
		p["recovery_init_sync_method"] = "syncfs"
	}
	if tls.On() {
		p["ssl"], p["ssl_cert_file"], p["ssl_key_file"], p["ssl_ca_file"] = "on", tls.CertFile, tls.KeyFile, tls.CAFile
	}
	return p
}

// haproxyTLS adds the CA bundle to an HAProxy host that has no TLS files
// of its own, and reloads HAProxy when the bundle changes.
func haproxyTLS(rs []modules.Resource, ct *clusterTLS, c *spec.Cluster, h spec.Host) []modules.Resource {
	addr := "tls." + h.Name
	for i, r := range rs {
		if s, ok := r.(modules.Service); ok && s.Name == "haproxy" {
			s.Watch = append(slices.Clone(s.Watch), addr)
			rs[i] = s
		}
	}
	if slices.Contains(c.Etcd.Hosts, h.Name) || slices.Contains(c.Postgres.Hosts, h.Name) {
		return rs // written with the host's certificate
	}
	return withTLS(rs, ct.files(c, h))
}
