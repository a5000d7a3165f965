// The day-2 scenarios run against a 3-host HA cluster
// in their own lab (pgherd-e2e-day2 on 10.84.0.0/24; PGHERD_E2E_DAY2_LAB and
// PGHERD_E2E_DAY2_NET move it): a rolling minor upgrade 15.18 → 15.20, a
// rolling restart for shared_buffers, and an agent upgrade without a
// failover, all under a client that writes continuously and counts its
// acknowledged writes. The tests run only when PGHERD_E2E=1.

package day2

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/e2e/lab"
	"github.com/pgherd/pgherd/e2e/suite"
)

var (
	// pgherdBin is the binary under test; nextBin is the same code built
	// with another version string: a different agent binary to upgrade to.
	pgherdBin, nextBin string
	theLab             *lab.Lab
	labName            = suite.EnvOr("PGHERD_E2E_DAY2_LAB", "pgherd-e2e-day2")
	labNet             = suite.EnvOr("PGHERD_E2E_DAY2_NET", "10.84.0")
)

func labAddr(n int) string { return fmt.Sprintf("%s.%d", labNet, n) }

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m, suite.Config{Name: "e2e/day2", Versions: []string{"e2e-day2", "e2e-day2-next"},
		Lab: lab.Config{Name: labName, Hosts: 4, Subnet: labNet + ".0/24"}},
		func(e *suite.Env) error {
			pgherdBin, nextBin, theLab = e.Bins["e2e-day2"], e.Bins["e2e-day2-next"], e.Lab
			return nil
		}))
}

// result is what a run of pgherd left.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s\n--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs a pgherd binary with args in dir.
func run(t *testing.T, bin, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running pgherd %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("pgherd %s\n%s", strings.Join(args, " "), r)
	return r
}

// labSSH is the ssh block and host blocks that reach the lab's hosts.
// dbHosts are the lab's PostgreSQL hosts, node1..node3: examples/ha keeps
// its backup repository on node4.
func dbHosts() []lab.Host { return theLab.Hosts()[:3] }

func labSSH() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ssh {\n  user = \"root\"\n  private_key_file = %q\n  known_hosts_file = %q\n  use_agent = false\n  connect_timeout = \"3s\"\n}\n\n",
		theLab.KeyFile(), theLab.KnownHostsFile())
	for _, h := range theLab.Hosts() {
		fmt.Fprintf(&b, "host %q {\n  address = %q\n}\n\n", h.Name, h.Address)
	}
	return b.String()
}
