package compile

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/spec"
)

// reloadAgent makes the agent (and through it PostgreSQL) read renewed
// TLS files; nothing when it does not run yet.
const reloadAgent = "if systemctl is-active -q " + modules.AgentUnit + "; then systemctl reload " + modules.AgentUnit + "; fi"

// clusterTLS is the cluster's TLS material, parsed once.
type clusterTLS struct {
	trust  []*x509.Certificate
	issuer *modules.TLSIssuer
	now    time.Time
}

// newClusterTLS parses the tls block (already checked by spec); nil
// without one.
func newClusterTLS(c *spec.Cluster, now time.Time) (*clusterTLS, error) {
	if c.TLS == nil {
		return nil, nil
	}
	trust, err := spec.ParseCertificates(c.TLS.CACert)
	if err != nil {
		return nil, fmt.Errorf("tls ca_cert: %w", err)
	}
	t := &clusterTLS{trust: trust, now: now}
	if c.TLS.CAKey != "" {
		key, err := spec.ParsePrivateKey(c.TLS.CAKey)
		if err != nil {
			return nil, fmt.Errorf("tls ca_key: %w", err)
		}
		i := slices.IndexFunc(trust, func(ca *x509.Certificate) bool { return spec.KeyMatches(ca, key) })
		if i < 0 {
			return nil, fmt.Errorf("tls ca_key matches no certificate of ca_cert")
		}
		t.issuer = &modules.TLSIssuer{Cert: trust[i], Key: key}
	}
	return t, nil
}

// agentFiles are the TLS files of the agent's configuration.
func (t *clusterTLS) agentFiles() agent.TLSFiles {
	if t == nil {
		return agent.TLSFiles{}
	}
	return agent.TLSFiles{CAFile: modules.TLSCAFile, CertFile: modules.TLSCertFile, KeyFile: modules.TLSKeyFile("postgres")}
}

// etcdTLS are the certificate paths of an etcd member.
func (t *clusterTLS) etcdTLS() modules.EtcdTLS {
	if t == nil {
		return modules.EtcdTLS{}
	}
	key := modules.TLSKeyFile("etcd")
	return modules.EtcdTLS{CertFile: modules.TLSCertFile, KeyFile: key, TrustedCAFile: modules.TLSCAFile, ClientCertAuth: true,
		PeerCertFile: modules.TLSCertFile, PeerKeyFile: key, PeerTrustedCAFile: modules.TLSCAFile}
}

// etcdClient are the files etcdctl authenticates with on an etcd host.
func (t *clusterTLS) etcdClient() modules.EtcdClientTLS {
	if t == nil {
		return modules.EtcdClientTLS{}
	}
	return modules.EtcdClientTLS{CACert: modules.TLSCAFile, Cert: modules.TLSCertFile, Key: modules.TLSKeyFile("etcd")}
}

// caFile is the CA bundle on the hosts, "" without TLS.
func (t *clusterTLS) caFile() string {
	if t == nil {
		return ""
	}
	return modules.TLSCAFile
}

// files is the TLS resource of host h: the bundle, and the certificate and
// a key per service user when the host runs etcd or PostgreSQL.
func (t *clusterTLS) files(c *spec.Cluster, h spec.Host) modules.TLSFiles {
	r := modules.TLSFiles{Host: h.Name, Trust: t.trust, Now: t.now}
	etcd, pg := slices.Contains(c.Etcd.Hosts, h.Name), slices.Contains(c.Postgres.Hosts, h.Name)
	if etcd {
		r.Keys = append(r.Keys, modules.TLSKey{Path: modules.TLSKeyFile("etcd"), Owner: "etcd", Group: "etcd"})
	}
	if pg {
		r.Keys = append(r.Keys, modules.TLSKey{Path: modules.TLSKeyFile("postgres"), Owner: "postgres", Group: "postgres"})
		r.After = []string{reloadAgent}
	}
	if !etcd && !pg {
		return r
	}
	if hc, ok := c.TLS.Hosts[h.Name]; ok {
		r.SuppliedCert, _ = spec.ParseCertificates(hc.Cert)
		r.SuppliedKey = hc.Key
		return r
	}
	r.Issuer = t.issuer
	r.DNSNames = []string{h.Name, "localhost"}
	r.IPs = []net.IP{net.ParseIP("127.0.0.1")}
	if ip := net.ParseIP(h.Address); ip != nil {
		if !ip.IsLoopback() {
			r.IPs = append(r.IPs, ip)
		}
	} else if h.Address != h.Name {
		r.DNSNames = append(r.DNSNames, h.Address)
	}
	// Clients reach PostgreSQL through the VIP (HAProxy passes TLS through
	// to whichever member serves): its certificate names the VIP too, for
	// sslmode=verify-full.
	if ka := c.Keepalived; pg && ka != nil {
		if p, err := netip.ParsePrefix(ka.VIP); err == nil {
			r.IPs = append(r.IPs, net.IP(p.Addr().AsSlice()))
		}
	}
	return r
}

// withTLS puts r right after the host's packages (the users that own the
// keys exist then) and before the services that read the files.
func withTLS(rs []modules.Resource, r modules.Resource) []modules.Resource {
	i := slices.IndexFunc(rs, func(x modules.Resource) bool { _, ok := x.(modules.Packages); return ok })
	return slices.Insert(rs, i+1, r)
}
