package executors_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/executors"
)

func TestSSHDialErrors(t *testing.T) {
	d := startSSHD(t)
	closedPort := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}()
	// A port that accepts TCP but never speaks SSH: the handshake times out.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() { // exits when silent is closed
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dir := t.TempDir()
	encrypted, _ := writeKey(dir, "id_encrypted", []byte("secret"))

	tests := []struct {
		name    string
		edit    func(*executors.SSHConfig)
		want    error
		message []string // substrings of the message
	}{
		{
			name:    "wrong key",
			edit:    func(c *executors.SSHConfig) { c.KeyFiles = []string{fixture.otherKey} },
			want:    executors.ErrAuth,
			message: []string{`user "root"`},
		},
		{
			name:    "passphrase-protected key",
			edit:    func(c *executors.SSHConfig) { c.KeyFiles = []string{encrypted} },
			want:    executors.ErrAuth,
			message: []string{"passphrase-protected", "ssh-add " + encrypted},
		},
		{
			name: "passphrase-protected key beside a wrong one",
			edit: func(c *executors.SSHConfig) {
				c.KeyFiles = []string{encrypted, fixture.otherKey}
			},
			want:    executors.ErrAuth,
			message: []string{"refused every key", "passphrase-protected"},
		},
		{
			name:    "unknown host in strict mode",
			edit:    func(c *executors.SSHConfig) { c.KnownHostsFile = filepath.Join(dir, "empty_known_hosts") },
			want:    executors.ErrUnknownHost,
			message: []string{`host_key_check = "accept-new"`, "ssh-keyscan"},
		},
		{
			name:    "closed port",
			edit:    func(c *executors.SSHConfig) { c.Port = closedPort },
			want:    executors.ErrUnreachable,
			message: []string{"connection refused"},
		},
		{
			name: "silent port",
			edit: func(c *executors.SSHConfig) {
				c.Port = silent.Addr().(*net.TCPAddr).Port
				c.ConnectTimeout = 300 * time.Millisecond
			},
			want:    executors.ErrUnreachable,
			message: []string{"deadline exceeded"},
		},
		{
			name:    "jump host unreachable",
			edit:    func(c *executors.SSHConfig) { j := *c; j.Name = "bastion"; j.Port = closedPort; c.Jump = &j },
			want:    executors.ErrUnreachable,
			message: []string{"jump host", "bastion"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := d.config(t, "root")
			cfg.ConnectTimeout = 3 * time.Second
			tt.edit(&cfg)
			start := time.Now()
			c, err := executors.DialSSH(ctxT(t), cfg, nil)
			if err == nil {
				c.Close()
				t.Fatal("DialSSH succeeded")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "db1") {
				t.Errorf("message %q should start with the host name", err)
			}
			for _, m := range tt.message {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("message %q should contain %q", err, m)
				}
			}
			if took := time.Since(start); took > cfg.ConnectTimeout+2*time.Second {
				t.Errorf("took %s with a connect timeout of %s", took, cfg.ConnectTimeout)
			}
		})
	}
}

func TestSSHAcceptNewThenChangedKey(t *testing.T) {
	d := startSSHD(t)
	known := filepath.Join(t.TempDir(), "ssh", "known_hosts") // the directory does not exist yet
	cfg := d.config(t, "root")
	cfg.KnownHostsFile = known
	cfg.HostKeyCheck = executors.HostKeyAcceptNew

	c := dial(t, cfg)
	c.Close()
	b, err := os.ReadFile(known)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "[127.0.0.1]:") || strings.Count(string(b), "\n") != 1 {
		t.Fatalf("known_hosts = %q, want one line for the host", b)
	}
	// Known now: strict mode accepts it, and accept-new does not add it twice.
	strict := cfg
	strict.HostKeyCheck = ""
	dial(t, strict).Close()
	dial(t, cfg).Close()
	if b2, _ := os.ReadFile(known); string(b2) != string(b) {
		t.Errorf("known_hosts changed on a second connection: %q", b2)
	}

	// The host comes back with another key on the same port.
	d.stop()
	startSSHDOn(t, d.Port)
	for _, mode := range []string{executors.HostKeyAcceptNew, executors.HostKeyStrict} {
		cfg.HostKeyCheck = mode
		_, err = executors.DialSSH(ctxT(t), cfg, nil)
		if !errors.Is(err, executors.ErrHostKeyMismatch) {
			t.Fatalf("%s: err = %v, want ErrHostKeyMismatch", mode, err)
		}
		for _, m := range []string{"db1", known + " line 1", "ssh-keygen -R"} {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("message %q should contain %q", err, m)
			}
		}
	}
	if b2, _ := os.ReadFile(known); string(b2) != string(b) {
		t.Errorf("known_hosts changed after a mismatch: %q", b2)
	}
}

func TestSSHJumpHost(t *testing.T) {
	target := startSSHD(t)
	for _, forwarding := range []string{"yes", "no"} {
		t.Run("forwarding "+forwarding, func(t *testing.T) {
			jumpHost := startSSHD(t, "AllowTcpForwarding "+forwarding)
			jump := jumpHost.config(t, "root")
			jump.Name = "bastion"
			cfg := target.config(t, sudoUser)
			cfg.Sudo = true
			cfg.Jump = &jump
			c, err := executors.DialSSH(ctxT(t), cfg, nil)
			if forwarding == "no" { // proves the connection goes through the jump host
				if err == nil || !strings.Contains(err.Error(), "bastion") {
					t.Fatalf("dial through a jump host that refuses forwarding: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			res, err := c.Run(ctxT(t), "id -un", nil)
			if err != nil || string(res.Stdout) != "root\n" {
				t.Errorf("got %q, %v", res.Stdout, err)
			}
		})
	}
}
