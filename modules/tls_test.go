package modules

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

var tlsNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testCA(t *testing.T, name string) *TLSIssuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: tlsNow.AddDate(-1, 0, 0), NotAfter: tlsNow.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &TLSIssuer{Cert: c, Key: k}
}

// hostFiles are the TLS files of a host, as the probe would report them.
type hostFiles struct {
	ca, crt, keyid []byte
	keys           map[string]string // path -> owner:group:mode:sha256
}

func (hf hostFiles) fact() Fact {
	var b strings.Builder
	if hf.ca != nil {
		fmt.Fprintf(&b, "ca=%s\n", base64.StdEncoding.EncodeToString(hf.ca))
	}
	if hf.crt != nil {
		fmt.Fprintf(&b, "crt=%s\n", base64.StdEncoding.EncodeToString(hf.crt))
	}
	if hf.keyid != nil {
		fmt.Fprintf(&b, "keyid=%s\n", hf.keyid)
	}
	for p, v := range hf.keys {
		fmt.Fprintf(&b, "key:%s=%s\n", p, v)
	}
	return Fact{Stdout: []byte(b.String())}
}

// applied runs the steps on a Recorder and returns the files they wrote.
func applied(t *testing.T, prev hostFiles, steps []Step) hostFiles {
	t.Helper()
	r := executors.NewRecorder("a").OnPrefix("", executors.Result{})
	for _, s := range steps {
		if err := RunStep(t.Context(), r, s); err != nil {
			t.Fatal(err)
		}
	}
	hf := prev
	hf.keys = map[string]string{}
	for p, v := range prev.keys {
		hf.keys[p] = v
	}
	for _, c := range r.Calls() {
		if c.Op != "put" {
			continue
		}
		switch c.Path {
		case TLSCAFile:
			hf.ca = c.Content
		case TLSCertFile:
			hf.crt = c.Content
		case TLSKeyIDFile:
			hf.keyid = c.Content
		default:
			if c.Attrs.Mode != 0o600 {
				t.Errorf("%s written with mode %o", c.Path, c.Attrs.Mode)
			}
			sum := sha256.Sum256(c.Content)
			hf.keys[c.Path] = fmt.Sprintf("%s:%s:%o:%s", c.Attrs.Owner, c.Attrs.Group, c.Attrs.Mode, hex.EncodeToString(sum[:]))
		}
	}
	return hf
}

func tlsResource(iss *TLSIssuer, trust ...*TLSIssuer) TLSFiles {
	t := TLSFiles{Host: "a", Issuer: iss, DNSNames: []string{"a", "localhost"},
		IPs: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("127.0.0.1")}, Now: tlsNow,
		Keys: []TLSKey{{Path: TLSKeyFile("etcd"), Owner: "etcd", Group: "etcd"}, {Path: TLSKeyFile("postgres"), Owner: "postgres", Group: "postgres"}}}
	for _, c := range trust {
		t.Trust = append(t.Trust, c.Cert)
	}
	return t
}

func mustDiff(t *testing.T, r TLSFiles, hf hostFiles) (planner.Change, []Step) {
	t.Helper()
	ch, steps, err := r.Diff(hf.fact())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range ch.Attrs {
		if strings.Contains(a.Before+a.After, "PRIVATE KEY") {
			t.Errorf("a private key in the plan: %+v", a)
		}
	}
	return ch, steps
}

// TestTLSFilesIssueThenKeep: a fresh host gets its files; the same
// resource then sees nothing to do (the idempotence contract).
func TestTLSFilesIssueThenKeep(t *testing.T) {
	ca := testCA(t, "ca1")
	r := tlsResource(ca, ca)
	ch, steps := mustDiff(t, r, hostFiles{})
	if ch.Action != planner.Create || len(steps) != 3 {
		t.Fatalf("fresh host: %s with %d steps, want create with 3 (mkdir, trust, certificate)", ch.Action, len(steps))
	}
	hf := applied(t, hostFiles{}, steps)
	cert := parsePEMCerts(hf.crt)[0]
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil || !sameNames(cert, r.DNSNames, r.IPs) {
		t.Fatalf("issued certificate: %v, names %v %v", err, cert.DNSNames, cert.IPAddresses)
	}
	if ch, steps := mustDiff(t, r, hf); !ch.IsNoOp() || len(steps) != 0 {
		t.Fatalf("second diff: %s (%s), want no change", ch.Action, ch.Reason)
	}
}

