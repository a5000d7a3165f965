package modules

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// The TLS files of a host, in TLSDir (root, 0755): the CA bundle and the
// host's certificate (0644), one copy of the host's private key per service
// user (0600, owned by that user), and host.keyid, the SHA-256 of the key
// file, written last, so that a key and a certificate written by an
// interrupted apply are never taken for a pair.
const (
	TLSDir       = "/etc/ssl/pgherd"
	TLSCAFile    = TLSDir + "/ca.crt"
	TLSCertFile  = TLSDir + "/host.crt"
	TLSKeyIDFile = TLSDir + "/host.keyid"
)

// TLSKeyFile is the copy of the host's key that user reads.
func TLSKeyFile(user string) string { return TLSDir + "/" + user + ".key" }

// Certificates pgherd issues are valid for TLSValidity and issued again
// when less than TLSRenewBefore is left.
const (
	TLSValidity    = 365 * 24 * time.Hour
	TLSRenewBefore = 30 * 24 * time.Hour
)

// TLSKey is one copy of the host's private key.
type TLSKey struct {
	Path, Owner, Group string
}

// TLSIssuer is the CA that issues the hosts' certificates.
type TLSIssuer struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// TLSFiles are the TLS files of one host (address "tls.<host>"): the CA
// bundle it trusts and, unless Keys is empty (a host that only verifies
// others, such as an HAProxy host), its certificate and private key.
//
// The probe prints the bundle and the certificate (both public), and for
// each key file its owner, group, mode and SHA-256, never its content. The
// pure Diff decides:
//
//   - keep the certificate when it is signed by the issuer, names exactly
//     the wanted addresses and names, has more than TLSRenewBefore left, and
//     every key file is the key of host.keyid with the right owner and mode
//     0600 (a supplied certificate: when it is the supplied one and the key
//     files hold the supplied key);
//   - else issue one (ECDSA P-256, TLSValidity) or install the supplied one:
//     the key is generated on the machine running pgherd when the step runs,
//     written only to the key files (0600) and never shown in plans;
//   - but while the host does not trust the new certificate's CA yet (the
//     spec replaced the CA), a valid current certificate signed by a CA the
//     host trusts is kept one more apply: the hosts first learn to trust the
//     new CA, then the next apply issues the new certificates (etcd,
//     PostgreSQL and the agents trust both CAs meanwhile), and the apply
//     after that drops the old CA (docs/runbooks/tls.md).
//
// The bundle is the spec's CAs plus the CA that signed the host's current
// certificate, as long as the host uses such a certificate.
//
// After a change the After commands run (reloads that make services read
// the new files).
type TLSFiles struct {
	Host  string
	Trust []*x509.Certificate
	// Issuer issues the certificate unless SuppliedCert is set.
	Issuer *TLSIssuer
	// SuppliedCert (leaf first) and SuppliedKey (PEM) are a certificate
	// given in the spec.
	SuppliedCert []*x509.Certificate
	SuppliedKey  string
	// DNSNames and IPs are the names of an issued certificate.
	DNSNames []string
	IPs      []net.IP
	Keys     []TLSKey
	// Now is the time the decision is made at (compile time).
	Now   time.Time
	After []string
}

// Address implements Resource.
func (t TLSFiles) Address() string { return "tls." + t.Host }

// Probe implements Resource.
func (t TLSFiles) Probe() string {
	var b strings.Builder
	for _, f := range []struct{ k, path string }{{"ca", TLSCAFile}, {"crt", TLSCertFile}} {
		fmt.Fprintf(&b, "if [ -f %s ]; then printf '%s=%%s\\n' \"$(base64 -w0 < %s)\"; fi\n", f.path, f.k, f.path)
	}
	fmt.Fprintf(&b, "if [ -f %s ]; then printf 'keyid=%%s\\n' \"$(head -c 100 %s)\"; fi\n", TLSKeyIDFile, TLSKeyIDFile)
	for _, k := range t.Keys {
		p := executors.Quote(k.Path)
		fmt.Fprintf(&b, "if [ -f %s ]; then printf 'key:%%s=%%s:%%s\\n' %s \"$(stat -c '%%U:%%G:%%a' %s)\" \"$(sha256sum < %s | cut -d' ' -f1)\"; fi\n", p, p, p, p)
	}
	b.WriteString("exit 0\n")
	return b.String()
}

