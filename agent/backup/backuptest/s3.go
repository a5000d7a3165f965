// Package backuptest runs, for one test, the servers the backup tests store
// into, an S3 API server (versitygw) on a free loopback port, and the
// PostgreSQL servers they back up and restore (postgres.go).
package backuptest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgherd/pgherd/internal/porttest"
)

// The credentials S3 accepts.
const (
	S3AccessKey = "testkey"
	S3SecretKey = "testsecret"
)

// versitygw finds the S3 gateway used as a real S3 server in tests
// (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0), or skips
// the test.
func versitygw(t testing.TB) string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	for _, p := range []string{os.Getenv("GOBIN"), filepath.Join(home, "go", "bin")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(p, "versitygw")); err == nil {
			return filepath.Join(p, "versitygw")
		}
	}
	t.Skip("versitygw not installed: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
	return ""
}

// S3 runs versitygw on a free loopback port over a temporary directory
// until the test ends, and returns its endpoint URL. It has no bucket.
func S3(t testing.TB) string {
	t.Helper()
	bin := versitygw(t)
	addr := fmt.Sprintf("127.0.0.1:%d", porttest.Free(t))
	cmd := exec.Command(bin, "--access", S3AccessKey, "--secret", S3SecretKey, "--port", addr, "--quiet", "posix", t.TempDir())
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	WaitListening(t, "versitygw", addr)
	return "http://" + addr
}

// WaitListening waits up to 20 s until the server what takes connections on
// addr, or fails the test.
func WaitListening(t testing.TB, what, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s: %v", what, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
