package compile

import (
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/spec"
)

// TestCompileTLS compiles testdata/tls (a tls block with ca_key, an
// HAProxy host without a database) and checks what TLS changes in the
// program.
func TestCompileTLS(t *testing.T) {
	key, err := os.ReadFile("../../spec/testdata/tls/ca.key")
	if err != nil {
		t.Fatal(err)
	}
	m, diags := spec.Load(spec.Input{Paths: []string{"testdata/tls"}, Environ: []string{"PGHERD_VAR_ca_key=" + string(key)}})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	prog, err := Compile(m, Options{AgentBinary: modules.AgentBinary{SHA256: "abc", GOARCH: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, p := range prog.Phases {
		for _, h := range p.Hosts {
			for i, r := range h.Resources {
				switch r := r.(type) {
				case modules.TLSFiles:
					found["tls"] = true
					// Clients verify PostgreSQL's certificate through the VIP.
					if slices.Contains(m.Cluster.Postgres.Hosts, h.Host) {
						found["vip"] = slices.ContainsFunc(r.IPs, func(ip net.IP) bool { return ip.String() == "10.0.0.100" })
					}
					if _, isPkg := h.Resources[i-1].(modules.Packages); !isPkg && len(r.Keys) > 0 {
						t.Errorf("%s on %s does not follow the packages", r.Address(), h.Host)
					}
				case modules.TLSRestart:
					found["restart"] = p.Serial
				case modules.File:
					if r.Path == modules.EtcdEnvPath {
						found["etcd"] = strings.Contains(r.Content, "ETCD_PEER_CLIENT_CERT_AUTH=true") && strings.Contains(r.Content, "ETCD_LISTEN_CLIENT_URLS=https://")
					}
					if r.Path == agent.ConfigPath {
						found["agent"] = strings.Contains(r.Content, `"cert_file": "/etc/ssl/pgherd/host.crt"`) && strings.Contains(r.Content, "https://")
					}
				case modules.Service:
					if r.Name == "haproxy" && h.Host == "lb" {
						found["haproxy"] = slices.Contains(r.Watch, "tls.lb")
					}
				case modules.PgHBA:
					found["hba"] = strings.Contains(r.Content, "hostssl") && !strings.Contains(r.Content, "\nhost ")
				case modules.EtcdMembership:
					found["etcdctl"] = r.TLS.Key == modules.TLSKeyFile("etcd")
				}
			}
		}
	}
	for _, k := range []string{"tls", "vip", "restart", "etcd", "agent", "hba", "etcdctl", "haproxy"} {
		if !found[k] {
			t.Errorf("%s: not as TLS wants it", k)
		}
	}
}
