package modules

import (
	"path/filepath"
	"strings"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// PgHBA is pg_hba.conf in a data directory the pgherd agent owns: the agent
// writes it (at bootstrap, at start and on reload), this resource detects a
// hand edit and asks the agent to write it again (a reload). Before the
// data directory is initialized there is nothing to compare: the agent
// writes it when it creates the cluster.
type PgHBA struct {
	DataDir string
	Content string
}

func (p PgHBA) file() File {
	return File{Path: filepath.Join(p.DataDir, "pg_hba.conf"), Content: p.Content, Owner: "postgres", Group: "postgres", Mode: "0600"}
}

// Address implements Resource.
func (p PgHBA) Address() string { return "pg_hba" }

// Probe implements Resource.
func (p PgHBA) Probe() string {
	return "if [ ! -f " + executors.Quote(filepath.Join(p.DataDir, "PG_VERSION")) + " ]; then echo '#uninitialized'; exit 0; fi\n" + p.file().Probe()
}

// Diff implements Resource: the file's diff, repaired by the agent.
func (p PgHBA) Diff(f Fact) (planner.Change, []Step, error) {
	if strings.TrimSpace(string(f.Stdout)) == "#uninitialized" {
		return planner.Change{Resource: p.Address(), Action: planner.NoOp}, nil, nil
	}
	ch, _, err := p.file().Diff(f)
	ch.Resource = p.Address()
	if err != nil || ch.IsNoOp() {
		return ch, nil, err
	}
	ch.Action = planner.Update
	ch.Impact = "reload"
	return ch, []Step{{Desc: "ask the agent to write pg_hba.conf again (reload)",
		Cmd: reloadAgentCmd}}, nil
}
