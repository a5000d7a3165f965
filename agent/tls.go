package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
)

// TLSFiles are the CA bundle, the certificate and the key the agent (and
// PostgreSQL) use. Zero: no TLS.
type TLSFiles struct {
	CAFile   string `json:"ca_file"`
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// On reports whether TLS is configured.
func (t TLSFiles) On() bool { return t.CertFile != "" }

func (t TLSFiles) scheme() string {
	if t.On() {
		return "https"
	}
	return "http"
}

// postgresParameters are the server parameters that turn ssl on.
func (t TLSFiles) postgresParameters() map[string]string {
	if !t.On() {
		return nil
	}
	return map[string]string{"ssl": "on", "ssl_cert_file": t.CertFile, "ssl_key_file": t.KeyFile, "ssl_ca_file": t.CAFile}
}

func (t TLSFiles) check() error {
	if t == (TLSFiles{}) {
		return nil
	}
	if t.CAFile == "" || t.CertFile == "" || t.KeyFile == "" {
		return errors.New("tls needs ca_file, cert_file and key_file")
	}
	return nil
}

// Server is the API's TLS configuration, nil without TLS. The certificate
// is read again when its files change.
func (t TLSFiles) Server() *tls.Config {
	if !t.On() {
		return nil
	}
	r := &tlsReloader{files: t}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		m, err := r.get()
		if err != nil {
			return nil, err
		}
		return m.cert, nil
	}}
}

// Client is the TLS configuration of a client (etcd): it verifies the
// server against the CA bundle and presents this host's certificate; both
// are read again when their files change. Nil without TLS.
func (t TLSFiles) Client() *tls.Config {
	if !t.On() {
		return nil
	}
	r := &tlsReloader{files: t}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			m, err := r.get()
			if err != nil {
				return nil, err
			}
			return m.cert, nil
		},
		// The roots change with the bundle on disk: verified below instead
		// of with a fixed RootCAs.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			m, err := r.get()
			if err != nil {
				return err
			}
			return verifyPeer(cs, m.roots)
		},
	}
}

func verifyPeer(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: roots, Intermediates: inter})
	return err
}

// tlsMaterial is what the files held when last read.
type tlsMaterial struct {
	cert  *tls.Certificate
	roots *x509.CertPool
	stamp string
}

// tlsReloader reads the files again when their size or modification time
// changed (pgherd writes them whole, atomically).
type tlsReloader struct {
	files TLSFiles
	mu    sync.Mutex
	cur   *tlsMaterial
}

func (r *tlsReloader) get() (*tlsMaterial, error) {
	stamp := ""
	for _, p := range []string{r.files.CAFile, r.files.CertFile, r.files.KeyFile} {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		stamp += fmt.Sprintf("%s:%d:%d;", p, st.Size(), st.ModTime().UnixNano())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil && r.cur.stamp == stamp {
		return r.cur, nil
	}
	cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	ca, err := os.ReadFile(r.files.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("tls: no certificate in %s", r.files.CAFile)
	}
	r.cur = &tlsMaterial{cert: &cert, roots: roots, stamp: stamp}
	return r.cur, nil
}

// HTTPClientTLS is a fixed TLS configuration for a short-lived HTTPS
// client that verifies the server with the CA bundle at caFile and expects
// serverName in its certificate.
func HTTPClientTLS(caFile, serverName string) (*tls.Config, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("tls: no certificate in %s", caFile)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: serverName}, nil
}
