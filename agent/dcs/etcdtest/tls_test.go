package etcdtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgherd/pgherd/agent/dcs/etcdtest"
	"github.com/pgherd/pgherd/internal/tlstest"
)

// TestEtcdTLSFiles pins what pgherd's renewal relies on (modules.TLSRestart,
// docs/runbooks/tls.md) for the etcd it installs: a running member serves a
// renewed certificate on the next connection without a restart, but reads
// its CA bundle only when it starts, so that a client certificate of a CA
// added to the bundle is refused until the member restarts.
func TestEtcdTLSFiles(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "etcd test CA")
	f := ca.WriteFiles(t, dir, "etcd", []string{"localhost"}, "127.0.0.1")
	c := etcdtest.StartTLS(t, 1, etcdtest.TLS{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key})
	m := c.Members[0]
	u, err := url.Parse(m.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	client, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	// served is the serial of the certificate the member presents; err is
	// the handshake's (a refused client certificate shows on the first read).
	served := func(cert tls.Certificate) (*big.Int, error) {
		conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("GET /health HTTP/1.0\r\n\r\n")); err != nil {
			return nil, err
		}
		if _, err := conn.Read(make([]byte, 1)); err != nil {
			return nil, err
		}
		return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
	}
	before, err := served(client)
	if err != nil {
		t.Fatal(err)
	}

	certPEM, keyPEM := ca.Issue(t, "etcd", []string{"localhost"}, "127.0.0.1")
	replace(t, f.Key, keyPEM)
	replace(t, f.Cert, certPEM)
	after, err := served(client)
	if err != nil {
		t.Fatal(err)
	}
	if after.Cmp(before) == 0 {
		t.Fatalf("etcd still serves the certificate it started with (serial %s) after a renewal", before)
	}

	ca2 := tlstest.NewCA(t, "etcd test CA 2")
	replace(t, f.CA, append(ca2.CertPEM(), ca.CertPEM()...))
	cert2PEM, key2PEM := ca2.Issue(t, "client", nil, "127.0.0.1")
	client2, err := tls.X509KeyPair(cert2PEM, key2PEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := served(client2); err == nil {
		t.Fatalf("etcd took a client certificate of a CA added to its bundle without a restart: restarts on a new bundle are not needed")
	}
	m.Kill()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitHealthy(30e9); err != nil {
		t.Fatal(err)
	}
	if _, err := served(client2); err != nil {
		t.Fatalf("after a restart, etcd refuses a client certificate of a CA of its bundle: %v", err)
	}
}

func replace(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".new")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
