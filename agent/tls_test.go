package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgherd/pgherd/internal/tlstest"
)

// TestAgentTLS runs three agents with TLS everywhere against real etcd and
// PostgreSQL: etcd only takes clients with a certificate of the CA, so
// that the cluster bootstrapping at all proves the DCS client's TLS; the
// API answers HTTPS only, with the member's certificate; the replicas
// stream over TLS (verify-full) and rejoin after a failover with pg_rewind
// over TLS; a renewed certificate is served without a restart.
func TestAgentTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "agent test CA")
	c := newTLSTestCluster(t, 3, ca)
	for _, n := range c.names {
		c.start(n)
	}
	leader := c.waitRoles(90 * time.Second)
	c.exec(leader, "CREATE TABLE t (id int primary key)")
	c.exec(leader, "INSERT INTO t SELECT generate_series(1, 100)")
	for _, r := range c.others(leader) {
		c.waitCount(r, 100)
	}
	c.waitSSLWalsenders(leader, 2)

	t.Run("the API over HTTPS only", func(t *testing.T) {
		m := c.members[leader]
		resp, err := c.httpClient().Get(c.apiURL(leader) + "/cluster")
		if err != nil {
			t.Fatalf("GET /cluster over https: %v", err)
		}
		var doc struct {
			Members []struct {
				Name   string `json:"name"`
				APIURL string `json:"api_url"`
			} `json:"members"`
		}
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /cluster: %d %v", resp.StatusCode, err)
		}
		if len(doc.Members) != 3 {
			t.Fatalf("/cluster has %d members, want 3", len(doc.Members))
		}
		for _, mb := range doc.Members {
			if !strings.HasPrefix(mb.APIURL, "https://") {
				t.Errorf("member %s publishes api_url %q, want https", mb.Name, mb.APIURL)
			}
		}
		// Plain HTTP gets no answer of the API.
		if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + m.cfg.API.Listen + "/cluster"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("plain http GET /cluster answered 200")
			}
		}
		// A client that does not trust the CA refuses the certificate.
		if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(c.apiURL(leader) + "/cluster"); err == nil {
			resp.Body.Close()
			t.Fatalf("a client without the CA accepted the API's certificate")
		}
	})

	t.Run("replication over verify-full", func(t *testing.T) {
		for _, r := range c.others(leader) {
			var ci string
			if err := c.conn(r).QueryRow(context.Background(), "SHOW primary_conninfo").Scan(&ci); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(ci, "sslmode='verify-full'") || !strings.Contains(ci, "sslrootcert='"+c.members[r].cfg.TLS.CAFile+"'") {
				t.Errorf("%s: primary_conninfo = %q, want sslmode=verify-full with the CA", r, ci)
			}
		}
	})

	t.Run("failover and rejoin over TLS", func(t *testing.T) {
		old := leader
		c.exec(old, "SELECT pg_switch_wal()")
		c.kill(old)
		leader = c.waitRoles(60 * time.Second)
		if leader == old {
			t.Fatalf("the lost primary is still leader")
		}
		c.exec(leader, "INSERT INTO t SELECT generate_series(101, 200)")
		c.start(old)
		if got := c.waitRoles(90 * time.Second); got != leader {
			t.Fatalf("leader changed to %s when the old primary came back", got)
		}
		c.waitCount(old, 200)
		c.waitSSLWalsenders(leader, 2)
	})

	t.Run("switchover through the HTTPS API", func(t *testing.T) {
		leader = c.switchover(leader)
		c.waitSSLWalsenders(leader, 2)
	})

	t.Run("a renewed certificate is used without a restart", func(t *testing.T) {
		name := c.others(leader)[0]
		m := c.members[name]
		oldAPI, oldPG := c.apiSerial(name), c.pgSerial(name)
		if oldAPI.Cmp(oldPG) != 0 {
			t.Fatalf("the API serves serial %s, PostgreSQL %s", oldAPI, oldPG)
		}
		certPEM, keyPEM := ca.Issue(t, "host", []string{name}, m.cfg.Address)
		replaceFile(t, m.cfg.TLS.KeyFile, keyPEM)
		replaceFile(t, m.cfg.TLS.CertFile, certPEM)
		if s := c.apiSerial(name); s.Cmp(oldAPI) == 0 {
			t.Fatalf("the API still serves the old certificate (serial %s)", s)
		}
		// pgherd apply reloads the agent (SIGHUP), which reloads PostgreSQL.
		cfg := *m.cfg
		m.agent.Reload(&cfg)
		deadline := time.Now().Add(20 * time.Second)
		for c.pgSerial(name).Cmp(oldPG) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("PostgreSQL still serves the old certificate after the agent's reload")
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The agent's etcd client presents the new certificate on its next
		// connection; the member keeps its lease and role meanwhile.
		c.exec(leader, "INSERT INTO t SELECT generate_series(201, 300)")
		c.waitCount(name, 300)
		if got := c.waitRoles(30 * time.Second); got != leader {
			t.Fatalf("leader changed to %s after a renewal", got)
		}
	})
}

// waitSSLWalsenders waits until the primary has n walsenders, every one
// over TLS (pg_stat_ssl).
func (c *testCluster) waitSSLWalsenders(name string, n int) {
	c.t.Helper()
	conn := c.conn(name)
	deadline := time.Now().Add(30 * time.Second)
	var ssl, all int
	for time.Now().Before(deadline) {
		err := conn.QueryRow(context.Background(),
			"SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)").Scan(&ssl, &all)
		if err != nil {
			c.t.Fatalf("%s: pg_stat_ssl: %v", name, err)
		}
		if all == n && ssl == n {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("%s: %d walsenders, %d over TLS; want %d over TLS", name, all, ssl, n)
}

// apiSerial is the serial number of the certificate the member's API
// presents to a new connection.
func (c *testCluster) apiSerial(name string) *big.Int {
	c.t.Helper()
	m := c.members[name]
	roots := x509.NewCertPool()
	roots.AddCert(c.ca.Cert)
	conn, err := tls.Dial("tcp", m.cfg.API.Listen, &tls.Config{RootCAs: roots, ServerName: m.cfg.Address, MinVersion: tls.VersionTLS12})
	if err != nil {
		c.t.Fatalf("%s: TLS to the API: %v", name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// pgSerial is the serial number of the certificate PostgreSQL presents to a
// new connection (verified with the CA and the member's address).
func (c *testCluster) pgSerial(name string) *big.Int {
	c.t.Helper()
	conn := c.conn(name)
	defer conn.Close(context.Background())
	tc, ok := conn.PgConn().Conn().(*tls.Conn)
	if !ok {
		c.t.Fatalf("%s: the connection to PostgreSQL is not TLS (%T)", name, conn.PgConn().Conn())
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber
}

// replaceFile writes b to path as pgherd does: a new file renamed over the
// old one, keeping its owner and mode.
func replaceFile(t *testing.T, path string, b []byte) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	if err := os.WriteFile(tmp, b, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if err := os.Chown(tmp, int(sys.Uid), int(sys.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
