package compile

import (
	"slices"

	"github.com/pgherd/pgherd/agent/pg"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/spec"
)

// adoptResource is the migration of the running PostgreSQL on the host the
// spec adopts (postgres.adopt): its pre-flight checks and the move of its
// configuration, before anything else of the cluster is installed there.
func adoptResource(m *spec.Model, c *spec.Cluster, h spec.Host) (modules.Resource, error) {
	rules, err := hbaRules(m, c, c.TLS != nil)
	if err != nil {
		return nil, err
	}
	var replicas, proxies []string
	for _, hn := range c.Postgres.Hosts {
		if hn != h.Name {
			replicas = append(replicas, hn)
		}
	}
	if c.HAProxy != nil {
		proxies = c.HAProxy.Hosts
	}
	// The packages the spec installs on every PostgreSQL host: an
	// extension's package must be among them.
	var pkgs []string
	for _, p := range m.Packages {
		if p.State == spec.Absent {
			continue
		}
		if !slices.ContainsFunc(c.Postgres.Hosts, func(hn string) bool {
			return targets(p.Target, m.Hosts[slices.IndexFunc(m.Hosts, func(x spec.Host) bool { return x.Name == hn })])
		}) {
			continue
		}
		pkgs = append(pkgs, p.Name)
	}
	return modules.PostgresAdopt{
		Want: modules.AdoptWant{Major: c.Postgres.Version, DataDir: c.Postgres.DataDir, Port: c.Postgres.Port,
			Address: h.Address, HBA: rules, Packages: pkgs},
		Cluster: c.Name, Replicas: replicas, Proxies: proxies, IncludeLine: pg.IncludeLine,
	}, nil
}