// tlsFact is what the probe found.
type tlsFact struct {
	trust []*x509.Certificate
	cert  *x509.Certificate // nil when absent or unreadable
	keyID string
	keys  map[string]string // path -> "owner:group:mode:sha256"
}

func parseTLSFact(addr string, f Fact) (tlsFact, error) {
	if f.ExitCode != 0 {
		return tlsFact{}, probeFailed(addr, f)
	}
	kv := parseKV(f.Stdout)
	var tf tlsFact
	tf.keyID = kv["keyid"]
	tf.keys = map[string]string{}
	for k, v := range kv {
		if p, ok := strings.CutPrefix(k, "key:"); ok {
			tf.keys[p] = v
		}
	}
	pemOf := func(k string) []byte {
		b, err := base64.StdEncoding.DecodeString(kv[k])
		if err != nil {
			return nil
		}
		return b
	}
	// Unreadable files count as absent: they are written again.
	tf.trust = parsePEMCerts(pemOf("ca"))
	if cs := parsePEMCerts(pemOf("crt")); len(cs) > 0 {
		tf.cert = cs[0]
	}
	return tf, nil
}

// parsePEMCerts returns the certificates of a PEM text, skipping what does
// not parse.
func parsePEMCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if c, err := x509.ParseCertificate(blk.Bytes); blk.Type == "CERTIFICATE" && err == nil {
			out = append(out, c)
		}
	}
}

