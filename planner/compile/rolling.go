package compile

import (
	"crypto/x509"
	"slices"

	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner/engine"
	"github.com/pgherd/pgherd/spec"
)

// rollingPhase is the rolling procedure of the HA cluster: one
// PostgresRoll per member, one member at a time, the replicas in the
// spec's order and the leader (when known) last, so that the leader
// switches over to a replica that already runs the new version. A member
// with nothing to do is a no-op; a fresh cluster has nothing to roll.
func rollingPhase(c *spec.Cluster, keep func(string) bool, leader string, address func(string) string, tlsCA []*x509.Certificate) engine.Phase {
	order := slices.Clone(c.Postgres.Hosts)
	if i := slices.Index(order, leader); i >= 0 {
		order = append(slices.Delete(order, i, i+1), leader)
	}
	p := engine.Phase{Name: "rolling", Serial: true}
	for _, hn := range order {
		if !keep(hn) {
			continue
		}
		p.Hosts = append(p.Hosts, engine.HostResources{Host: hn, Resources: []modules.Resource{modules.PostgresRoll{
			Member: hn, Members: c.Postgres.Hosts,
			Major: c.Postgres.Version, Version: c.Postgres.PackageVersion, Hold: c.Postgres.PackageVersion != "",
			Port: c.Postgres.Port, APIPort: c.HA.APIPort, Token: c.HA.APIToken, TLSCA: tlsCA, HostAddress: address(hn), SuperuserPassword: c.Postgres.SuperuserPassword,
			MaxLagBytes: c.Rolling.MaxLag, MaxTransactionAge: c.Rolling.MaxTransactionAge, Timeout: c.Rolling.Timeout,
			WatchList: []string{modules.PostgresParameters{Agent: true}.Address()},
		}}})
	}
	return p
}
