package executors_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSSHAgentAuth: keys of the local agent authenticate, and the agent is
// never forwarded to the host (where its root could use it), even by an
// sshd that allows forwarding.
func TestSSHAgentAuth(t *testing.T) {
	d := startSSHD(t, "AllowAgentForwarding yes")
	if _, err := exec.LookPath("ssh-agent"); err != nil {
		t.Skip("ssh-agent missing: apt-get install openssh-client")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not create its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
	add := exec.Command("ssh-add", fixture.keyFile)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)
	encrypted, _ := writeKey(dir, "id_encrypted", []byte("secret"))
	cfg := d.config(t, "root")
	cfg.KeyFiles = []string{encrypted} // skipped: the agent has the key
	cfg.UseAgent = true
	c := dial(t, cfg)
	if res, err := c.Run(ctxT(t), "echo via agent", nil); err != nil || string(res.Stdout) != "via agent\n" {
		t.Fatalf("got %q, %v", res.Stdout, err)
	}
	if res, err := c.Run(ctxT(t), `echo "agent socket: ${SSH_AUTH_SOCK:-none}"`, nil); err != nil || string(res.Stdout) != "agent socket: none\n" {
		t.Fatalf("the agent was forwarded: %q, %v", res.Stdout, err)
	}
}