func certsPEM(cs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func containsCert(cs []*x509.Certificate, c *x509.Certificate) bool {
	return slices.ContainsFunc(cs, func(x *x509.Certificate) bool { return x.Equal(c) })
}

// signerOf returns the CA of cas that signed cert, or nil.
func signerOf(cert *x509.Certificate, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if cert.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

func describeCert(c *x509.Certificate) string {
	return fmt.Sprintf("%s, by %s, until %s", c.Subject.CommonName, c.Issuer.CommonName, c.NotAfter.UTC().Format(time.DateOnly))
}

func subjects(cs []*x509.Certificate) string {
	if len(cs) == 0 {
		return ""
	}
	var s []string
	for _, c := range cs {
		s = append(s, c.Subject.CommonName)
	}
	return strings.Join(s, ", ")
}

// sameNames reports whether c names exactly dns and ips.
func sameNames(c *x509.Certificate, dns []string, ips []net.IP) bool {
	a, b := slices.Clone(c.DNSNames), slices.Clone(dns)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) || len(c.IPAddresses) != len(ips) {
		return false
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func (t TLSFiles) valid() error {
	switch {
	case t.Host == "" || strings.ContainsAny(t.Host, "/ "):
		return fmt.Errorf("tls: host %q: %w", t.Host, ErrInvalid)
	case len(t.Trust) == 0:
		return fmt.Errorf("%s: no CA to trust: %w", t.Address(), ErrInvalid)
	case len(t.Keys) > 0 && t.Issuer == nil && len(t.SuppliedCert) == 0:
		return fmt.Errorf("%s: neither an issuer nor a supplied certificate: %w", t.Address(), ErrInvalid)
	case len(t.Keys) > 0 && len(t.SuppliedCert) > 0 && t.SuppliedKey == "":
		return fmt.Errorf("%s: a supplied certificate without its key: %w", t.Address(), ErrInvalid)
	case t.Now.IsZero():
		return fmt.Errorf("%s: no decision time: %w", t.Address(), ErrInvalid)
	}
	for _, k := range t.Keys {
		if !strings.HasPrefix(k.Path, "/") || k.Owner == "" || k.Group == "" {
			return fmt.Errorf("%s: key %+v: %w", t.Address(), k, ErrInvalid)
		}
	}
	return nil
}

// keysState says whether every key file exists with the right owner, group
// and mode, and holds the key whose SHA-256 is want.
func (t TLSFiles) keysState(tf tlsFact, want string) (ok bool, why string) {
	for _, k := range t.Keys {
		v, found := tf.keys[k.Path]
		if !found {
			return false, k.Path + " is missing"
		}
		f := strings.Split(v, ":")
		if len(f) != 4 {
			return false, k.Path + " could not be read"
		}
		if f[0] != k.Owner || f[1] != k.Group || f[2] != "600" {
			return false, fmt.Sprintf("%s is %s:%s %s, not %s:%s 600", k.Path, f[0], f[1], f[2], k.Owner, k.Group)
		}
		if want == "" || f[3] != want {
			return false, k.Path + " is not the key of " + TLSCertFile
		}
	}
	return true, ""
}

// Diff implements Resource.
func (t TLSFiles) Diff(f Fact) (planner.Change, []Step, error) {
	addr := t.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if err := t.valid(); err != nil {
		return ch, nil, err
	}
	tf, err := parseTLSFact(addr, f)
	if err != nil {
		return ch, nil, err
	}
	var reasons []string
	var steps []Step

	// The trust: the spec's CAs, and the CA of the certificate in use.
	trust := slices.Clone(t.Trust)
	if tf.cert != nil {
		if ca := signerOf(tf.cert, tf.trust); ca != nil && !containsCert(trust, ca) {
			trust = append(trust, ca)
		}
	}
	trustPEM := certsPEM(trust)
	trustChanged := !bytes.Equal(trustPEM, certsPEM(tf.trust))
	if trustChanged {
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "trust " + TLSCAFile, Before: subjects(tf.trust), After: subjects(trust)})
		switch {
		case len(tf.trust) == 0:
			reasons = append(reasons, "no CA bundle")
		case len(trust) > len(t.Trust):
			reasons = append(reasons, "the hosts trust the new CA and, until every certificate is issued by it, the old one")
		default:
			reasons = append(reasons, "the CAs to trust changed")
		}
	}

	if len(t.Keys) > 0 {
		issue, why := t.decideCert(tf)
		switch {
		case issue:
			reasons = append(reasons, why)
			before := ""
			if tf.cert != nil {
				before = describeCert(tf.cert)
			}
			after := "(issued by " + t.issuerName() + ", for " + TLSValidity.String() + ")"
			if len(t.SuppliedCert) > 0 {
				after = describeCert(t.SuppliedCert[0])
			}
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "certificate " + TLSCertFile, Before: before, After: after})
			for _, k := range t.Keys {
				ch.Attrs = append(ch.Attrs, planner.Attr{Name: "key " + k.Path, After: "(sensitive)", Sensitive: true})
			}
		case why != "":
			reasons = append(reasons, why)
		}
		if trustChanged {
			steps = append(steps, t.writeTrustStep(trustPEM))
		}
		if issue {
			steps = append(steps, t.writeCertStep())
		}
	} else if trustChanged {
		steps = append(steps, t.writeTrustStep(trustPEM))
	}
	if len(steps) == 0 {
		if len(reasons) > 0 { // a certificate kept until the CA is trusted
			ch.Action = planner.Update
			ch.Reason = strings.Join(reasons, "; ")
		}
		return ch, nil, nil
	}
	steps = append([]Step{{Desc: "mkdir -p " + TLSDir, Cmd: "mkdir -p " + TLSDir + " && chmod 0755 " + TLSDir}}, steps...)
	for _, c := range t.After {
		steps = append(steps, Step{Desc: c, Cmd: c})
	}
	ch.Action = planner.Update
	if tf.cert == nil && len(tf.trust) == 0 {
		ch.Action = planner.Create
	}
	ch.Reason = strings.Join(reasons, "; ")
	return ch, steps, nil
}