func TestTLSFilesDecisions(t *testing.T) {
	ca1, ca2 := testCA(t, "ca1"), testCA(t, "ca2")
	good := applied(t, hostFiles{}, func() []Step { _, s := mustDiff(t, tlsResource(ca1, ca1), hostFiles{}); return s }())
	with := func(f func(*hostFiles)) hostFiles {
		hf := good
		hf.keys = map[string]string{}
		for k, v := range good.keys {
			hf.keys[k] = v
		}
		f(&hf)
		return hf
	}
	// A certificate of ca1 that expires in 10 days.
	shortCert, shortKey, err := IssueCert(ca1, "a", []string{"a", "localhost"}, []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("127.0.0.1")}, tlsNow.Add(-TLSValidity+10*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(shortKey)
	shortID := hex.EncodeToString(sum[:])
	bothCAs := certsPEM([]*x509.Certificate{ca2.Cert, ca1.Cert})

	for _, tc := range []struct {
		name    string
		r       TLSFiles
		hf      hostFiles
		issue   bool   // a certificate step
		trust   string // the trust after, "" when unchanged
		reason  string
		planned bool // a change in the plan
	}{
		{name: "all good", r: tlsResource(ca1, ca1), hf: good},
		{name: "expires soon", r: tlsResource(ca1, ca1), hf: with(func(h *hostFiles) {
			h.crt, h.keyid = shortCert, []byte(shortID)
			for p := range h.keys {
				h.keys[p] = strings.Split(h.keys[p], ":")[0] + ":" + strings.Split(h.keys[p], ":")[1] + ":600:" + shortID
			}
		}), issue: true, planned: true, reason: "expires on"},
		{name: "other names", r: func() TLSFiles { r := tlsResource(ca1, ca1); r.DNSNames = []string{"b"}; return r }(), hf: good,
			issue: true, planned: true, reason: "does not name exactly b"},
		{name: "key missing", r: tlsResource(ca1, ca1), hf: with(func(h *hostFiles) { delete(h.keys, TLSKeyFile("etcd")) }),
			issue: true, planned: true, reason: "etcd.key is missing"},
		{name: "key world-readable", r: tlsResource(ca1, ca1), hf: with(func(h *hostFiles) {
			h.keys[TLSKeyFile("postgres")] = strings.Replace(h.keys[TLSKeyFile("postgres")], ":600:", ":644:", 1)
		}), issue: true, planned: true, reason: "644, not postgres:postgres 600"},
		{name: "key of another certificate", r: tlsResource(ca1, ca1), hf: with(func(h *hostFiles) { h.keyid = []byte("0000") }),
			issue: true, planned: true, reason: "is not the key of"},
		{name: "new CA not trusted yet: keep, trust both", r: tlsResource(ca2, ca2), hf: good,
			trust: "ca2, ca1", planned: true, reason: "certificate kept until every host trusts ca2"},
		{name: "new CA trusted: issue, keep trusting the old", r: tlsResource(ca2, ca2), hf: with(func(h *hostFiles) { h.ca = bothCAs }),
			issue: true, planned: true, reason: "not signed by ca2"},
		{name: "every certificate new: drop the old CA", r: tlsResource(ca2, ca2),
			hf:    applied(t, hostFiles{ca: bothCAs}, func() []Step { _, s := mustDiff(t, tlsResource(ca2, ca2, ca1), hostFiles{ca: bothCAs}); return s }()),
			trust: "ca2", planned: true, reason: "the CAs to trust changed"},
		{name: "trust only, fresh", r: TLSFiles{Host: "lb", Trust: []*x509.Certificate{ca1.Cert}, Now: tlsNow}, hf: hostFiles{},
			trust: "ca1", planned: true, reason: "no CA bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, steps := mustDiff(t, tc.r, tc.hf)
			if ch.IsNoOp() == tc.planned {
				t.Fatalf("action %s (%s), want a change: %v", ch.Action, ch.Reason, tc.planned)
			}
			if !strings.Contains(ch.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", ch.Reason, tc.reason)
			}
			after := applied(t, tc.hf, steps)
			issued := string(after.crt) != string(tc.hf.crt)
			if issued != tc.issue {
				t.Errorf("certificate issued: %v, want %v", issued, tc.issue)
			}
			gotTrust := ""
			if string(after.ca) != string(tc.hf.ca) {
				gotTrust = subjects(parsePEMCerts(after.ca))
			}
			if gotTrust != tc.trust {
				t.Errorf("trust written: %q, want %q", gotTrust, tc.trust)
			}
		})
	}
}

