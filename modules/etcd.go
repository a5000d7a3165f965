package modules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// EtcdEnvPath is the environment file Debian's etcd.service reads
// (EnvironmentFile=-/etc/default/etcd) at every start.
const EtcdEnvPath = "/etc/default/etcd"

// EtcdDefaultDataDir is pgherd's etcd data directory. It is deliberately not
// Debian's /var/lib/etcd/default: when etcd-server was installed (and started
// as a single-node "default" cluster) before pgherd wrote /etc/default/etcd,
// the next start with pgherd's file uses a fresh directory and bootstraps or
// joins the real cluster, and the default member's data is left alone,
// never wiped.
const EtcdDefaultDataDir = "/var/lib/etcd/pgherd"

// EtcdPeer is one member of an etcd cluster.
type EtcdPeer struct {
	Name string `json:"name"`
	// PeerURL is the member's advertised peer URL,
	// "http://10.77.0.11:2380" (see EtcdPeerURL).
	PeerURL string `json:"peer_url"`
}

// EtcdPeerURL is the peer URL of a member at address: https when peer TLS is
// on.
func EtcdPeerURL(address string, port int, tls bool) string {
	return etcdURL(address, port, tls)
}

func etcdURL(host string, port int, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// EtcdTLS are the certificate paths of one etcd member. Client TLS is on
// when CertFile is set, peer TLS when PeerCertFile is set.
type EtcdTLS struct {
	CertFile, KeyFile, TrustedCAFile             string
	ClientCertAuth                               bool
	PeerCertFile, PeerKeyFile, PeerTrustedCAFile string
}

// EtcdConfig is one etcd member's configuration, rendered into Debian's
// /etc/default/etcd.
type EtcdConfig struct {
	Name string
	// Address is the IP (or name) peers and clients reach this member at.
	// An IP is listened on, with 127.0.0.1 for local clients; for a name
	// etcd listens on every address.
	Address string
	// ClientPort (default 2379) and PeerPort (default 2380).
	ClientPort, PeerPort int
	// DataDir defaults to EtcdDefaultDataDir.
	DataDir string
	// Members is the initial cluster, this member included.
	Members []EtcdPeer
	// ClusterState is "new" (default) when bootstrapping all members
	// together, "existing" for a member added to a running cluster (after
	// EtcdMembership added it).
	ClusterState string
	// Token is the initial cluster token, unique per cluster.
	Token string
	// Heartbeat and ElectionTimeout default to 50ms and 500ms: tuned for
	// a LAN, they roughly halve how long a lost etcd leader delays the
	// expiry of the HA leader lease (LAB.md: TTL 2 s failover 6.3 s with
	// etcd's 100/1000 ms, 3.4 s with 50/500 ms). The election timeout
	// must be at least 5 heartbeats.
	Heartbeat, ElectionTimeout time.Duration
	TLS                        EtcdTLS
}

var (
	etcdName  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	etcdValue = regexp.MustCompile(`^[A-Za-z0-9_./:=,@%+\[\]-]+$`) // safe unquoted in an EnvironmentFile
)

func (c EtcdConfig) withDefaults() EtcdConfig {
	if c.ClientPort == 0 {
		c.ClientPort = 2379
	}
	if c.PeerPort == 0 {
		c.PeerPort = 2380
	}
	if c.DataDir == "" {
		c.DataDir = EtcdDefaultDataDir
	}
	if c.ClusterState == "" {
		c.ClusterState = "new"
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 50 * time.Millisecond
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = 500 * time.Millisecond
	}
	return c
}

// Validate reports, wrapping ErrInvalid, what makes the configuration
// unusable.
func (c EtcdConfig) Validate() error {
	c = c.withDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("etcd: "+format+": %w", append(args, ErrInvalid)...)
	}
	if !etcdName.MatchString(c.Name) {
		return bad("member name %q", c.Name)
	}
	if !etcdValue.MatchString(c.Address) || strings.ContainsAny(c.Address, "/,=") {
		return bad("address %q", c.Address)
	}
	if !validPort(c.ClientPort) || !validPort(c.PeerPort) || c.ClientPort == c.PeerPort {
		return bad("ports %d and %d: want two distinct ports", c.ClientPort, c.PeerPort)
	}
	if !strings.HasPrefix(c.DataDir, "/") || !etcdValue.MatchString(c.DataDir) {
		return bad("data dir %q: want an absolute path", c.DataDir)
	}
	if c.ClusterState != "new" && c.ClusterState != "existing" {
		return bad("cluster state %q: want new or existing", c.ClusterState)
	}
	if !etcdValue.MatchString(c.Token) {
		return bad("cluster token %q: want letters, digits, '-', '_', '.'", c.Token)
	}
	if c.Heartbeat < time.Millisecond || c.ElectionTimeout < 5*c.Heartbeat || c.ElectionTimeout > 50*time.Second ||
		c.Heartbeat%time.Millisecond != 0 || c.ElectionTimeout%time.Millisecond != 0 {
		return bad("heartbeat %v, election timeout %v: want whole milliseconds, election at least 5 heartbeats and at most 50s", c.Heartbeat, c.ElectionTimeout)
	}
	if err := validPeers(c.Members); err != nil {
		return err
	}
	self := EtcdPeerURL(c.Address, c.PeerPort, c.TLS.PeerCertFile != "")
	if !slices.Contains(c.Members, EtcdPeer{Name: c.Name, PeerURL: self}) {
		return bad("members do not include this member %s=%s", c.Name, self)
	}
	t := c.TLS
	for _, p := range []string{t.CertFile, t.KeyFile, t.TrustedCAFile, t.PeerCertFile, t.PeerKeyFile, t.PeerTrustedCAFile} {
		if p != "" && (!strings.HasPrefix(p, "/") || !etcdValue.MatchString(p)) {
			return bad("certificate path %q: want an absolute path", p)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") || (t.PeerCertFile == "") != (t.PeerKeyFile == "") {
		return bad("a certificate needs its key and a key its certificate")
	}
	return nil
}

func validPeers(peers []EtcdPeer) error {
	if len(peers) == 0 {
		return fmt.Errorf("etcd: no members: %w", ErrInvalid)
	}
	names, urls := map[string]bool{}, map[string]bool{}
	for _, p := range peers {
		if !etcdName.MatchString(p.Name) || names[p.Name] {
			return fmt.Errorf("etcd: member name %q invalid or repeated: %w", p.Name, ErrInvalid)
		}
		u, err := url.Parse(p.PeerURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Path != "" ||
			!etcdValue.MatchString(p.PeerURL) || urls[p.PeerURL] {
			return fmt.Errorf("etcd: member %s: peer URL %q: want http(s)://host:port, once: %w", p.Name, p.PeerURL, ErrInvalid)
		}
		names[p.Name], urls[p.PeerURL] = true, true
	}
	return nil
}

// RenderEtcdEnv renders /etc/default/etcd for one member. It does not
// validate: call Validate first (EtcdResources does).
func RenderEtcdEnv(cfg EtcdConfig) string {
	c := cfg.withDefaults()
	clientTLS, peerTLS := c.TLS.CertFile != "", c.TLS.PeerCertFile != ""
	listenHost := c.Address
	if net.ParseIP(c.Address) == nil {
		listenHost = "0.0.0.0"
	}
	listenClient := []string{etcdURL(listenHost, c.ClientPort, clientTLS)}
	if ip := net.ParseIP(listenHost); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		listenClient = append(listenClient, etcdURL("127.0.0.1", c.ClientPort, clientTLS))
	}
	initial := make([]string, len(c.Members))
	for i, m := range c.Members {
		initial[i] = m.Name + "=" + m.PeerURL
	}
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, v) }
	b.WriteString("# Managed by pgherd: changes are overwritten.\n")
	b.WriteString("# Read by etcd.service; the initial-cluster settings only matter when the data dir is empty.\n")
	kv("ETCD_NAME", c.Name)
	kv("ETCD_DATA_DIR", c.DataDir)
	kv("ETCD_LISTEN_PEER_URLS", etcdURL(listenHost, c.PeerPort, peerTLS))
	kv("ETCD_LISTEN_CLIENT_URLS", strings.Join(listenClient, ","))
	kv("ETCD_ADVERTISE_CLIENT_URLS", etcdURL(c.Address, c.ClientPort, clientTLS))
	kv("ETCD_INITIAL_ADVERTISE_PEER_URLS", EtcdPeerURL(c.Address, c.PeerPort, peerTLS))
	kv("ETCD_INITIAL_CLUSTER", strings.Join(initial, ","))
	kv("ETCD_INITIAL_CLUSTER_STATE", c.ClusterState)
	kv("ETCD_INITIAL_CLUSTER_TOKEN", c.Token)
	kv("ETCD_HEARTBEAT_INTERVAL", strconv.FormatInt(c.Heartbeat.Milliseconds(), 10))
	kv("ETCD_ELECTION_TIMEOUT", strconv.FormatInt(c.ElectionTimeout.Milliseconds(), 10))
	// Pre-vote (the default from etcd 3.5, off in Debian's 3.4): a member
	// coming back from a partition or a freeze, whose election timer ran
	// out meanwhile, asks before it campaigns, instead of forcing an
	// election that leaves etcd without a leader for a while, long enough
	// to cost the PostgreSQL primary its lease.
	kv("ETCD_PRE_VOTE", "true")
	t := c.TLS
	if clientTLS {
		kv("ETCD_CERT_FILE", t.CertFile)
		kv("ETCD_KEY_FILE", t.KeyFile)
		if t.TrustedCAFile != "" {
			kv("ETCD_TRUSTED_CA_FILE", t.TrustedCAFile)
		}
		if t.ClientCertAuth {
			kv("ETCD_CLIENT_CERT_AUTH", "true")
		}
	}
	if peerTLS {
		kv("ETCD_PEER_CERT_FILE", t.PeerCertFile)
		kv("ETCD_PEER_KEY_FILE", t.PeerKeyFile)
		if t.PeerTrustedCAFile != "" {
			kv("ETCD_PEER_TRUSTED_CA_FILE", t.PeerTrustedCAFile)
			kv("ETCD_PEER_CLIENT_CERT_AUTH", "true")
		}
	}
	return b.String()
}

