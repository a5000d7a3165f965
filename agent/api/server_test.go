package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// selfSigned returns a server config for 127.0.0.1 and a client pool that
// trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pgherd-test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, pool
}

// serve starts s on a loopback port and returns its base URL and a stop
// function that cancels the context and returns Serve's error.
func serve(t *testing.T, s *Server, tlsCfg *tls.Config) (string, func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, tlsCfg) }()
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	stopped := false
	var stopErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	t.Cleanup(func() { stop() })
	return scheme + "://" + ln.Addr().String(), stop
}

func TestServeTLS(t *testing.T) {
	cfg, pool := selfSigned(t)
	s := newServer(primary(), &recorder{})
	s.Now = time.Now
	snap := primary()
	snap.LeaseDeadline = time.Now().Add(time.Hour)
	f := fixed(snap)
	s.Source = &f
	base, stop := serve(t, s, cfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	resp, err := client.Get(base + "/primary")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("GET /primary over TLS = %d (TLS %v), want 200 over TLS", resp.StatusCode, resp.TLS != nil)
	}

	req, _ := http.NewRequest(http.MethodPost, base+"/pause", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST /pause over TLS = %d", resp.StatusCode)
	}

	// Plain HTTP to the TLS port is refused, not served.
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get(strings.Replace(base, "https", "http", 1) + "/primary"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP to the TLS port answered 200")
		}
	}

	if err := stop(); err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
	if _, err := client.Get(base + "/primary"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestServeLimits(t *testing.T) {
	s := newServer(primary(), &recorder{})
	base, stop := serve(t, s, nil)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	t.Run("header too large", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/health", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 2*MaxHeaderBytes))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("huge header = %d, want 431", resp.StatusCode)
		}
	})
	t.Run("body too large", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, base+"/switchover", strings.NewReader(`{"leader":"`+strings.Repeat("x", MaxBodyBytes+1024)+`"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("huge body = %d, want 413", resp.StatusCode)
		}
	})
	t.Run("HEAD check has no body", func(t *testing.T) {
		resp, err := client.Head(base + "/primary")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("HEAD /primary = %d", resp.StatusCode)
		}
	})
	if err := stop(); err != nil {
		t.Errorf("Serve after cancel = %v", err)
	}
}

func TestListenAndServeBadAddress(t *testing.T) {
	s := newServer(primary(), nil)
	err := s.ListenAndServe(context.Background(), "256.0.0.1:http", nil)
	if err == nil {
		t.Fatal("ListenAndServe on a bad address returned nil")
	}
}

// TestShutdownWaitsForRequests: a write verb in flight when ctx ends still
// gets its answer.
func TestShutdownWaitsForRequests(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	ctl := &blockingController{recorder: &recorder{}, started: started, release: release}
	s := newServer(primary(), ctl)
	base, stop := serve(t, s, nil)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, base+"/restart", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		resp.Body.Close()
		res <- result{code: resp.StatusCode}
	}()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Shutdown closes the listener first: wait for that, so that the
	// request is still in flight while the server is shutting down.
	addr := strings.TrimPrefix(base, "http://")
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if i > 1000 {
			t.Fatal("the listener is still open after the context ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	r := <-res
	if r.err != nil || r.code != 200 {
		t.Errorf("restart in flight during shutdown = %d, %v; want 200", r.code, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

type blockingController struct {
	*recorder
	started chan struct{}
	release chan struct{}
}

func (b *blockingController) Restart(ctx context.Context) error {
	close(b.started)
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
