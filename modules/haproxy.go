package modules

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// HAProxyConfigPath is where Debian's haproxy package reads its
// configuration.
const HAProxyConfigPath = "/etc/haproxy/haproxy.cfg"

// HAProxyConfig is what RenderHAProxy needs to route clients of one cluster:
// a read-write port to the primary and a read-only port balanced over the
// replicas, each backend chosen by the pgherd agent's REST check.
type HAProxyConfig struct {
	// Cluster names the listen sections ("<cluster>_primary",
	// "<cluster>_replicas").
	Cluster string
	// PrimaryPort (default 5000) routes to the primary, ReplicaPort
	// (default 5001) to the replicas, StatsPort (default 7000) serves the
	// stats page.
	PrimaryPort, ReplicaPort, StatsPort int
	// Bind is "*" (the default: every address) or an address of the host,
	// typically the keepalived VIP; binding a VIP the host does not hold
	// needs the sysctl net.ipv4.ip_nonlocal_bind=1 (HAProxyResources sets
	// it).
	Bind string
	// APIPort is the agent's REST port checked on each member (default
	// 8008).
	APIPort int
	// Members are the database hosts, in a stable order.
	Members []Backend
	// Check tunes the health checks; zero fields take tight LAN defaults
	// (inter 1s, fall 2, rise 1, fastinter 500ms, downinter 100ms: a
	// member that becomes primary is found within a tenth of a second).
	Check HAProxyCheck
	// MaxConn is haproxy's global connection limit (default 1000).
	MaxConn int
	// CAFile, when set, makes the checks use HTTPS, verifying the agents'
	// certificates with this CA bundle.
	CAFile string
}

// Backend is one PostgreSQL member behind HAProxy.
type Backend struct {
	Name    string
	Address string // IP or host name
	PGPort  int    // default 5432
}

// HAProxyCheck tunes the agent checks of every backend server.
type HAProxyCheck struct {
	Inter, FastInter, DownInter time.Duration
	Fall, Rise                  int
}

var (
	haName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	haAddr = regexp.MustCompile(`^[A-Za-z0-9.:-]+$`)
)

func (c HAProxyConfig) withDefaults() HAProxyConfig {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.PrimaryPort, 5000)
	def(&c.ReplicaPort, 5001)
	def(&c.StatsPort, 7000)
	def(&c.APIPort, 8008)
	def(&c.MaxConn, 1000)
	def(&c.Check.Fall, 2)
	def(&c.Check.Rise, 1)
	defDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defDur(&c.Check.Inter, time.Second)
	defDur(&c.Check.FastInter, 500*time.Millisecond)
	defDur(&c.Check.DownInter, min(c.Check.Inter, 100*time.Millisecond))
	if c.Bind == "" {
		c.Bind = "*"
	}
	m := make([]Backend, len(c.Members))
	copy(m, c.Members)
	for i := range m {
		def(&m[i].PGPort, 5432)
	}
	c.Members = m
	return c
}

func validPort(p int) bool { return p > 0 && p < 65536 }

func (c HAProxyConfig) validate() error {
	if !haName.MatchString(c.Cluster) {
		return fmt.Errorf("haproxy: cluster name %q: want letters, digits, '_', '.', '-': %w", c.Cluster, ErrInvalid)
	}
	ports := map[int]string{}
	for _, p := range []struct {
		name string
		port int
	}{{"primary_port", c.PrimaryPort}, {"replica_port", c.ReplicaPort}, {"stats_port", c.StatsPort}} {
		if !validPort(p.port) {
			return fmt.Errorf("haproxy: %s %d out of range: %w", p.name, p.port, ErrInvalid)
		}
		if other, dup := ports[p.port]; dup {
			return fmt.Errorf("haproxy: %s and %s are both %d: %w", other, p.name, p.port, ErrInvalid)
		}
		ports[p.port] = p.name
	}
	if !validPort(c.APIPort) {
		return fmt.Errorf("haproxy: api port %d out of range: %w", c.APIPort, ErrInvalid)
	}
	if c.Bind != "*" && net.ParseIP(c.Bind) == nil {
		return fmt.Errorf("haproxy: bind %q: want \"*\" or an IP address: %w", c.Bind, ErrInvalid)
	}
	if c.CAFile != "" && (!strings.HasPrefix(c.CAFile, "/") || !haAddr.MatchString(strings.ReplaceAll(c.CAFile, "/", ""))) {
		return fmt.Errorf("haproxy: CA file %q: want an absolute path: %w", c.CAFile, ErrInvalid)
	}
	if len(c.Members) == 0 {
		return fmt.Errorf("haproxy: no members: %w", ErrInvalid)
	}
	seen := map[string]bool{}
	for _, m := range c.Members {
		if !haName.MatchString(m.Name) || seen[m.Name] {
			return fmt.Errorf("haproxy: member name %q invalid or repeated: %w", m.Name, ErrInvalid)
		}
		seen[m.Name] = true
		if !haAddr.MatchString(m.Address) || strings.HasPrefix(m.Address, "-") {
			return fmt.Errorf("haproxy: member %s: address %q: %w", m.Name, m.Address, ErrInvalid)
		}
		if !validPort(m.PGPort) {
			return fmt.Errorf("haproxy: member %s: port %d out of range: %w", m.Name, m.PGPort, ErrInvalid)
		}
	}
	ck := c.Check
	if ck.Fall < 1 || ck.Rise < 1 || c.MaxConn < 1 {
		return fmt.Errorf("haproxy: fall, rise and maxconn must be at least 1: %w", ErrInvalid)
	}
	for _, d := range []time.Duration{ck.Inter, ck.FastInter, ck.DownInter} {
		if d < time.Millisecond || d%time.Millisecond != 0 {
			return fmt.Errorf("haproxy: check interval %v: want a whole number of milliseconds: %w", d, ErrInvalid)
		}
	}
	return nil
}