func (t TLSFiles) issuerName() string {
	if t.Issuer == nil {
		return ""
	}
	return t.Issuer.Cert.Subject.CommonName
}

// decideCert says whether the certificate is to be issued (or installed),
// and why; a reason without issue is a certificate kept for now.
func (t TLSFiles) decideCert(tf tlsFact) (issue bool, why string) {
	cur := tf.cert
	var signer *x509.Certificate
	var fine bool
	var reason string
	if len(t.SuppliedCert) > 0 {
		signer = signerOf(t.SuppliedCert[len(t.SuppliedCert)-1], t.Trust)
		if signer == nil && t.SuppliedCert[len(t.SuppliedCert)-1].CheckSignatureFrom(t.SuppliedCert[len(t.SuppliedCert)-1]) == nil {
			signer = t.SuppliedCert[len(t.SuppliedCert)-1]
		}
		sum := sha256.Sum256([]byte(t.SuppliedKey))
		keysOK, kwhy := t.keysState(tf, hex.EncodeToString(sum[:]))
		switch {
		case cur == nil:
			reason = "no certificate"
		case !cur.Equal(t.SuppliedCert[0]):
			reason = "the certificate is not the one the spec gives"
		case !keysOK:
			reason = kwhy
		default:
			fine = true
		}
	} else {
		signer = t.Issuer.Cert
		keysOK, kwhy := t.keysState(tf, tf.keyID)
		switch {
		case cur == nil:
			reason = "no certificate"
		case cur.CheckSignatureFrom(signer) != nil:
			reason = "the certificate is not signed by " + signer.Subject.CommonName
		case !sameNames(cur, t.DNSNames, t.IPs):
			reason = "the certificate does not name exactly " + t.names()
		case t.Now.Before(cur.NotBefore):
			reason = "the certificate is not valid yet"
		case cur.NotAfter.Sub(t.Now) < TLSRenewBefore:
			reason = "the certificate expires on " + cur.NotAfter.UTC().Format(time.DateOnly)
		case !keysOK:
			reason = kwhy
		default:
			fine = true
		}
	}
	if fine {
		return false, ""
	}
	// The CA changed: keep a good current certificate until the host
	// trusts the new CA (its peers do so in the same apply).
	if cur != nil && signer != nil && !containsCert(tf.trust, signer) && signerOf(cur, tf.trust) != nil &&
		!t.Now.Before(cur.NotBefore) && cur.NotAfter.After(t.Now) {
		if ok, _ := t.keysState(tf, tf.keyID); ok {
			return false, "certificate kept until every host trusts " + signer.Subject.CommonName + ": apply again to replace it"
		}
	}
	return true, reason
}

func (t TLSFiles) names() string {
	n := slices.Clone(t.DNSNames)
	for _, ip := range t.IPs {
		n = append(n, ip.String())
	}
	return strings.Join(n, ", ")
}

func (t TLSFiles) writeTrustStep(trustPEM []byte) Step {
	return Step{Desc: "write " + TLSCAFile, Run: func(ctx context.Context, h Host) error {
		return h.PutFile(ctx, TLSCAFile, bytes.NewReader(trustPEM), executors.FileAttrs{Owner: "root", Group: "root", Mode: 0o644})
	}}
}

