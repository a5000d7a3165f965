// Package e2e runs pgherd as a user would, against the lab's real Debian
// hosts. The tests run only when PGHERD_E2E=1 (make test and make e2e set
// it); they build the pgherd binary and bring up their own lab, named
// pgherd-e2e on 10.79.0.0/24, so that they never touch a user's lab: four
// hosts, as examples/ha needs (the database hosts node1..node3, the backup
// repository's SFTP server node4).
// PGHERD_E2E_LAB and PGHERD_E2E_NET (the first three octets of a /24, such
// as "10.90.0") move it, so that two checkouts can run their suites side by
// side.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/e2e/lab"
	"github.com/pgherd/pgherd/e2e/suite"
)

var (
	// pgherdBin is the binary under test, built by TestMain.
	pgherdBin string
	// theLab is the lab every test of the package shares.
	theLab *lab.Lab
	// workDir outlives every test of the package (removed by TestMain):
	// for what tests share, such as the applied HA spec.
	workDir string
	// labName and labNet name the e2e lab and its /24 ("10.79.0").
	labName = suite.EnvOr("PGHERD_E2E_LAB", "pgherd-e2e")
	labNet  = suite.EnvOr("PGHERD_E2E_NET", "10.79.0")
)

// labAddr is the address .n on the e2e lab's network.
func labAddr(n int) string { return fmt.Sprintf("%s.%d", labNet, n) }

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m, suite.Config{Name: "e2e", Lab: lab.Config{Name: labName, Hosts: 4, Subnet: labNet + ".0/24"}},
		func(e *suite.Env) error {
			pgherdBin, theLab, workDir = e.Bin, e.Lab, e.Dir
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

// pgherd runs the binary with args in dir and returns what it printed.
func pgherd(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(pgherdBin, args...)
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

// labSSH is the ssh block and host blocks that reach the lab's hosts, with
// the known_hosts file given.
func labSSH(knownHosts string, extraHosts ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ssh {\n  user = \"root\"\n  private_key_file = %q\n  known_hosts_file = %q\n  use_agent = false\n  connect_timeout = \"3s\"\n}\n\n",
		theLab.KeyFile(), knownHosts)
	for _, h := range theLab.Hosts() {
		fmt.Fprintf(&b, "host %q {\n  address = %q\n}\n\n", h.Name, h.Address)
	}
	for _, h := range extraHosts {
		b.WriteString(h)
	}
	return b.String()
}

// writeSpec writes files (name → content) into a fresh directory.
func writeSpec(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// onHost runs a shell command on a lab host through docker exec.
func onHost(t *testing.T, host, script string) string {
	t.Helper()
	out, err := theLab.Exec(context.Background(), host, "sh", "-c", script)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", host, script, err, out)
	}
	return strings.TrimSpace(out)
}

// growLab adds a host to the shared lab and returns its name.
func growLab(ctx context.Context, t *testing.T) string {
	t.Helper()
	n := len(theLab.Hosts()) + 1
	resizeLab(ctx, t, n)
	return fmt.Sprintf("node%d", n)
}

// shrinkLab gives the shared lab back its first n hosts (a test's cleanup
// after growLab).
func shrinkLab(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	resizeLab(ctx, t, n)
}

func resizeLab(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := lab.Up(ctx, lab.Config{Name: labName, Hosts: n, Subnet: labNet + ".0/24", Dir: theLab.Dir(), Log: log})
	if err != nil {
		t.Fatalf("resizing the lab to %d hosts: %v", n, err)
	}
	theLab = l
}
