// Package tlstest makes certificate authorities and certificates for tests
// that run real TLS servers (etcd, PostgreSQL, the agent's API).
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgherd/pgherd/modules"
)

// CA is a self-signed ECDSA P-256 certificate authority, valid ten years.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: c, Key: k}
}

// CertPEM is the CA's certificate in PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM is the CA's private key in PEM (PKCS #8).
func (ca *CA) KeyPEM(t testing.TB) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
}

// Issue makes a key and a certificate for server and client use, as pgherd
// issues them for a host (modules.IssueCert).
func (ca *CA) Issue(t testing.TB, cn string, dns []string, ips ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	var addrs []net.IP
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			t.Fatalf("tlstest: %q is no IP address", s)
		}
		addrs = append(addrs, ip)
	}
	certPEM, keyPEM, err := modules.IssueCert(&modules.TLSIssuer{Cert: ca.Cert, Key: ca.Key}, cn, dns, addrs, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// Files are the paths of a CA bundle, a certificate and its key.
type Files struct {
	CA, Cert, Key string
}

// WriteFiles issues a certificate (see Issue) and writes it, its key (0600)
// and the CA's certificate into dir as ca.crt, <cn>.crt and <cn>.key.
func (ca *CA) WriteFiles(t testing.TB, dir, cn string, dns []string, ips ...string) Files {
	t.Helper()
	certPEM, keyPEM := ca.Issue(t, cn, dns, ips...)
	f := Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, cn+".crt"), Key: filepath.Join(dir, cn+".key")}
	for _, w := range []struct {
		path string
		b    []byte
		mode os.FileMode
	}{{f.CA, ca.CertPEM(), 0o644}, {f.Cert, certPEM, 0o644}, {f.Key, keyPEM, 0o600}} {
		if err := os.WriteFile(w.path, w.b, w.mode); err != nil {
			t.Fatal(err)
		}
	}
	return f
}