// EtcdResources are the resources of one etcd host, in order:
//
//  1. /etc/default/etcd, written BEFORE the package is installed. Debian's
//     postinst starts etcd at once, and etcd.service reads this file at
//     every start, so the very first start already uses pgherd's member
//     name, data dir and initial cluster: no single-node "default" cluster
//     is created, and nothing has to be wiped. (dpkg keeps the file: it is
//     not a conffile the package overwrites, and apt runs with confold.)
//     Were etcd already installed and running as Debian's default member,
//     the change of the file restarts it on EtcdDefaultDataDir, a fresh
//     directory; /var/lib/etcd/default is left as it was.
//  2. without TLS, the member's own membership (EtcdMember): a host added
//     to a running cluster, or a member removed from it, joins it through
//     the membership API before etcd first starts on the steady file.
//  3. the packages etcd-server and etcd-client (etcdctl, for
//     EtcdMembership).
//  4. the data directory, etcd:etcd 0700.
//  5. the etcd service, enabled and running, restarted when the file
//     changes (etcd has no reload).
//
// With ClusterState "new", etcd.service (Type=notify) reports started
// only once a quorum of the initial members is up: the engine must apply
// the etcd hosts of a new cluster in parallel, or the first host's start
// waits for the others until systemd's start timeout. A change of the file
// on a running cluster restarts each member: apply etcd hosts one at a time
// then, so that a quorum stays up.
func EtcdResources(cfg EtcdConfig) ([]Resource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	file := File{Path: EtcdEnvPath, Content: RenderEtcdEnv(c), Owner: "root", Group: "root", Mode: "0644",
		NotifyList: []string{"service.etcd"}}
	pkgs := []Package{{Name: "etcd-server"}, {Name: "etcd-client"}}
	join := EtcdMember{Config: c, Packages: []string{pkgs[0].Name, pkgs[1].Name}}
	self := EtcdPeerURL(c.Address, c.PeerPort, c.TLS.PeerCertFile != "")
	for _, p := range c.Members {
		if u, err := url.Parse(p.PeerURL); err == nil && p.PeerURL != self {
			join.Peers = append(join.Peers, net.JoinHostPort(u.Hostname(), strconv.Itoa(c.ClientPort)))
		}
	}
	rs := []Resource{file}
	if c.TLS.CertFile == "" && c.TLS.PeerCertFile == "" {
		rs = append(rs, join)
	}
	return append(rs,
		Packages{Name: "etcd", Packages: pkgs},
		Directory{Path: c.DataDir, Owner: "etcd", Group: "etcd", Mode: "0700"},
		Service{Name: "etcd", Enabled: new(true), State: Running, Watch: []string{file.Address()}},
	), nil
}