func (t TLSFiles) writeCertStep() Step {
	desc := "issue a certificate signed by " + t.issuerName() + " and write it with its key"
	if len(t.SuppliedCert) > 0 {
		desc = "write the certificate and key the spec gives"
	}
	return Step{Desc: desc, Run: func(ctx context.Context, h Host) error {
		certPEM, keyPEM := certsPEM(t.SuppliedCert), []byte(t.SuppliedKey)
		if len(t.SuppliedCert) == 0 {
			var err error
			if certPEM, keyPEM, err = t.issue(); err != nil {
				return fmt.Errorf("%s: %w", t.Address(), err)
			}
		}
		for _, k := range t.Keys {
			if err := h.PutFile(ctx, k.Path, bytes.NewReader(keyPEM), executors.FileAttrs{Owner: k.Owner, Group: k.Group, Mode: 0o600}); err != nil {
				return fmt.Errorf("write %s: %w", k.Path, err)
			}
		}
		if err := h.PutFile(ctx, TLSCertFile, bytes.NewReader(certPEM), executors.FileAttrs{Owner: "root", Group: "root", Mode: 0o644}); err != nil {
			return fmt.Errorf("write %s: %w", TLSCertFile, err)
		}
		sum := sha256.Sum256(keyPEM)
		id := hex.EncodeToString(sum[:])
		return h.PutFile(ctx, TLSKeyIDFile, strings.NewReader(id), executors.FileAttrs{Owner: "root", Group: "root", Mode: 0o644})
	}}
}

// issue makes a new key and a certificate for it signed by the issuer,
// valid for server and client use.
func (t TLSFiles) issue() (certPEM, keyPEM []byte, err error) {
	return IssueCert(t.Issuer, t.Host, t.DNSNames, t.IPs, t.Now)
}

// IssueCert makes an ECDSA P-256 key and a certificate for it, signed by
// the issuer, valid TLSValidity from now for server and client use.
func IssueCert(iss *TLSIssuer, cn string, dns []string, ips []net.IP, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"pgherd"}},
		NotBefore:    now.Add(-time.Hour), // hosts' clocks differ a little
		NotAfter:     now.Add(TLSValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, &key.PublicKey, iss.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue a certificate: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}

// TLSRestart restarts a service that started before its CA bundle was last
// written: etcd reads the bundle only when it starts, but a renewed
// certificate and key on every new connection (both pinned by
// agent/dcs/etcdtest's TestEtcdTLSFiles), so a renewal alone restarts
// nothing. It is
// notified by the host's TLSFiles and belongs in a Serial phase, so that
// the members of a cluster restart one at a time and keep their quorum. Its
// address is "tls_restart.<unit>"; its own Diff never changes anything.
type TLSRestart struct {
	Unit      string
	WatchList []string
}

// Address implements Resource.
func (r TLSRestart) Address() string { return "tls_restart." + r.Unit }

// Probe implements Resource.
func (r TLSRestart) Probe() string { return "true" }

// Diff implements Resource.
func (r TLSRestart) Diff(Fact) (planner.Change, []Step, error) {
	return planner.Change{Resource: r.Address(), Action: planner.NoOp}, nil, nil
}

// Watches implements Notified.
func (r TLSRestart) Watches() []string { return r.WatchList }

// Notify implements Notified: the restart happens only when the running
// service started before the CA bundle was written.
func (r TLSRestart) Notify(changed []string) (planner.Change, []Step) {
	u := executors.Quote(r.Unit)
	// Microseconds on both sides: a bundle written in the second the
	// service started is no reason to restart it.
	cmd := "systemctl is-active -q " + u + " || exit 0\n" +
		"started=$(systemctl show -p ExecMainStartTimestamp --value --timestamp=us+utc " + u + ")\n" +
		"[ -n \"$started\" ] || exit 0\n" +
		"if [ -n \"$(find " + TLSCAFile + " -newermt \"$started\")\" ]; then systemctl restart " + u + "; fi\n"
	return planner.Change{Resource: r.Address(), Action: planner.Update, Impact: "restart of " + r.Unit + " (one host at a time)",
			Reason: "its TLS files changed: " + strings.Join(changed, ", ")},
		[]Step{{Desc: "systemctl restart " + r.Unit + " if it started before " + TLSCAFile + " was written", Cmd: cmd}}
}
