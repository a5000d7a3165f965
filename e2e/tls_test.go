package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/e2e/lab"
	"github.com/pgherd/pgherd/internal/tlstest"
)

// tlsSpec is a cluster with TLS everywhere on three fresh hosts: etcd,
// PostgreSQL and the agents on all three, HAProxy and keepalived on the
// first two, with its own VIP and VRRP router id beside the HA tests'.
const tlsSpec = `
variable "ca_key" {
  sensitive = true
}

variable "superuser_password" {
  sensitive = true
  default   = %[3]q
}

variable "vrrp" {
  sensitive = true
  default   = "tls-vrrp"
}

variable "secret" {
  sensitive = true
  default   = "tls-secret"
}

cluster "tls" {
  postgres {
    version              = 15
    hosts                = [%[1]s]
    superuser_password   = var.superuser_password
    replication_password = var.secret
    parameters = {
      shared_buffers = "32MB"
    }
    hba {
      type     = "host"
      database = "all"
      user     = "all"
      address  = "%[5]s/24"
      method   = "scram-sha-256"
    }
  }
  etcd {
    hosts              = [%[1]s]
    heartbeat_interval = "50ms"
    election_timeout   = "500ms"
  }
  ha {
    api_token = var.secret
  }
  haproxy {
    hosts        = [%[2]s]
    primary_port = 5000
    replica_port = 5001
    stats_port   = 7000
  }
  keepalived {
    vip       = "%[4]s/24"
    interface = "eth0"
    router_id = 52
    password  = var.vrrp
  }
  tls {
    ca_cert = file("ca.crt")
    ca_key  = var.ca_key
  }
}
`

const tlsSuperuserPassword = "tls-superuser-pw"