// EtcdClientTLS are the files etcdctl authenticates with.
type EtcdClientTLS struct {
	CACert, Cert, Key string
}

// EtcdMembership is the member list of a running etcd cluster, converged
// through the membership API from a host that runs etcdctl (one existing
// member). Its address is "etcd_membership.<cluster>". Members are matched
// by peer URL; a member added but not started yet has no name and counts as
// present but unhealthy.
//
// The probe runs `etcdctl member list -w json`, then
// `etcdctl endpoint health --cluster -w json` (a member is healthy when one
// of its client URLs answers). Steps, in order:
//
//   - `etcdctl member remove <id>` for each member not in the spec,
//     unhealthy ones first. A removal is refused (the change stays in the
//     plan, without a step, saying why) when the healthy members left
//     would be fewer than the quorum of the members left: removing healthy
//     members of a degraded cluster could make it lose quorum for good.
//   - `etcdctl member add <name> --peer-urls=<url>` for ONE missing
//     member. etcd refuses a second add while a member is unstarted, and
//     an added member counts towards the quorum at once: the new member
//     must then start on its host with ClusterState "existing" (its
//     /etc/default/etcd lists the current members and itself) before the
//     next apply adds another. An add is refused when the healthy members
//     would not make a quorum of the grown cluster (except when growing
//     from one member, where etcd cannot do otherwise: the impact says the
//     cluster is unavailable until the new member starts).
//
// pgherd never wipes a member's data to change membership.
type EtcdMembership struct {
	Cluster string `json:"cluster"`
	// Endpoints are client URLs of running members ("http://127.0.0.1:2379").
	Endpoints []string      `json:"endpoints"`
	Members   []EtcdPeer    `json:"members"`
	TLS       EtcdClientTLS `json:"tls,omitzero"`
	// JoinOnHosts leaves missing members to their own hosts (EtcdMember,
	// which adds the member and starts it in one go): this resource then
	// only removes.
	JoinOnHosts bool `json:"join_on_hosts,omitempty"`
}

