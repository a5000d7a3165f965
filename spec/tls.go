package spec

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// decodeTLS decodes the tls block of a cluster; nil without one.
func (l *loader) decodeTLS(c *decoded, cl *Cluster) *TLS {
	d, ok := l.one(c, "tls")
	if !ok {
		return nil
	}
	t := &TLS{CACert: d.str("ca_cert"), CAKey: l.password(d, "ca_key", "ca_key"), Hosts: map[string]HostCert{}, Range: d.defRange()}
	var cas []*x509.Certificate
	if d.good("ca_cert") {
		var err error
		cas, err = ParseCertificates(t.CACert)
		now := time.Now()
		switch {
		case err != nil:
			l.errorf(d.rng("ca_cert"), "Invalid CA certificate", "The ca_cert is not a list of PEM certificates (%s).", err)
		default:
			for _, ca := range cas {
				switch {
				case !ca.IsCA:
					l.errorf(d.rng("ca_cert"), "Not a CA certificate",
						"The certificate %q of ca_cert is not a CA's (its basic constraints do not say CA:TRUE): give the CA that signs the hosts' certificates.", ca.Subject)
				case now.After(ca.NotAfter):
					l.errorf(d.rng("ca_cert"), "Expired CA certificate",
						"The CA certificate %q of ca_cert expired on %s: make a new CA and follow docs/runbooks/tls.md.", ca.Subject, ca.NotAfter.UTC().Format(time.DateOnly))
				}
			}
		}
	}
	if t.CAKey != "" && len(cas) > 0 {
		key, err := ParsePrivateKey(t.CAKey)
		switch {
		case err != nil:
			l.errorf(d.rng("ca_key"), "Invalid CA key", "The ca_key is not an unencrypted private key in PEM form (%s).", err)
		case !slices.ContainsFunc(cas, func(ca *x509.Certificate) bool { return KeyMatches(ca, key) }):
			l.errorf(d.rng("ca_key"), "CA key does not match",
				"The ca_key is not the key of any certificate of ca_cert: give the key of the CA that is to sign the hosts' certificates.")
		}
	}

	need := append(slices.Clone(cl.Postgres.Hosts), cl.Etcd.Hosts...)
	schema := d.schema.Block("host")
	for _, b := range d.children["host"] {
		name := b.blk.Labels[0]
		hd := l.decodeWith(b, schema)
		if _, ok := l.hosts[name]; !ok {
			l.errorf(b.blk.LabelRanges[0].Ptr(), "Unknown host", "No host named %q is declared.%s", name, suggest(name, need))
			continue
		}
		if !slices.Contains(need, name) {
			l.errorf(b.blk.LabelRanges[0].Ptr(), "Not an etcd or PostgreSQL host",
				"The host %q runs neither etcd nor PostgreSQL in this cluster: only those hosts have certificates.", name)
			continue
		}
		if prev, ok := t.Hosts[name]; ok {
			l.errorf(b.blk.DefRange.Ptr(), "Duplicate host certificate", "The certificate of host %q was already given at %s.", name, posString(prev.Range))
			continue
		}
		hc := HostCert{Cert: hd.str("cert"), Key: l.password(hd, "key", fmt.Sprintf("key of host %q", name)), Range: b.blk.DefRange}
		if hd.good("cert") && hc.Key != "" && len(cas) > 0 {
			l.checkHostCert(hd, l.m.Hosts[slices.IndexFunc(l.m.Hosts, func(h Host) bool { return h.Name == name })], hc, t.CACert)
		}
		t.Hosts[name] = hc
	}
	if t.CAKey == "" && !d.bad["ca_key"] {
		var missing []string
		for _, h := range need {
			if _, ok := t.Hosts[h]; !ok && !slices.Contains(missing, h) {
				missing = append(missing, h)
			}
		}
		if len(missing) > 0 {
			l.errorf(d.b.blk.DefRange.Ptr(), "Hosts without a certificate",
				"The hosts %s have no certificate: give ca_key for pgherd to issue them, or a host block with cert and key for each.", quoteList(missing))
		}
	}
	return t
}

// checkHostCert reports what makes a supplied certificate unusable.
func (l *loader) checkHostCert(d *decoded, h Host, hc HostCert, caPEM string) {
	certs, err := ParseCertificates(hc.Cert)
	if err != nil {
		l.errorf(d.rng("cert"), "Invalid certificate", "The cert of host %q is not a PEM certificate (%s).", h.Name, err)
		return
	}
	key, err := ParsePrivateKey(hc.Key)
	if err != nil {
		l.errorf(d.rng("key"), "Invalid key", "The key of host %q is not an unencrypted private key in PEM form (%s).", h.Name, err)
		return
	}
	leaf := certs[0]
	if !KeyMatches(leaf, key) {
		l.errorf(d.rng("key"), "Key does not match the certificate",
			"The key of host %q is not the key of its certificate %q: give the pair that belongs together.", h.Name, leaf.Subject)
	}
	if err := VerifyHostCert(leaf, certs[1:], caPEM, time.Now()); err != nil {
		l.errorf(d.rng("cert"), "Certificate not usable", "The certificate of host %q: %s.", h.Name, err)
	}
	if !CertNames(leaf, h.Address) {
		l.errorf(d.rng("cert"), "Certificate does not name the host",
			"The certificate of host %q does not name its address %s (names: %s): clients that verify it (sslmode=verify-full, etcd, the agents) would refuse it.",
			h.Name, h.Address, strings.Join(certNames(leaf), ", "))
	}
}

// ParseCertificates parses every certificate of a PEM text; blocks of
// other types are refused.
func ParseCertificates(s string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a %q PEM block where a CERTIFICATE was expected", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("text after the last certificate")
	}
	return out, nil
}

// ParsePrivateKey parses an unencrypted PEM private key: PKCS #8, SEC 1
// (EC) or PKCS #1 (RSA).
func ParsePrivateKey(s string) (crypto.Signer, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, errors.New("no PEM block found")
	}
	var (
		k   any
		err error
	)
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("a %q PEM block, not a private key", b.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", k)
}

// KeyMatches reports whether key is the private key of cert.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// VerifyHostCert checks that leaf (with its intermediates) chains to a CA
// of caPEM, for both server and client use, and is valid at now.
func VerifyHostCert(leaf *x509.Certificate, intermediates []*x509.Certificate, caPEM string, now time.Time) error {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(caPEM)) {
		return errors.New("no CA certificate to verify it with")
	}
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("it expired on %s", leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("it is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	if err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return fmt.Errorf("it is not signed by a CA of ca_cert (issuer %q)", leaf.Issuer)
		}
		return fmt.Errorf("it does not verify against ca_cert for server and client use (%w)", err)
	}
	return nil
}

// CertNames reports whether cert names address (an IP or a DNS name).
func CertNames(cert *x509.Certificate, address string) bool {
	if ip := net.ParseIP(address); ip != nil {
		return slices.ContainsFunc(cert.IPAddresses, ip.Equal)
	}
	return cert.VerifyHostname(address) == nil
}

func certNames(cert *x509.Certificate) []string {
	names := slices.Clone(cert.DNSNames)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}