// TestTLS applies a cluster with a tls block from bare hosts (three hosts
// the test adds to the lab: TLS cannot be turned on for the running HA
// cluster in one apply, docs/runbooks/tls.md) and checks that etcd answers
// only over https with the CA, that clients reach PostgreSQL through the
// VIP and HAProxy with sslmode=verify-full, that HAProxy's HTTPS checks
// route the primary and replica ports, that the agents' API is HTTPS only,
// that the replicas stream over TLS, that a second plan is empty, and that a
// host whose certificate is gone gets a new one with the cluster healthy
// and etcd not restarted.
func TestTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n := len(theLab.Hosts())
	l, err := lab.Up(ctx, lab.Config{Name: labName, Hosts: n + 3, Subnet: labNet + ".0/24", Dir: theLab.Dir(), Log: log})
	if err != nil {
		t.Fatalf("growing the lab by 3 hosts: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if _, err := lab.Up(ctx, lab.Config{Name: labName, Hosts: n, Subnet: labNet + ".0/24", Dir: theLab.Dir(), Log: log}); err != nil {
			t.Errorf("shrinking the lab back to %d hosts: %v", n, err)
		}
	})
	hosts := l.Hosts()[n:]
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, h := range hosts {
			out, _ := l.Exec(context.Background(), h.Name, "sh", "-c", "journalctl -u pgherd-agent -u etcd -o short-precise --no-pager | tail -n 80")
			t.Logf("%s: the agent's and etcd's journal:\n%s", h.Name, out)
		}
	})
	vip := labAddr(101)
	on := func(host, script string) string {
		t.Helper()
		out, err := l.Exec(ctx, host, "sh", "-c", script)
		if err != nil {
			t.Fatalf("%s: %s: %v\n%s", host, script, err, out)
		}
		return strings.TrimSpace(out)
	}

	ca := tlstest.NewCA(t, "pgherd e2e TLS CA")
	var names []string
	var hostBlocks strings.Builder
	for _, h := range hosts {
		names = append(names, fmt.Sprintf("%q", h.Name))
		fmt.Fprintf(&hostBlocks, "host %q {\n  address = %q\n}\n\n", h.Name, h.Address)
	}
	labHCL := fmt.Sprintf("ssh {\n  user = \"root\"\n  private_key_file = %q\n  known_hosts_file = %q\n  use_agent = false\n  connect_timeout = \"3s\"\n}\n\n%s",
		l.KeyFile(), l.KnownHostsFile(), hostBlocks.String())
	dir := writeSpec(t, map[string]string{
		"lab.hcl":  labHCL,
		"main.hcl": fmt.Sprintf(tlsSpec, strings.Join(names, ", "), strings.Join(names[:2], ", "), tlsSuperuserPassword, vip, labAddr(0)),
		"ca.crt":   string(ca.CertPEM()),
	})
	caFile := filepath.Join(dir, "ca.crt")
	t.Setenv("PGHERD_VAR_ca_key", string(ca.KeyPEM(t)))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	start := time.Now()
	if r := pgherd(t, dir, "apply", "-auto-approve", "."); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	t.Logf("TLS apply from bare hosts took %s", time.Since(start).Round(100*time.Millisecond))

	if r := pgherd(t, dir, "plan", "-detailed-exitcode", "."); r.code != 0 {
		t.Fatalf("second plan: want no changes and exit 0: %s", r)
	}

	var endpoints []string
	for _, h := range hosts {
		endpoints = append(endpoints, "https://"+net.JoinHostPort(h.Address, "2379"))
	}
	etcdctl := "ETCDCTL_API=3 etcdctl --cacert /etc/ssl/pgherd/ca.crt --cert /etc/ssl/pgherd/host.crt --key /etc/ssl/pgherd/etcd.key --endpoints " + strings.Join(endpoints, ",")
	etcdHealthy := func() {
		t.Helper()
		out := on(hosts[0].Name, etcdctl+" endpoint health 2>&1")
		if strings.Count(out, "is healthy") != len(hosts) {
			t.Fatalf("etcd endpoint health over https:\n%s", out)
		}
	}
	t.Run("etcd over https only, with client certificates", func(t *testing.T) {
		etcdHealthy()
		if out := on(hosts[0].Name, etcdctl+" member list -w simple"); strings.Count(out, "https://") < 2*len(hosts) {
			t.Fatalf("member list: want https peer and client URLs:\n%s", out)
		}
		plain := strings.Replace(endpoints[0], "https://", "http://", 1)
		if out, err := l.Exec(ctx, hosts[0].Name, "sh", "-c", "ETCDCTL_API=3 etcdctl --dial-timeout 2s --command-timeout 3s --endpoints "+plain+" endpoint health 2>&1"); err == nil {
			t.Fatalf("etcd answered plain http:\n%s", out)
		}
		noCert := "ETCDCTL_API=3 etcdctl --dial-timeout 2s --command-timeout 3s --cacert /etc/ssl/pgherd/ca.crt --endpoints " + endpoints[0] + " put /e2e x 2>&1"
		if out, err := l.Exec(ctx, hosts[0].Name, "sh", "-c", noCert); err == nil {
			t.Fatalf("etcd took a client without a certificate:\n%s", out)
		}
	})

	dsn := func(host string, port int) string {
		return fmt.Sprintf("postgres://postgres:%s@%s/postgres?sslmode=verify-full&sslrootcert=%s&connect_timeout=3",
			tlsSuperuserPassword, net.JoinHostPort(host, fmt.Sprint(port)), caFile)
	}
	connect := func(t *testing.T, host string, port int) *pgx.Conn {
		t.Helper()
		var last error
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			c, err := pgx.Connect(ctx, dsn(host, port))
			if err == nil {
				t.Cleanup(func() { c.Close(context.Background()) })
				return c
			}
			last = err
		}
		t.Fatalf("connecting to %s:%d with verify-full: %v", host, port, last)
		return nil
	}
	inRecovery := func(t *testing.T, c *pgx.Conn) bool {
		t.Helper()
		var rec bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	// writeAndRead writes a row through the VIP's primary port and waits
	// for it on the replica port, both with verify-full; it returns the
	// primary's address.
	writeAndRead := func(t *testing.T) string {
		t.Helper()
		w := connect(t, vip, 5000)
		if inRecovery(t, w) {
			t.Fatalf("the VIP's primary port reached a replica")
		}
		marker := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
		if _, err := w.Exec(ctx, "CREATE TABLE IF NOT EXISTS e2e_tls (v text PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Exec(ctx, "INSERT INTO e2e_tls VALUES ($1)", marker); err != nil {
			t.Fatal(err)
		}
		var primaryAddr string
		if err := w.QueryRow(ctx, "SELECT host(inet_server_addr())").Scan(&primaryAddr); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(300 * time.Millisecond) {
			r := connect(t, vip, 5001)
			var n int
			err := r.QueryRow(ctx, "SELECT count(*) FROM e2e_tls WHERE v = $1", marker).Scan(&n)
			if !inRecovery(t, r) {
				t.Fatalf("the VIP's replica port reached the primary")
			}
			r.Close(ctx)
			if err == nil && n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the row never showed through the replica port: %v", err)
			}
		}
		return primaryAddr
	}
	waitSSLWalsenders := func(t *testing.T, primary string, want int) {
		t.Helper()
		c := connect(t, primary, 5432)
		var ssl, all int
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			if err := c.QueryRow(ctx, "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)").Scan(&ssl, &all); err != nil {
				t.Fatal(err)
			}
			if ssl == want && all == want {
				return
			}
		}
		t.Fatalf("%s: %d walsenders, %d over TLS; want %d over TLS", primary, all, ssl, want)
	}

	var primary string
	t.Run("verify-full through the VIP, HAProxy routes, replication over TLS", func(t *testing.T) {
		primary = writeAndRead(t)
		waitSSLWalsenders(t, primary, len(hosts)-1)
		// No connection over the network without TLS: the spec's host
		// rule is hostssl.
		c, err := pgx.Connect(ctx, strings.Replace(dsn(primary, 5432), "sslmode=verify-full", "sslmode=disable", 1))
		if err == nil {
			c.Close(ctx)
			t.Fatalf("PostgreSQL took a connection without TLS")
		}
	})

	httpsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	t.Run("the agents' API over HTTPS only", func(t *testing.T) {
		for _, h := range hosts {
			resp, err := httpsClient.Get("https://" + net.JoinHostPort(h.Address, "8008") + "/cluster")
			if err != nil {
				t.Fatalf("%s: GET /cluster over https: %v", h.Name, err)
			}
			var doc struct {
				Members []struct{ Name, APIURL string } `json:"members"`
			}
			err = json.NewDecoder(resp.Body).Decode(&doc)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || len(doc.Members) != len(hosts) {
				t.Fatalf("%s: GET /cluster: %d, %v, %d members", h.Name, resp.StatusCode, err, len(doc.Members))
			}
			if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + net.JoinHostPort(h.Address, "8008") + "/cluster"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Fatalf("%s: the API answered plain http", h.Name)
				}
			}
		}
		if r := pgherd(t, dir, "status", "."); r.code != 0 {
			t.Fatalf("status: %s", r)
		}
	})

	t.Run("a host whose certificate is gone gets a new one", func(t *testing.T) {
		h := hosts[0]
		if h.Address == primary {
			h = hosts[1]
		}
		pid := func() string { return on(h.Name, "systemctl show -p MainPID --value etcd") }
		etcdPID := pid()
		pgBefore := pgSerial(ctx, t, dsn(h.Address, 5432))
		apiBefore := serial(t, ca, h.Address, 8008)
		etcdBefore := serial(t, ca, h.Address, 2379)
		on(h.Name, "rm /etc/ssl/pgherd/host.crt /etc/ssl/pgherd/host.keyid")
		if r := pgherd(t, dir, "plan", "-detailed-exitcode", "."); r.code != 2 || !strings.Contains(r.stdout, "tls."+h.Name) {
			t.Fatalf("plan: want tls.%s to change (exit 2): %s", h.Name, r)
		}
		if r := pgherd(t, dir, "apply", "-auto-approve", "."); r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
		if r := pgherd(t, dir, "plan", "-detailed-exitcode", "."); r.code != 0 {
			t.Fatalf("plan after the renewal: want no changes: %s", r)
		}
		for _, s := range []struct {
			what          string
			before, after *big.Int
		}{
			{"PostgreSQL", pgBefore, pgSerial(ctx, t, dsn(h.Address, 5432))},
			{"the agent's API", apiBefore, serial(t, ca, h.Address, 8008)},
			{"etcd", etcdBefore, serial(t, ca, h.Address, 2379)},
		} {
			if s.after.Cmp(s.before) == 0 {
				t.Errorf("%s on %s still serves the old certificate", s.what, h.Name)
			}
		}
		if got := pid(); got != etcdPID {
			t.Errorf("etcd on %s restarted (pid %s, was %s) for a renewed certificate it reads by itself", h.Name, got, etcdPID)
		}
		etcdHealthy()
		primary = writeAndRead(t)
		waitSSLWalsenders(t, primary, len(hosts)-1)
	})
}

// serial is the serial number of the certificate a server at addr:port
// presents, verified with the CA and addr; the test presents a certificate
// of the CA of its own (etcd wants one).
func serial(t *testing.T, ca *tlstest.CA, addr string, port int) *big.Int {
	t.Helper()
	certPEM, keyPEM := ca.Issue(t, "e2e client", nil)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: addr, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(addr, fmt.Sprint(port)), cfg)
	if err != nil {
		t.Fatalf("TLS to %s:%d: %v", addr, port, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// pgSerial is the serial number of the certificate PostgreSQL presents on
// a connection to dsn.
func pgSerial(ctx context.Context, t *testing.T, dsn string) *big.Int {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	tc, ok := c.PgConn().Conn().(*tls.Conn)
	if !ok {
		t.Fatalf("the connection to PostgreSQL is not TLS (%T)", c.PgConn().Conn())
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber
}