// Address implements Resource.
func (m EtcdMembership) Address() string { return "etcd_membership." + m.Cluster }

func (m EtcdMembership) valid() error {
	if !etcdName.MatchString(m.Cluster) {
		return fmt.Errorf("%s: cluster name %q: %w", m.Address(), m.Cluster, ErrInvalid)
	}
	if len(m.Endpoints) == 0 {
		return fmt.Errorf("%s: no endpoints: %w", m.Address(), ErrInvalid)
	}
	for _, e := range m.Endpoints {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || !etcdValue.MatchString(e) {
			return fmt.Errorf("%s: endpoint %q: want http(s)://host:port: %w", m.Address(), e, ErrInvalid)
		}
	}
	for _, p := range []string{m.TLS.CACert, m.TLS.Cert, m.TLS.Key} {
		if p != "" && !strings.HasPrefix(p, "/") {
			return fmt.Errorf("%s: certificate path %q: want an absolute path: %w", m.Address(), p, ErrInvalid)
		}
	}
	return validPeers(m.Members)
}

// etcdctl is the command line prefix every probe and step uses.
func (m EtcdMembership) etcdctl(args ...string) string {
	words := []string{"env", "ETCDCTL_API=3", "etcdctl", "--endpoints=" + strings.Join(m.Endpoints, ","),
		"--dial-timeout=2s", "--command-timeout=5s"}
	if m.TLS.CACert != "" {
		words = append(words, "--cacert="+m.TLS.CACert)
	}
	if m.TLS.Cert != "" {
		words = append(words, "--cert="+m.TLS.Cert, "--key="+m.TLS.Key)
	}
	return executors.Join(append(words, args...)...)
}

