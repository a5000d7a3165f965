package chaos

import (
	"os"
	"testing"

	"github.com/pgherd/pgherd/e2e/lab"
	"github.com/pgherd/pgherd/e2e/suite"
)

// The soak's own lab: three hosts with a data disk each (for the disk-full
// fault), on a subnet no other suite uses.
const (
	labName   = "pgherd-chaos"
	labNet    = "10.85.0"
	labDisk   = "512m"
	labSubnet = labNet + ".0/24"
)

var (
	// pgherdBin is the binary under test, built by TestMain.
	pgherdBin string
	theLab    *lab.Lab
)

func TestMain(m *testing.M) {
	// The default lab directory, so that `pgherd lab down --name
	// pgherd-chaos` cleans up (data disks included) after a kept or
	// interrupted run. The checker's unit tests need no lab.
	os.Exit(suite.Main(m, suite.Config{Name: "chaos", UnitsWithoutLab: true, DefaultLabDir: true,
		Lab: lab.Config{Name: labName, Hosts: 4, Subnet: labSubnet, DataDisk: labDisk}},
		func(e *suite.Env) error {
			pgherdBin, theLab = e.Bin, e.Lab
			return nil
		}))
}
