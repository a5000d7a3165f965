package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// The lab used by these tests: its own name and subnet, so that it never
// collides with a user's lab.
const (
	testName   = "pgherd-labtest"
	testSubnet = "10.78.0.0/24"
)

func needE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("PGHERD_E2E") == "" {
		t.Skip("set PGHERD_E2E=1 to run tests that bring up a Docker lab")
	}
}

// sshRun runs cmd on addr as root with the lab's key, checking the host's
// key strictly against the lab's known_hosts.
func sshRun(t *testing.T, l *Lab, addr, cmd string) (string, error) {
	t.Helper()
	keyPEM, err := os.ReadFile(l.KeyFile())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	hostKeys, err := knownhosts.New(l.KnownHostsFile())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", addr+":22", &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.Output(cmd)
	return strings.TrimSpace(string(out)), err
}

// probe reports whether from can open a TCP connection to to's sshd.
func probe(ctx context.Context, l *Lab, from string, to Host) bool {
	_, err := l.Exec(ctx, from, "timeout", "3", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/22", to.Address))
	return err == nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestLabE2E(t *testing.T) {
	needE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := Config{
		Name:   testName,
		Hosts:  2,
		Subnet: testSubnet,
		Dir:    t.TempDir(),
		Log:    slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	if old, err := Open(cfg); err == nil {
		_ = old.Down(ctx) // a previous run that died half-way
	}
	l, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("Down: %v", err)
		}
		if out, _ := docker(context.Background(), nil, "ps", "-aq", "--filter", "label=pgherd.lab="+testName); strings.TrimSpace(out) != "" {
			t.Errorf("containers left after Down: %s", out)
		}
	})
	hosts := l.Hosts()
	n1, n2 := hosts[0], hosts[1]

	t.Run("ssh", func(t *testing.T) {
		for _, h := range hosts {
			name, err := sshRun(t, l, h.Address, "hostname")
			if err != nil || name != h.Name {
				t.Errorf("%s: hostname = %q, %v", h.Name, name, err)
			}
			// degraded (a unit failed) is acceptable in a container;
			// starting/initializing is waited out.
			st, _ := sshRun(t, l, h.Address, "systemctl is-system-running --wait")
			if st != "running" && st != "degraded" {
				failed, _ := sshRun(t, l, h.Address, "systemctl --failed --no-legend")
				t.Errorf("%s: systemctl is-system-running = %q; failed units:\n%s", h.Name, st, failed)
			}
			if st == "degraded" {
				failed, _ := sshRun(t, l, h.Address, "systemctl --failed --no-legend")
				t.Logf("%s is degraded; failed units:\n%s", h.Name, failed)
			}
		}
	})

	t.Run("host keys differ", func(t *testing.T) {
		kh, err := os.ReadFile(l.KnownHostsFile())
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(kh)), "\n")
		if len(lines) != 2 {
			t.Fatalf("known_hosts has %d lines:\n%s", len(lines), kh)
		}
		if strings.Fields(lines[0])[2] == strings.Fields(lines[1])[2] {
			t.Error("two hosts share a host key")
		}
	})

	t.Run("up again is a no-op", func(t *testing.T) {
		before, _ := os.ReadFile(l.KnownHostsFile())
		again, err := Up(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		after, _ := os.ReadFile(l.KnownHostsFile())
		if string(before) != string(after) {
			t.Errorf("known_hosts changed:\n%s\n---\n%s", before, after)
		}
		if again.SpecSnippet() != l.SpecSnippet() {
			t.Error("spec snippet changed")
		}
	})

	t.Run("status", func(t *testing.T) {
		opened, err := Open(Config{Name: testName, Dir: cfg.Dir})
		if err != nil {
			t.Fatal(err)
		}
		st, err := opened.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 2 {
			t.Fatalf("status has %d hosts", len(st))
		}
		for _, s := range st {
			if s.State != "running" || !s.Connected || !s.SSH {
				t.Errorf("status %+v, want running, connected, ssh", s)
			}
		}
	})

	t.Run("partition", func(t *testing.T) {
		if !eventually(ctx, 10*time.Second, func() bool { return probe(ctx, l, n1.Name, n2) }) {
			t.Fatal("node1 cannot reach node2 before the partition")
		}
		if err := l.Disconnect(ctx, n2.Name); err != nil {
			t.Fatal(err)
		}
		if probe(ctx, l, n1.Name, n2) {
			t.Error("node1 reaches node2 across the partition")
		}
		if probe(ctx, l, n2.Name, n1) {
			t.Error("node2 reaches node1 across the partition")
		}
		st, err := l.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st[1].Connected || st[1].SSH {
			t.Errorf("status of the cut host: %+v", st[1])
		}
		if err := l.Connect(ctx, n2.Name); err != nil {
			t.Fatal(err)
		}
		if err := l.Connect(ctx, n2.Name); err != nil {
			t.Errorf("Connect twice: %v", err)
		}
		if !eventually(ctx, 15*time.Second, func() bool { return probe(ctx, l, n1.Name, n2) }) {
			t.Error("node1 cannot reach node2 after reconnecting")
		}
		if _, err := sshRun(t, l, n2.Address, "true"); err != nil {
			t.Errorf("ssh to node2 after reconnecting: %v", err)
		}
	})

	t.Run("pause", func(t *testing.T) {
		if err := l.Pause(ctx, n2.Name); err != nil {
			t.Fatal(err)
		}
		st, err := l.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st[1].State != "paused" || st[1].SSH {
			t.Errorf("status of the paused host: %+v", st[1])
		}
		if err := l.Unpause(ctx, n2.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := sshRun(t, l, n2.Address, "true"); err != nil {
			t.Errorf("ssh after unpause: %v", err)
		}
	})

	t.Run("kill and start keep the host key", func(t *testing.T) {
		if err := l.Kill(ctx, n2.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Exec(ctx, n2.Name, "true"); err == nil {
			t.Error("exec on a killed host succeeded")
		}
		if err := l.Start(ctx, n2.Name); err != nil {
			t.Fatal(err)
		}
		// Strict host key checking against the known_hosts written at Up.
		if name, err := sshRun(t, l, n2.Address, "hostname"); err != nil || name != n2.Name {
			t.Errorf("after restart: hostname = %q, %v", name, err)
		}
	})

	t.Run("up reconnects a cut host", func(t *testing.T) {
		if err := l.Disconnect(ctx, n2.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := Up(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := sshRun(t, l, n2.Address, "true"); err != nil {
			t.Errorf("ssh to node2 after Up: %v", err)
		}
	})

	t.Run("grow and shrink", func(t *testing.T) {
		big := cfg
		big.Hosts = 3
		l3, err := Up(ctx, big)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sshRun(t, l3, l3.Hosts()[2].Address, "true"); err != nil {
			t.Errorf("ssh to node3: %v", err)
		}
		if _, err := Up(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		st, err := l3.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st[2].State != "missing" || st[0].State != "running" {
			t.Errorf("after shrinking to 2: node1 %s, node3 %s; want running, missing", st[0].State, st[2].State)
		}
		kh, _ := os.ReadFile(l.KnownHostsFile())
		if n := strings.Count(string(kh), "\n"); n != 2 {
			t.Errorf("known_hosts has %d lines after shrinking, want 2", n)
		}
	})

	t.Run("apt sources", func(t *testing.T) {
		out, err := l.Exec(ctx, n1.Name, "cat", "/etc/apt/sources.list")
		if err != nil || !strings.Contains(out, "bookworm-security") {
			t.Errorf("sources.list = %q, %v", out, err)
		}
	})
}

func TestSubnetConflict(t *testing.T) {
	needE2E(t)
	ctx := context.Background()
	// A foreign network holds the subnet; the lab must refuse it clearly.
	const foreign = "pgherd-labtest-foreign"
	if _, err := docker(ctx, nil, "network", "create", "--subnet", "10.76.0.0/24", foreign); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = docker(context.Background(), nil, "network", "rm", foreign) })
	l, err := newLab(Config{Name: "pgherd-labtest2", Hosts: 1, Subnet: "10.76.0.0/25", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	err = l.ensureNetwork(ctx)
	if err == nil {
		_, _ = docker(ctx, nil, "network", "rm", l.network())
		t.Fatal("ensureNetwork on an overlapping subnet: no error")
	}
	if !errors.Is(err, ErrSubnetConflict) || !strings.Contains(err.Error(), foreign) {
		t.Errorf("err = %v, want ErrSubnetConflict naming %s", err, foreign)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestManyHosts brings up PGHERD_E2E_HOSTS hosts (the benchmark uses 30)
// and checks that every one answers over SSH. It is separate from
// TestLabE2E because it is slow and heavy.
func TestManyHosts(t *testing.T) {
	needE2E(t)
	n, _ := strconv.Atoi(os.Getenv("PGHERD_E2E_HOSTS"))
	if n == 0 {
		t.Skip("set PGHERD_E2E_HOSTS=30 to bring up a large lab")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := Config{Name: testName, Hosts: n, Subnet: testSubnet, Dir: t.TempDir(),
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	start := time.Now()
	l, err := Up(ctx, cfg)
	t.Cleanup(func() {
		if l == nil {
			l, _ = Open(cfg)
		}
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d hosts up in %s", n, time.Since(start).Round(time.Second))
	for _, h := range l.Hosts() {
		if name, err := sshRun(t, l, h.Address, "hostname"); err != nil || name != h.Name {
			t.Errorf("%s: hostname = %q, %v", h.Name, name, err)
		}
	}
}
