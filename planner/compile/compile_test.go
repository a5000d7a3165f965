package compile

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner/engine"
	"github.com/pgherd/pgherd/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestCompileHA pins what the HA example compiles to on the lab's hosts:
// the phases, and on each host its resources in apply order.
func TestCompileHA(t *testing.T) {
	prog := compileFiles(t, "../../examples/ha", "../../spec/testdata/examples/lab.hcl")
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
	checkGolden(t, "testdata/ha.golden", b.String())
}

// compileFiles compiles the spec of these files and directories.
func compileFiles(t *testing.T, paths ...string) *engine.Program {
	t.Helper()
	m, diags := spec.Load(spec.Input{Paths: paths})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	prog, err := Compile(m, Options{AgentBinary: modules.AgentBinary{SHA256: "abc", GOARCH: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

// checkGolden compares got with the golden file, which go test -update
// rewrites.
func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("compiled program differs from %s (go test -update to accept):\n%s", golden, got)
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

// TestPGParameters: crash recovery flushes each file system at once
// (syncfs) on the versions that have the setting, unless the spec says
// otherwise.
func TestPGParameters(t *testing.T) {
	for _, tc := range []struct {
		version int
		spec    map[string]string
		want    string
	}{
		{15, nil, "syncfs"},
		{17, nil, "syncfs"},
		{14, nil, "syncfs"},
		{13, nil, ""},
		{15, map[string]string{"recovery_init_sync_method": "fsync"}, "fsync"},
	} {
		c := &spec.Cluster{Postgres: spec.Postgres{Version: tc.version, Parameters: tc.spec}}
		if got := pgParameters(c, agent.TLSFiles{})["recovery_init_sync_method"]; got != tc.want {
			t.Errorf("PostgreSQL %d with %v: recovery_init_sync_method %q, want %q", tc.version, tc.spec, got, tc.want)
		}
	}
}
