package compile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/modules"
)

// TestCompileBackupRepositories pins what two backup repositories compile
// to: on each database host, the backup resources in apply order (the
// key files of each sftp repository; each repository initialized, a shared
// one once), the backup section of agent.json and the full backup unit.
func TestCompileBackupRepositories(t *testing.T) {
	prog := compileFiles(t, "testdata/backup_repos.hcl", "../../spec/testdata/examples/lab.hcl")
	var b strings.Builder
	var agentJSON, unit string
	for _, p := range prog.Phases {
		for _, h := range p.Hosts {
			for _, r := range h.Resources {
				addr := r.Address()
				if strings.Contains(addr, "backup") {
					fmt.Fprintf(&b, "%s: %s\n", h.Host, addr)
				}
				switch r := r.(type) {
				case modules.File:
					if r.Path == agent.ConfigPath && h.Host == "node1" {
						agentJSON = r.Content
					}
				case modules.Service:
					if r.Name == "pgherd-backup-full.service" && h.Host == "node1" {
						unit = r.Unit
					}
				}
			}
		}
	}
	var cfg struct{ Backup json.RawMessage }
	if err := json.Unmarshal([]byte(agentJSON), &cfg); err != nil {
		t.Fatalf("agent.json of node1: %v\n%s", err, agentJSON)
	}
	var section bytes.Buffer
	if err := json.Indent(&section, cfg.Backup, "", "  "); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "\nagent.json backup section:\n%s\n\npgherd-backup-full.service:\n%s", section.String(), unit)
	checkGolden(t, "testdata/backup_repos.golden", b.String())
	// The agent reads what apply writes.
	var back agent.BackupConfig
	if err := json.Unmarshal(cfg.Backup, &back); err != nil || back.Check() != nil || len(back.Repositories) != 2 {
		t.Errorf("the agent reads the backup section as %+v, %v", back, back.Check())
	}
}
