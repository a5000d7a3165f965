package executors_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	sshdPath   = "/usr/sbin/sshd"
	sudoUser   = "pgherdtest"   // passwordless sudo
	noSudoUser = "pgherdnosudo" // no sudo rights
	sudoersF   = "/etc/sudoers.d/pgherdtest"
)

// fixture is what TestMain sets up once for the package: users, a client
// key authorized for root and both users, and the check that we can run a
// real sshd at all (skipReason is set otherwise).
var fixture struct {
	skipReason string
	dir        string // authorized keys live in dir/auth/<user>
	keyFile    string // the client key, authorized for everyone
	otherKey   string // a key authorized for no one
	pubKey     ssh.PublicKey
}

func TestMain(m *testing.M) {
	code := func() int {
		// The users and the sudoers file are the machine's, not this run's:
		// two runs at once (two checkouts) take turns instead of deleting
		// each other's users.
		unlock, err := lockMachine("/tmp/pgherd-executors-test.lock")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer unlock()
		dir, err := os.MkdirTemp("", "pgherd-executors-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		fixture.dir = dir
		cleanup, err := setupHosts(dir)
		defer cleanup()
		if err != nil {
			fixture.skipReason = err.Error()
		}
		return m.Run()
	}()
	os.Exit(code)
}

// lockMachine holds an exclusive flock on path until unlock; the kernel
// drops it if the process dies, so it cannot go stale.
func lockMachine(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func setupHosts(dir string) (cleanup func(), err error) {
	cleanup = func() {}
	if os.Geteuid() != 0 {
		return cleanup, fmt.Errorf("sshd tests need root (to run sshd and create users)")
	}
	if _, err := os.Stat(sshdPath); err != nil {
		return cleanup, fmt.Errorf("%s missing: apt-get install openssh-server", sshdPath)
	}
	if _, err := exec.LookPath("sudo"); err != nil {
		return cleanup, fmt.Errorf("sudo missing: apt-get install sudo")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return cleanup, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // sshd reads keys as the user
		return cleanup, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "auth"), 0o755); err != nil {
		return cleanup, err
	}
	var pub ssh.PublicKey
	fixture.keyFile, pub = writeKey(dir, "id_client", nil)
	fixture.otherKey, _ = writeKey(dir, "id_other", nil)
	fixture.pubKey = pub
	removeUsers := func() {
		for _, u := range []string{sudoUser, noSudoUser} {
			exec.Command("userdel", "-r", "-f", u).Run()
		}
		os.Remove(sudoersF)
	}
	removeUsers() // leftovers of an interrupted run
	cleanup = removeUsers
	for _, u := range []string{sudoUser, noSudoUser} {
		if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", u).CombinedOutput(); err != nil {
			return cleanup, fmt.Errorf("useradd %s: %v: %s", u, err, out)
		}
		// "*" instead of useradd's "!": no password, yet not a locked account.
		if out, err := exec.Command("usermod", "-p", "*", u).CombinedOutput(); err != nil {
			return cleanup, fmt.Errorf("usermod %s: %v: %s", u, err, out)
		}
	}
	if err := os.WriteFile(sudoersF, []byte(sudoUser+" ALL=(ALL) NOPASSWD: ALL\n"), 0o440); err != nil {
		return cleanup, err
	}
	line := ssh.MarshalAuthorizedKey(pub)
	for _, u := range []string{"root", sudoUser, noSudoUser} {
		if err := os.WriteFile(filepath.Join(dir, "auth", u), line, 0o644); err != nil {
			return cleanup, err
		}
	}
	return cleanup, nil
}

// writeKey writes a new ed25519 private key in OpenSSH format, encrypted
// when passphrase is set.
func writeKey(dir, name string, passphrase []byte) (string, ssh.PublicKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	var block *pem.Block
	if passphrase != nil {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", passphrase)
	} else {
		block, err = ssh.MarshalPrivateKey(priv, "")
	}
	if err != nil {
		panic(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		panic(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return path, sshPub
}

// sshd is a real sshd listening on loopback.
type sshd struct {
	Port    int
	HostKey ssh.PublicKey
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startSSHD runs /usr/sbin/sshd on a free loopback port with a new host key;
// it is stopped when the test ends.
func startSSHD(t *testing.T, extra ...string) *sshd {
	t.Helper()
	if fixture.skipReason != "" {
		t.Skip(fixture.skipReason)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return startSSHDOn(t, port, extra...)
}

// startSSHDOn runs sshd on port with a new host key; extra lines are added
// to its configuration.
func startSSHDOn(t *testing.T, port int, extra ...string) *sshd {
	t.Helper()
	dir := t.TempDir()
	hostKey, hostPub := writeKey(dir, "host_key", nil)
	// sshd takes an option's first value: extra may allow forwarding.
	agentForwarding := "AllowAgentForwarding no"
	if i := slices.IndexFunc(extra, func(l string) bool { return strings.HasPrefix(l, "AllowAgentForwarding ") }); i >= 0 {
		agentForwarding, extra = extra[i], slices.Delete(slices.Clone(extra), i, i+1)
	}
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s/auth/%%u
PidFile none
UsePAM no
StrictModes no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
%s
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, port, hostKey, fixture.dir, agentForwarding) + strings.Join(extra, "\n") + "\n"
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfgFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s := &sshd{Port: port, HostKey: hostPub, dir: dir, cmd: cmd, exited: exited}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("sshd log:\n%s", stderr.String())
		}
	})
	// Wait until it accepts connections.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return s
		}
		select {
		case <-exited:
			t.Fatalf("sshd exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %d: %s", port, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the listening sshd (sessions already open keep their own
// process until their connection ends).
func (s *sshd) stop() {
	s.cmd.Process.Kill()
	<-s.exited
}

// knownHosts writes a known_hosts file that trusts this sshd.
func (s *sshd) knownHosts(t *testing.T) string {
	t.Helper()
	return s.knownHostsFor(t, s.Port)
}

// knownHostsFor writes a known_hosts file that trusts this sshd's key on
// 127.0.0.1:port.
func (s *sshd) knownHostsFor(t *testing.T, port int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", port, ssh.MarshalAuthorizedKey(s.HostKey))
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func itoa(i int) string { return strconv.Itoa(i) }
