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
