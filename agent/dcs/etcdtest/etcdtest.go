// Package etcdtest starts real etcd servers (Debian's etcd-server, /usr/bin/etcd)
// for tests: a single member or a small cluster on loopback, each member in
// its own temporary data directory, stopped when the test ends.
package etcdtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgherd/pgherd/internal/porttest"
)

// Member is one running (or stopped) etcd process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dataDir   string
	args      []string
	// http reaches the member's /health (with TLS, as a client of the CA).
	http *http.Client

	mu     sync.Mutex
	cmd    *exec.Cmd
	waitc  chan struct{}
	stderr *bytes.Buffer
}

// Cluster is a set of etcd members started together.
type Cluster struct {
	Members []*Member
}

// Endpoints returns the client URLs of every member, running or not.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.ClientURL
	}
	return eps
}

// Binary returns the path of the etcd binary, or skips the test when it is
// not installed (apt-get install etcd-server).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PGHERD_ETCD"); p != "" {
		return p
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd not installed: apt-get install etcd-server (or set PGHERD_ETCD)")
	}
	return p
}

// memDir is a directory for a member's data in memory (/dev/shm) where
// there is one, else t.TempDir(). etcd fsyncs its WAL on every write: on a
// disk shared with the lab's containers an fsync took seconds, requests
// timed out, and leader leases lapsed in tests that are not about a slow
// disk. A tmpfs fsync returns at once.
func memDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pgherd-etcdtest-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TLS are the files of a cluster whose clients and peers use TLS: the CA
// bundle, and a certificate (naming 127.0.0.1, for server and client use)
// with its key that every member presents.
type TLS struct {
	CAFile, CertFile, KeyFile string
}

// Start starts an n-member etcd cluster on loopback with short heartbeat
// and election timeouts and waits until every member answers /health. The
// members are killed and their data removed when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return start(t, n, nil)
}

// StartTLS is Start with client and peer TLS: https URLs, and client
// certificates of the CA required from clients and peers.
func StartTLS(t testing.TB, n int, files TLS) *Cluster {
	t.Helper()
	return start(t, n, &files)
}

func start(t testing.TB, n int, files *TLS) *Cluster {
	t.Helper()
	bin := Binary(t)
	scheme, client, tlsArgs := "http://", http.DefaultClient, []string(nil)
	if files != nil {
		scheme, client = "https://", tlsClient(t, *files)
		tlsArgs = []string{
			"--cert-file", files.CertFile, "--key-file", files.KeyFile,
			"--trusted-ca-file", files.CAFile, "--client-cert-auth",
			"--peer-cert-file", files.CertFile, "--peer-key-file", files.KeyFile,
			"--peer-trusted-ca-file", files.CAFile, "--peer-client-cert-auth",
		}
	}
	c := &Cluster{}
	var initial []string
	for i := 0; i < n; i++ {
		m := &Member{
			Name:      fmt.Sprintf("e%d", i),
			ClientURL: scheme + freeAddr(t),
			PeerURL:   scheme + freeAddr(t),
			dataDir:   filepath.Join(memDir(t), "etcd"),
			http:      client,
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		m.args = []string{bin,
			"--name", m.Name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", "pgherd-test",
			"--heartbeat-interval", "50",
			"--election-timeout", "500",
			"--logger", "zap",
			"--log-level", "error",
		}
		m.args = append(m.args, tlsArgs...)
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Kill() })
	}
	for _, m := range c.Members {
		if err := m.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Start (re)starts the member's process with its data directory.
func (m *Member) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return fmt.Errorf("etcd member %s already running", m.Name)
	}
	cmd := exec.Command(m.args[0], m.args[1:]...)
	m.stderr = &bytes.Buffer{}
	cmd.Stdout = m.stderr
	cmd.Stderr = m.stderr
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	m.cmd = cmd
	m.waitc = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { // exits when the process does
		_ = c.Wait()
		close(done)
	}(cmd, m.waitc)
	return nil
}

// Kill stops the member with SIGKILL (node loss) and waits for it to exit.
// Killing a stopped member does nothing.
func (m *Member) Kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.waitc
	m.cmd = nil
}

// Pause freezes the member's process (SIGSTOP); Resume thaws it.
func (m *Member) Pause() error { return m.signal(syscall.SIGSTOP) }

// Resume thaws a paused member (SIGCONT).
func (m *Member) Resume() error { return m.signal(syscall.SIGCONT) }

func (m *Member) signal(s syscall.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return fmt.Errorf("etcd member %s not running", m.Name)
	}
	return m.cmd.Process.Signal(s)
}

// WaitHealthy polls the member's /health endpoint until it reports healthy.
func (m *Member) WaitHealthy(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
		resp, err := m.http.Do(req)
		if err == nil {
			var b [256]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(b[:n], []byte(`"true"`)) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			m.mu.Lock()
			out := ""
			if m.stderr != nil {
				out = m.stderr.String()
			}
			m.mu.Unlock()
			return fmt.Errorf("etcd member %s not healthy after %s: %v\n%s", m.Name, timeout, err, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tlsClient trusts the CA and presents the members' certificate.
func tlsClient(t testing.TB, files TLS) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(files.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		t.Fatalf("no certificate in %s", files.CAFile)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", porttest.Free(t))
}
