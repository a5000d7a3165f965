package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
)

// Patroni's fastest allowed timings: the minimums its configuration
// validator accepts (ttl ≥ 20, loop_wait ≥ 1, retry_timeout ≥ 3).
const (
	patroniTTL          = 20
	patroniLoopWait     = 1
	patroniRetryTimeout = 3
	patroniDataDir      = "/var/lib/postgresql/15/patroni"
)

// installPatroni stops pgherd's agents (and with them PostgreSQL) on every
// host, installs Debian's patroni there and starts it with a fresh data
// directory, on the etcd pgherd set up; HAProxy and keepalived stay as they
// are. The cluster it bootstraps is left to waitSettled.
func (b *haBench) installPatroni(ctx context.Context) error {
	hosts := b.lab.Hosts()[:3] // node4 is examples/ha's backup repository
	var etcd []string
	for _, h := range hosts {
		etcd = append(etcd, h.Address+":2379")
	}
	errs := make([]error, len(hosts))
	versions := make([]string, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conf := patroniConfig(h.Name, h.Address, strings.Join(etcd, ","))
			script := strings.Join([]string{
				"set -e",
				"systemctl disable --now pgherd-agent.service",
				// The agent stops PostgreSQL on a clean exit; make sure.
				"runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D /var/lib/postgresql/15/main status >/dev/null && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D /var/lib/postgresql/15/main stop -m fast || true",
				"export DEBIAN_FRONTEND=noninteractive",
				"apt-get install -y -q patroni python3-etcd >/dev/null",
				"systemctl stop patroni.service || true",
				"mkdir -p /etc/patroni",
				"echo " + base64.StdEncoding.EncodeToString([]byte(conf)) + " | base64 -d > /etc/patroni/config.yml",
				"chown postgres:postgres /etc/patroni/config.yml && chmod 600 /etc/patroni/config.yml",
				"rm -rf " + patroniDataDir,
				"systemctl enable --now patroni.service",
				"patroni --version",
			}, "\n")
			out, err := b.lab.Exec(ctx, h.Name, "sh", "-c", script)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w\n%s", h.Name, err, out)
				return
			}
			versions[i] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "patroni"))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	b.patroniVersion = versions[0]
	return nil
}

// patroniConfig is one member's /etc/patroni/config.yml: the same
// PostgreSQL settings and passwords as examples/ha, checksums for
// pg_rewind, and Patroni's fastest allowed timings.
func patroniConfig(name, addr, etcdHosts string) string {
	return fmt.Sprintf(`scope: bench
namespace: /patroni/
name: %[1]s
restapi:
  listen: 0.0.0.0:8008
  connect_address: %[2]s:8008
etcd3:
  hosts: %[3]s
bootstrap:
  dcs:
    ttl: %[4]d
    loop_wait: %[5]d
    retry_timeout: %[6]d
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 200
        shared_buffers: 128MB
  initdb:
  - encoding: UTF8
  - data-checksums
postgresql:
  listen: 0.0.0.0:5432
  connect_address: %[2]s:5432
  data_dir: %[7]s
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: /var/lib/postgresql/.pgpass-patroni
  parameters:
    unix_socket_directories: /var/run/postgresql
  authentication:
    superuser:
      username: postgres
      password: %[8]s
    replication:
      username: replicator
      password: %[9]s
  pg_hba:
  - local all all peer
  - host all all 127.0.0.1/32 scram-sha-256
  - host all all %[10]s0/24 scram-sha-256
  - host replication replicator %[10]s0/24 scram-sha-256
`, name, addr, etcdHosts, patroniTTL, patroniLoopWait, patroniRetryTimeout, patroniDataDir, haSuperPW, haReplPW, haLabNet)
}
