package compile

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestCompileHA pins what the HA example compiles to on the lab's hosts:
// the phases, and on each host its resources in apply order.
func TestCompileHA(t *testing.T) {
	m, diags := spec.Load(spec.Input{Paths: []string{"../../examples/ha", "../../spec/testdata/examples/lab.hcl"}})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	prog, err := Compile(m, Options{AgentBinary: modules.AgentBinary{SHA256: "abc", GOARCH: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range prog.Phases {
		fmt.Fprintf(&b, "phase %q\n", p.Name)
		for _, h := range p.Hosts {
			fmt.Fprintf(&b, "  %s\n", h.Host)
			for _, r := range h.Resources {
				fmt.Fprintf(&b, "    %s\n", r.Address())
			}
		}
	}
	const golden = "testdata/ha.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("compiled program differs from %s (go test -update to accept):\n%s", golden, b.String())
	}
}

func TestCompileLimit(t *testing.T) {
	m, diags := spec.Load(spec.Input{Paths: []string{"../../examples/ha", "../../spec/testdata/examples/lab.hcl"}})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	if _, err := Compile(m, Options{Limit: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("an unknown -limit host: err = %v", err)
	}
	prog, err := Compile(m, Options{Limit: []string{"node3"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prog.Phases {
		for _, h := range p.Hosts {
			if h.Host != "node3" {
				t.Errorf("phase %s has host %s outside -limit", p.Name, h.Host)
			}
		}
	}
}