const etcdHealthMarker = "#health"

// etcdNotRunning is what the probe prints before etcd runs on the host.
const etcdNotRunning = "#not-running"

// Probe implements Resource. It fails when the member list cannot be read;
// an unhealthy cluster is a fact.
func (m EtcdMembership) Probe() string {
	if m.valid() != nil {
		return invalidProbe
	}
	// Before etcd runs here (a first apply), the initial cluster settings
	// make the membership: there is nothing to compare yet. A member that
	// is down shows as a stopped etcd service.
	return "command -v etcdctl >/dev/null || { echo '" + etcdNotRunning + "'; exit 0; }\n" +
		"m=$(" + m.etcdctl("member", "list", "-w", "json") + ") || { echo '" + etcdNotRunning + "'; exit 0; }\n" +
		"printf '%s\\n' \"$m\"\necho '" + etcdHealthMarker + "'\n" +
		m.etcdctl("endpoint", "health", "--cluster", "-w", "json") + " 2>/dev/null\nexit 0\n"
}

type etcdMember struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
	healthy    bool
}

type etcdHealth struct {
	Endpoint string `json:"endpoint"`
	Health   bool   `json:"health"`
}

func parseEtcdFact(addr string, f Fact) ([]etcdMember, error) {
	if f.ExitCode != 0 {
		return nil, probeFailed(addr, f)
	}
	list, health, _ := bytes.Cut(f.Stdout, []byte("\n"+etcdHealthMarker+"\n"))
	var ml struct {
		Members []etcdMember `json:"members"`
	}
	if err := json.Unmarshal(list, &ml); err != nil {
		return nil, fmt.Errorf("%s: member list: %v: %w", addr, err, ErrProbe)
	}
	var hs []etcdHealth
	// No or broken health output: every member counts as unhealthy, which
	// only makes the quorum checks stricter.
	_ = json.Unmarshal(bytes.TrimSpace(health), &hs)
	up := map[string]bool{}
	for _, h := range hs {
		up[h.Endpoint] = up[h.Endpoint] || h.Health
	}
	for i := range ml.Members {
		for _, u := range ml.Members[i].ClientURLs {
			ml.Members[i].healthy = ml.Members[i].healthy || up[u]
		}
	}
	return ml.Members, nil
}

func quorum(n int) int { return n/2 + 1 }

