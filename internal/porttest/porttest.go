// Package porttest finds free TCP ports for tests that run real servers
// (PostgreSQL, etcd, sshd, S3, the agent's API).
package porttest

import (
	"net"
	"testing"
)

// Free returns a loopback (127.0.0.1) TCP port free right now.
func Free(t testing.TB) int {
	t.Helper()
	return FreeOn(t, "127.0.0.1")
}

// FreeOn returns a TCP port free right now on the address host.
func FreeOn(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