// haDuration formats a duration in HAProxy's syntax: "1s", "500ms".
func haDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

// haHostPort joins an address and a port, bracketing IPv6 addresses.
func haHostPort(host string, port int) string {
	if host == "*" {
		return "*:" + strconv.Itoa(port)
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// RenderHAProxy renders haproxy.cfg for one cluster. Clients connect in TCP
// mode; each listen section checks every member with an HTTP GET on the
// agent's port (/primary or /replica) and expects 200, so exactly the
// members in that role receive traffic. Checks are tight (inter 1s, fall 2,
// rise 1 by default, a server down checked every 100 ms) and a server marked
// down has its sessions shut (on-marked-down shutdown-sessions), so clients
// of a demoted primary are cut at once instead of writing into a read-only
// server. A server that refuses a client's connection (a primary that has
// just stopped, or whose postgres is restarting) is marked down at once
// (observe layer4) and the client told at once (no retries: HAProxy waits
// a second before it retries a server), so its next attempt goes to the
// server that is up, or waits for the check that finds one.
// Client and server timeouts are long (30m) because PostgreSQL sessions
// idle legitimately.
func RenderHAProxy(cfg HAProxyConfig) (string, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return "", err
	}
	ck := c.Check
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Managed by pgherd: changes are overwritten.")
	w("global")
	w("    log /dev/log local0")
	w("    maxconn %d", c.MaxConn)
	w("    user haproxy")
	w("    group haproxy")
	w("    stats socket /run/haproxy/admin.sock mode 660 level admin")
	w("")
	w("defaults")
	w("    mode tcp")
	w("    log global")
	w("    option tcplog")
	w("    option dontlognull")
	w("    retries 0")
	w("    timeout connect 4s")
	w("    timeout client 30m")
	w("    timeout server 30m")
	w("    timeout check %s", haDuration(ck.Inter))
	w("")
	w("listen stats")
	w("    mode http")
	w("    bind %s", haHostPort(c.Bind, c.StatsPort))
	w("    stats enable")
	w("    stats uri /")
	w("    stats refresh 5s")
	for _, l := range []struct {
		suffix, path string
		port         int
	}{{"primary", "/primary", c.PrimaryPort}, {"replicas", "/replica", c.ReplicaPort}} {
		w("")
		w("listen %s_%s", c.Cluster, l.suffix)
		w("    bind %s", haHostPort(c.Bind, l.port))
		if l.suffix == "replicas" {
			w("    balance roundrobin")
		}
		w("    option httpchk GET %s", l.path)
		w("    http-check expect status 200")
		w("    default-server inter %s fastinter %s downinter %s fall %d rise %d on-marked-down shutdown-sessions observe layer4 error-limit 1 on-error mark-down",
			haDuration(ck.Inter), haDuration(ck.FastInter), haDuration(ck.DownInter), ck.Fall, ck.Rise)
		for _, m := range c.Members {
			line := fmt.Sprintf("    server %s %s check port %d", m.Name, haHostPort(m.Address, m.PGPort), c.APIPort)
			if c.CAFile != "" {
				line += " check-ssl verify required ca-file " + c.CAFile
			}
			w("%s", line)
		}
	}
	return b.String(), nil
}

// HAProxyResources are the resources of an HAProxy host, in order: the
// haproxy package, net.ipv4.ip_nonlocal_bind=1 when Bind is an address (so a
// keepalived backup can bind the VIP it does not hold yet), the
// configuration file, validated with `haproxy -c` on the host before it
// replaces /etc/haproxy/haproxy.cfg, and the haproxy service, enabled and
// running, reloaded (never restarted) when the configuration changes: a
// reload of Debian's haproxy.service starts new workers and lets the old
// ones finish their sessions, so connected clients are kept.
func HAProxyResources(cfg HAProxyConfig) ([]Resource, error) {
	content, err := RenderHAProxy(cfg)
	if err != nil {
		return nil, err
	}
	file := File{
		Path:       HAProxyConfigPath,
		Content:    content,
		Owner:      "root",
		Group:      "root",
		Mode:       "0644",
		Validate:   "haproxy -c -f %s",
		NotifyList: []string{"service.haproxy"},
	}
	rs := []Resource{Packages{Name: "haproxy", Packages: []Package{{Name: "haproxy"}}}}
	if b := cfg.withDefaults().Bind; b != "*" {
		key := "net.ipv4.ip_nonlocal_bind"
		if strings.Contains(b, ":") {
			key = "net.ipv6.ip_nonlocal_bind"
		}
		rs = append(rs, Sysctl{Key: key, Value: "1"})
	}
	return append(rs, file, Service{
		Name:    "haproxy",
		Enabled: new(true),
		State:   Running,
		Reload:  true,
		Watch:   []string{file.Address()},
	}), nil
}
