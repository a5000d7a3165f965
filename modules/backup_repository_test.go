package modules

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/planner"
)

// TestBackupRepositoryNotify: a changed agent configuration (the
// repository may have moved) makes apply check the repository again and
// initialize it only if it is new.
func TestBackupRepositoryNotify(t *testing.T) {
	b := BackupRepository{Cluster: "lab", Watch: []string{"file./etc/pgherd/agent.json"}}
	if ch, steps := b.Notify(nil); !ch.IsNoOp() || len(steps) != 0 {
		t.Fatalf("nothing changed: %+v %+v", ch, steps)
	}
	ch, steps := b.Notify([]string{"file./etc/pgherd/agent.json"})
	if ch.Action != planner.Update || len(steps) != 1 {
		t.Fatalf("agent.json changed: %+v %+v", ch, steps)
	}
	cmd := steps[0].Cmd
	for _, want := range []string{AgentBinaryPath + " backup list", AgentBinaryPath + " backup init", backupNoConfig} {
		if !strings.Contains(cmd, want) {
			t.Errorf("the step does not contain %q:\n%s", want, cmd)
		}
	}
	if out, err := exec.Command("sh", "-n", "-c", cmd).CombinedOutput(); err != nil {
		t.Errorf("the step is not valid sh: %v: %s\n%s", err, out, cmd)
	}
}

// TestBackupRepositoryNamed: a named repository (one of several) has its
// own address, and every command names it.
func TestBackupRepositoryNamed(t *testing.T) {
	b := BackupRepository{Cluster: "lab", Repo: "offsite", Watch: []string{"file./etc/pgherd/agent.json"}}
	if got := b.Address(); got != "backup_repository.lab.offsite" {
		t.Errorf("address %q", got)
	}
	_, steps := b.Notify([]string{"file./etc/pgherd/agent.json"})
	_, init, _ := b.Diff(Fact{Stdout: []byte("#absent\n")})
	for _, cmd := range []string{b.Probe(), steps[0].Cmd, init[0].Cmd} {
		if n := strings.Count(cmd, AgentBinaryPath+" backup "); n == 0 || strings.Count(cmd, " --repo offsite") != n {
			t.Errorf("a command does not name the repository:\n%s", cmd)
		}
	}
	_, _, err := b.Diff(Fact{Stdout: []byte("Error: wrong encryption passphrase\n")})
	if err == nil || !strings.Contains(err.Error(), `backup repository "offsite" of lab`) {
		t.Errorf("a repository that cannot be opened: %v", err)
	}
}
