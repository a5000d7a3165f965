package compile

import (
	"testing"
	"time"

	"github.com/pgherd/pgherd/modules"
)

// TestCompileRollingGates: the spec's rolling block reaches every
// member's rolling step, in the rolling phase, one member at a time.
func TestCompileRollingGates(t *testing.T) {
	prog := compileFiles(t, "testdata/rolling.hcl", "../../spec/testdata/examples/lab.hcl")
	var rolls []modules.PostgresRoll
	for _, p := range prog.Phases {
		for _, h := range p.Hosts {
			for _, r := range h.Resources {
				if roll, ok := r.(modules.PostgresRoll); ok {
					if p.Name != "rolling" || !p.Serial {
						t.Errorf("%s's rolling step is in phase %q (serial %v)", roll.Member, p.Name, p.Serial)
					}
					rolls = append(rolls, roll)
				}
			}
		}
	}
	if len(rolls) != 2 {
		t.Fatalf("%d rolling steps, want one per member", len(rolls))
	}
	for _, r := range rolls {
		if r.MaxLagBytes != 64<<20 || r.MaxTransactionAge != 30*time.Second || r.Timeout != 10*time.Minute {
			t.Errorf("%s: gates %d bytes, %s, timeout %s; want the spec's 64MB, 30s, 10m", r.Member, r.MaxLagBytes, r.MaxTransactionAge, r.Timeout)
		}
	}
}
