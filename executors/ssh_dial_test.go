package executors_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/executors"
)

// echoServer listens on the test machine's loopback and echoes one line per
// connection.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() { // exits when the listener is closed
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { // exits when the client closes its end
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

func TestSSHDialContext(t *testing.T) {
	d := startSSHD(t)
	addr := echoServer(t)
	d.asAdmins(t, func(t *testing.T, _ string, c *executors.SSH) {
		conn, err := c.DialContext(ctxT(t), "tcp", addr)
		if err != nil {
			t.Fatalf("DialContext: %v", err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "hello through ssh\n"); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line != "hello through ssh\n" {
			t.Errorf("echo = %q", line)
		}
	})
}

func TestSSHDialContextRefused(t *testing.T) {
	d := startSSHD(t)
	c := dial(t, d.config(t, "root"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, err = c.DialContext(ctxT(t), "tcp", addr)
	if err == nil {
		t.Fatal("DialContext to a closed port succeeded")
	}
	if errors.Is(err, executors.ErrUnreachable) {
		t.Errorf("a refused port must not read as an unreachable host: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "db1") || !strings.Contains(err.Error(), addr) {
		t.Errorf("error should name the host and the address: %v", err)
	}
	// The slot was given back: a command still runs with MaxSessions slots.
	if _, err := c.Run(ctxT(t), "true", nil); err != nil {
		t.Errorf("Run after a failed dial: %v", err)
	}
}

// An open tunnel holds a session slot until it is closed.
func TestSSHDialContextHoldsSessionSlot(t *testing.T) {
	d := startSSHD(t)
	addr := echoServer(t)
	cfg := d.config(t, "root")
	cfg.MaxSessions = 1
	c := dial(t, cfg)
	conn, err := c.DialContext(ctxT(t), "tcp", addr)
	if err != nil {
		t.Fatalf("DialContext: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Run(ctx, "true", nil); err == nil {
		t.Fatal("Run got a session while the only slot was held by a tunnel")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run error = %v, want one wrapping context.DeadlineExceeded", err)
	}
	conn.Close()
	conn.Close() // a second Close must not give back a second slot
	if _, err := c.Run(ctxT(t), "true", nil); err != nil {
		t.Errorf("Run after the tunnel closed: %v", err)
	}
	// Still one slot only: a new tunnel plus a Run must not both get one.
	conn2, err := c.DialContext(ctxT(t), "tcp", addr)
	if err != nil {
		t.Fatalf("DialContext: %v", err)
	}
	defer conn2.Close()
	ctx2, cancel2 := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel2()
	if _, err := c.Run(ctx2, "true", nil); err == nil {
		t.Error("double Close gave back two slots")
	}
}
