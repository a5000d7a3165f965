// The major-upgrade scenario runs against two clusters in their own lab
// (pgherd-e2e-major on 10.95.0.0/24; PGHERD_E2E_MAJOR_LAB and
// PGHERD_E2E_MAJOR_NET move it): the old one, PostgreSQL 15 on
// node1..node3 behind a VIP, and the new one, PostgreSQL 17 from trixie on
// node4. A client writes continuously through a multi-host connection
// string while pgherd upgrade major moves the databases over. The test
// runs only when PGHERD_E2E=1.

package major

import (
	"os"
	"testing"

	"github.com/pgherd/pgherd/e2e/lab"
	"github.com/pgherd/pgherd/e2e/suite"
)

var (
	pgherdBin string
	theLab    *lab.Lab
	labName   = suite.EnvOr("PGHERD_E2E_MAJOR_LAB", "pgherd-e2e-major")
	labNet    = suite.EnvOr("PGHERD_E2E_MAJOR_NET", "10.95.0")
)

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m, suite.Config{Name: "e2e/major", Versions: []string{"e2e-major"},
		Lab: lab.Config{Name: labName, Hosts: 4, Subnet: labNet + ".0/24"}},
		func(e *suite.Env) error {
			pgherdBin, theLab = e.Bin, e.Lab
			return nil
		}))
}