// TestTLSFilesRotation walks a CA replacement over three applies: each
// host trusts both CAs, then gets a certificate of the new one, then
// trusts the new one only; the fourth plan is empty.
func TestTLSFilesRotation(t *testing.T) {
	ca1, ca2 := testCA(t, "ca1"), testCA(t, "ca2")
	_, s := mustDiff(t, tlsResource(ca1, ca1), hostFiles{})
	hf := applied(t, hostFiles{}, s)
	r := tlsResource(ca2, ca2)
	for i, want := range []string{"ca2, ca1", "ca2, ca1", "ca2"} {
		ch, steps := mustDiff(t, r, hf)
		if ch.IsNoOp() {
			t.Fatalf("apply %d: no change", i+1)
		}
		hf = applied(t, hf, steps)
		if got := subjects(parsePEMCerts(hf.ca)); got != want {
			t.Errorf("apply %d: trust %q, want %q", i+1, got, want)
		}
	}
	if parsePEMCerts(hf.crt)[0].CheckSignatureFrom(ca2.Cert) != nil {
		t.Error("the certificate is not signed by the new CA")
	}
	if ch, _ := mustDiff(t, r, hf); !ch.IsNoOp() {
		t.Errorf("fourth plan: %s (%s), want no change", ch.Action, ch.Reason)
	}
}

func TestTLSFilesSupplied(t *testing.T) {
	ca := testCA(t, "ca1")
	certPEM, keyPEM, err := IssueCert(ca, "a", []string{"a"}, []net.IP{net.ParseIP("10.0.0.1")}, tlsNow)
	if err != nil {
		t.Fatal(err)
	}
	r := TLSFiles{Host: "a", Trust: []*x509.Certificate{ca.Cert}, SuppliedCert: parsePEMCerts(certPEM), SuppliedKey: string(keyPEM),
		Keys: []TLSKey{{Path: TLSKeyFile("postgres"), Owner: "postgres", Group: "postgres"}}, Now: tlsNow}
	_, steps := mustDiff(t, r, hostFiles{})
	hf := applied(t, hostFiles{}, steps)
	if string(hf.crt) != string(certPEM) {
		t.Fatal("the supplied certificate was not written")
	}
	if ch, _ := mustDiff(t, r, hf); !ch.IsNoOp() {
		t.Fatalf("second plan: %s (%s)", ch.Action, ch.Reason)
	}
	other, otherKey, _ := IssueCert(ca, "a", []string{"a"}, []net.IP{net.ParseIP("10.0.0.1")}, tlsNow)
	r.SuppliedCert, r.SuppliedKey = parsePEMCerts(other), string(otherKey)
	if ch, steps := mustDiff(t, r, hf); ch.IsNoOp() || len(steps) == 0 || !strings.Contains(ch.Reason, "not the one the spec gives") {
		t.Fatalf("a new supplied certificate: %s (%s)", ch.Action, ch.Reason)
	}
}