// Diff implements Resource.
func (m EtcdMembership) Diff(f Fact) (planner.Change, []Step, error) {
	addr := m.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if err := m.valid(); err != nil {
		return ch, nil, err
	}
	if strings.TrimSpace(string(f.Stdout)) == etcdNotRunning {
		return ch, nil, nil
	}
	live, err := parseEtcdFact(addr, f)
	if err != nil {
		return ch, nil, err
	}
	wantByURL := map[string]EtcdPeer{}
	for _, p := range m.Members {
		wantByURL[p.PeerURL] = p
	}
	present := map[string]bool{} // wanted peer URLs found live
	var extra []etcdMember
	n, healthy := len(live), 0
	var unstarted []string
	for _, lm := range live {
		if lm.healthy {
			healthy++
		}
		matched := false
		for _, u := range lm.PeerURLs {
			if p, ok := wantByURL[u]; ok {
				if lm.Name != "" && lm.Name != p.Name {
					return ch, nil, fmt.Errorf("%s: peer URL %s belongs to member %q, the spec names it %q: %w", addr, u, lm.Name, p.Name, ErrConflict)
				}
				present[u], matched = true, true
			}
		}
		if lm.Name == "" && matched {
			unstarted = append(unstarted, strings.Join(lm.PeerURLs, ","))
		}
		if !matched {
			extra = append(extra, lm)
		}
	}
	// Unhealthy members go first: removing them never costs quorum.
	slices.SortStableFunc(extra, func(a, b etcdMember) int {
		switch {
		case a.healthy == b.healthy:
			return 0
		case !a.healthy:
			return -1
		}
		return 1
	})

	var steps []Step
	var reasons, impacts []string
	for _, lm := range extra {
		name := orDefault(lm.Name, "(unstarted)")
		id := strconv.FormatUint(lm.ID, 16)
		attr := planner.Attr{Name: "member " + name, Before: strings.Join(lm.PeerURLs, ","), After: "(removed)"}
		left, leftHealthy := n-1, healthy
		if lm.healthy {
			leftHealthy--
		}
		if healthy < quorum(n) {
			attr.After = "(removal refused)"
			ch.Attrs = append(ch.Attrs, attr)
			reasons = append(reasons, fmt.Sprintf("refused to remove %s: the cluster has lost quorum (%d healthy of %d members) and etcd cannot change membership without one; restart members, or recover by hand (etcd --force-new-cluster)",
				name, healthy, n))
			continue
		}
		if left < 1 || leftHealthy < quorum(left) {
			attr.After = "(removal refused)"
			ch.Attrs = append(ch.Attrs, attr)
			reasons = append(reasons, fmt.Sprintf("refused to remove %s: %d healthy of %d members would be left, below the quorum of %d; bring members back first",
				name, leftHealthy, left, max(quorum(left), 1)))
			continue
		}
		n, healthy = left, leftHealthy
		ch.Attrs = append(ch.Attrs, attr)
		reasons = append(reasons, "member "+name+" not in spec")
		steps = append(steps, Step{Desc: "etcdctl member remove " + id + " (" + name + ")", Cmd: m.etcdctl("member", "remove", id)})
	}

	var missing []EtcdPeer
	for _, p := range m.Members {
		if !present[p.PeerURL] && !m.JoinOnHosts {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		p := missing[0]
		attr := planner.Attr{Name: "member " + p.Name, After: p.PeerURL}
		switch {
		case len(unstarted) > 0:
			attr.After += " (waiting)"
			reasons = append(reasons, fmt.Sprintf("%d member(s) to add once the added member %s has started", len(missing), strings.Join(unstarted, " ")))
		case n > 1 && healthy < quorum(n+1):
			attr.After += " (add refused)"
			reasons = append(reasons, fmt.Sprintf("refused to add %s: %d healthy of %d members cannot make the quorum of %d that %d members need; bring members back first",
				p.Name, healthy, n, quorum(n+1), n+1))
		default:
			reasons = append(reasons, "member "+p.Name+" not in cluster")
			if len(missing) > 1 {
				reasons = append(reasons, fmt.Sprintf("%d more to add, one per apply, each after the previous has started", len(missing)-1))
			}
			if healthy < quorum(n+1) {
				impacts = append(impacts, "cluster unavailable until "+p.Name+" starts")
			} else {
				impacts = append(impacts, p.Name+" must start with initial-cluster-state existing")
			}
			steps = append(steps, Step{Desc: "etcdctl member add " + p.Name + " --peer-urls=" + p.PeerURL,
				Cmd: m.etcdctl("member", "add", p.Name, "--peer-urls="+p.PeerURL)})
		}
		ch.Attrs = append(ch.Attrs, attr)
	}
	if len(ch.Attrs) == 0 {
		return ch, nil, nil
	}
	ch.Action = planner.Update
	ch.Reason = strings.Join(reasons, "; ")
	ch.Impact = strings.Join(impacts, "; ")
	return ch, steps, nil
}
