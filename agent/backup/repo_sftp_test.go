package backup

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/pgherd/pgherd/agent/backup/backuptest"
)

const sshdBin = "/usr/sbin/sshd"

// startSSHD runs a real sshd on a free loopback port with a temporary
// configuration (root login by key, internal-sftp) and returns its address,
// the client's signer and the host key callback.
func startSSHD(t *testing.T) (string, ssh.Signer, ssh.HostKeyCallback) {
	t.Helper()
	if _, err := os.Stat(sshdBin); err != nil {
		t.Skipf("sshd not installed (apt-get install openssh-server): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("sshd test needs root")
	}
	dir := t.TempDir()
	writeKey := func(name string) (ssh.Signer, ssh.PublicKey) {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		signer, _ := ssh.NewSignerFromKey(priv)
		spub, _ := ssh.NewPublicKey(pub)
		return signer, spub
	}
	_, hostPub := writeKey("host_key")
	clientSigner, clientPub := writeKey("client_key")
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s/host_key
PidFile none
AuthorizedKeysFile %s/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
`, port, dir, dir)
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	cmd := exec.Command(sshdBin, "-D", "-e", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	backuptest.WaitListening(t, "sshd", addr)
	return addr, clientSigner, ssh.FixedHostKey(hostPub)
}

func TestSFTPRepo(t *testing.T) {
	addr, signer, hostKey := startSSHD(t)
	root := t.TempDir()
	repo, err := DialSFTP(t.Context(), SFTPConfig{Addr: addr, User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostKey, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	testRepository(t, repo)
	// The objects are plain files under root.
	if _, err := os.Stat(filepath.Join(root, "a", "b", "c.txt")); err != nil {
		t.Fatal(err)
	}
}
