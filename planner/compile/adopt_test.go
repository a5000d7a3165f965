package compile

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/spec"
)

// TestCompileAdopt: with postgres.adopt, the adopted host's migration comes
// before anything else of the cluster there, its /etc/postgresql cluster
// directory is kept (retired, not removed) and its unit may still run the
// adopted postmaster; the other hosts are set up as in any cluster, and
// every agent knows whom it waits for.
func TestCompileAdopt(t *testing.T) {
	dir := t.TempDir()
	src := `cluster "shop" {
  postgres {
    hosts                = ["node1", "node2", "node3"]
    adopt                = "node2"
    superuser_password   = "su-pw-for-a-test"
    replication_password = "repl-pw-for-a-test"
    hba {
      database = "shop"
      user     = "shop"
      address  = "10.77.0.0/24"
    }
  }
  etcd {
    hosts = ["node1", "node2", "node3"]
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	m, diags := spec.Load(spec.Input{Paths: []string{dir, "../../spec/testdata/examples/lab.hcl"}})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	prog, err := Compile(m, Options{AgentBinary: modules.AgentBinary{SHA256: "abc", GOARCH: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prog.Phases {
		if p.Name != "etcd and postgres" {
			continue
		}
		for _, h := range p.Hosts {
			var addrs []string
			for _, r := range h.Resources {
				addrs = append(addrs, r.Address())
				if f, ok := r.(modules.File); ok && f.Path == agent.ConfigPath && !strings.Contains(f.Content, `"adopt": "node2"`) {
					t.Errorf("%s: the agent's configuration does not name the adopted member:\n%s", h.Host, f.Content)
				}
				if u, ok := r.(modules.UnitMask); ok && u.MayRun != (h.Host == "node2") {
					t.Errorf("%s: %s MayRun = %v", h.Host, u.Address(), u.MayRun)
				}
			}
			adopt := slices.Index(addrs, "postgres_adopt.15/main")
			keeps := !slices.Contains(addrs, "directory./etc/postgresql/15/main")
			switch h.Host {
			case "node2":
				if adopt < 0 || adopt > slices.Index(addrs, "service.pgherd-agent.service") || adopt > slices.Index(addrs, "unit_mask.postgresql@15-main.service") {
					t.Errorf("node2: the migration must come before the unit mask and the agent: %v", addrs)
				}
				if !keeps {
					t.Errorf("node2: /etc/postgresql/15/main must be kept: %v", addrs)
				}
			default:
				if adopt >= 0 || keeps {
					t.Errorf("%s: a new host has no migration and no Debian cluster directory: %v", h.Host, addrs)
				}
			}
		}
		return
	}
	t.Fatal("no phase \"etcd and postgres\"")
}
