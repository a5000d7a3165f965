// Package major holds pgherd's major-upgrade scenario (an e2e test in this
// directory, run with PGHERD_E2E=1): the specs of the two clusters of a
// blue/green upgrade from PostgreSQL 15 to 17, and how a bookworm host gets
// PostgreSQL 17 from trixie.
package major

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pgherd/pgherd/e2e/lab"
)

// The clusters' names and major versions.
const (
	OldName, OldVersion = "blue", 15
	NewName, NewVersion = "green", 17
)

// variables are the passwords both specs use (lab values).
const variables = `variable "pg_superuser_password" {
  type      = string
  sensitive = true
  default   = "lab-superuser-pw"
}

variable "pg_replication_password" {
  type      = string
  sensitive = true
  default   = "lab-replication-pw"
}

variable "app_password" {
  type      = string
  sensitive = true
  default   = "lab-app-pw"
}

variable "api_token" {
  type      = string
  sensitive = true
  default   = "lab-api-token"
}
`

// OldSpec is the old cluster, as examples/ha without its backups: PostgreSQL
// 15 on node1..node3 with wal_level = logical, etcd on the same hosts,
// HAProxy on node1 and node2 behind the VIP net.100, and an hba rule that
// lets the new cluster's primary (newAddr) log in as postgres to every
// database, for its subscriptions.
func OldSpec(net, newAddr string) string {
	return variables + fmt.Sprintf(`
variable "vrrp_password" {
  type      = string
  sensitive = true
  default   = "lab-vrrp"
}

cluster %[1]q {
  postgres {
    version              = %[2]d
    hosts                = ["node1", "node2", "node3"]
    superuser_password   = var.pg_superuser_password
    replication_password = var.pg_replication_password

    parameters = {
      wal_level = "logical"
    }

    hba {
      type     = "host"
      database = "all"
      user     = "postgres"
      address  = "%[3]s/32"
      method   = "scram-sha-256"
    }

    role "app" {
      password = var.app_password
    }

    database "app" {
      owner = "app"
    }
  }

  etcd {
    hosts              = ["node1", "node2", "node3"]
    heartbeat_interval = "50ms"
    election_timeout   = "500ms"
  }

  ha {
    synchronous_mode = "off"
    api_token        = var.api_token
  }

  haproxy {
    hosts        = ["node1", "node2"]
    primary_port = 5000
    replica_port = 5001
    stats_port   = 7000
  }

  keepalived {
    vip       = "%[4]s.100/24"
    interface = "eth0"
    router_id = 51
    password  = var.vrrp_password
  }
}
`, OldName, OldVersion, newAddr, net)
}

// NewSpec is the new cluster: PostgreSQL 17 on node4 alone, with its own
// etcd and HAProxy there, and the same roles and databases.
func NewSpec() string {
	return variables + fmt.Sprintf(`
cluster %[1]q {
  postgres {
    version              = %[2]d
    hosts                = ["node4"]
    superuser_password   = var.pg_superuser_password
    replication_password = var.pg_replication_password

    role "app" {
      password = var.app_password
    }

    database "app" {
      owner = "app"
    }
  }

  etcd {
    hosts = ["node4"]
  }

  ha {
    synchronous_mode = "off"
    api_token        = var.api_token
  }

  haproxy {
    hosts        = ["node4"]
    primary_port = 5000
    replica_port = 5001
    stats_port   = 7000
  }
}
`, NewName, NewVersion)
}

// TrixiePostgres is the shell script that installs PostgreSQL 17 from
// trixie on a bookworm host, as docs/runbooks/upgrade.md tells the
// operator to (pgherd adds no apt source): a trixie source pinned low, and
// no cluster created by the package (pgherd's agent creates the data
// directory).
const TrixiePostgres = `set -e
mkdir -p /etc/postgresql-common /etc/apt/preferences.d
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
echo 'deb http://deb.debian.org/debian trixie main' > /etc/apt/sources.list.d/trixie.list
printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/trixie
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t trixie postgresql-17 postgresql-client-17
`

// DSN is the multi-host connection string clients use across the switch:
// the old cluster's primary port on its VIP, then the new cluster's
// HAProxy, whichever is writable.
func DSN(net, newAddr string) string {
	return fmt.Sprintf("postgres://postgres:lab-superuser-pw@%s.100:5000,%s:5000/postgres?sslmode=disable&connect_timeout=2&target_session_attrs=read-write", net, newAddr)
}

// SSH is the ssh block and the host blocks of the named lab hosts
// (name → address, in order).
func SSH(keyFile, knownHosts string, hosts [][2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ssh {\n  user = \"root\"\n  private_key_file = %q\n  known_hosts_file = %q\n  use_agent = false\n  connect_timeout = \"3s\"\n}\n\n", keyFile, knownHosts)
	for _, h := range hosts {
		fmt.Fprintf(&b, "host %q {\n  address = %q\n}\n\n", h[0], h[1])
	}
	return b.String()
}

// WriteSpecs writes the old cluster's spec to dir/old (on the lab's first
// three hosts, VIP .100 on net) and the new one's to dir/new (on the
// fourth), each with the ssh and host blocks of its own hosts, and returns
// the new cluster's address.
func WriteSpecs(l *lab.Lab, net, dir string) (newAddr string, err error) {
	hosts := l.Hosts()
	var oldHosts [][2]string
	for _, h := range hosts[:3] {
		oldHosts = append(oldHosts, [2]string{h.Name, h.Address})
	}
	n := hosts[3]
	for sub, files := range map[string]map[string]string{
		"old": {"main.hcl": OldSpec(net, n.Address), "lab.hcl": SSH(l.KeyFile(), l.KnownHostsFile(), oldHosts)},
		"new": {"main.hcl": NewSpec(), "lab.hcl": SSH(l.KeyFile(), l.KnownHostsFile(), [][2]string{{n.Name, n.Address}})},
	} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return "", err
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, sub, name), []byte(content), 0o644); err != nil {
				return "", err
			}
		}
	}
	return n.Address, nil
}

// Psql runs a query as postgres on a lab host's server of the given
// major version and returns its unaligned output.
func Psql(ctx context.Context, l *lab.Lab, host string, version int, db, query string) (string, error) {
	out, err := l.Exec(ctx, host, "runuser", "-u", "postgres", "--",
		"/usr/lib/postgresql/"+strconv.Itoa(version)+"/bin/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
		"-h", "/var/run/postgresql", "-d", db, "-c", query)
	if err != nil {
		return "", fmt.Errorf("%s: %s: %w\n%s", host, query, err, out)
	}
	return strings.TrimSpace(out), nil
}
