package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/e2e/interrupt"
)

// foundationSpec manages files, a package, a user and group, a directory
// and a systemd unit on every lab host.
const foundationSpec = `
variable "secret" {
  sensitive = true
  default   = "s3cr3t-e2e-value"
}

group "e2e" {}

user "e2e" {
  group = "e2e"
  shell = "/bin/sh"
}

directory "/srv/e2e" {
  owner = "e2e"
  group = "e2e"
  mode  = "0750"
}

file "/srv/e2e/app.conf" {
  content = "listen = 8080\nworkers = 4\n"
  owner   = "e2e"
  notify  = ["service.e2e-app"]
}

file "/srv/e2e/token" {
  content = var.secret
  owner   = "e2e"
  mode    = "0600"
}

service "e2e-app" {
  enabled = true
  state   = "running"
  unit    = <<-EOT
    [Unit]
    Description=pgherd e2e service

    [Service]
    ExecStart=/bin/sleep infinity

    [Install]
    WantedBy=multi-user.target
  EOT
}
`

func TestFoundation(t *testing.T) {
	dir := writeSpec(t, map[string]string{
		"lab.hcl":  labSSH(theLab.KnownHostsFile()),
		"main.hcl": foundationSpec,
	})

	r := pgherd(t, dir, "apply", "-auto-approve", ".")
	if r.code != 0 {
		t.Fatalf("first apply failed: %s", r)
	}
	assertNoSecret(t, r, "s3cr3t-e2e-value")
	for _, h := range theLab.Hosts() {
		if got := onHost(t, h.Name, "systemctl is-active e2e-app; stat -c '%U %a' /srv/e2e/token; cat /srv/e2e/token"); got != "active\ne2e 600\ns3cr3t-e2e-value" {
			t.Fatalf("%s after apply: %q", h.Name, got)
		}
	}

	t.Run("second plan is empty", func(t *testing.T) {
		r := pgherd(t, dir, "plan", "-detailed-exitcode", ".")
		if r.code != 0 || !strings.Contains(r.stdout, "No changes") {
			t.Fatalf("want no changes and exit 0: %s", r)
		}
	})

	t.Run("drift on one host is shown and repaired", func(t *testing.T) {
		onHost(t, "node2", "echo 'workers = 64' >> /srv/e2e/app.conf")
		r := pgherd(t, dir, "plan", "-detailed-exitcode", ".")
		if r.code != 2 {
			t.Fatalf("want exit 2 for drift: %s", r)
		}
		if !strings.Contains(r.stdout, "file./srv/e2e/app.conf") || !strings.Contains(r.stdout, "+workers = 64") && !strings.Contains(r.stdout, "-workers = 64") {
			t.Fatalf("plan does not show the drifted file and its diff: %s", r)
		}
		js := pgherd(t, dir, "plan", "-json", ".")
		var doc struct {
			Changes []struct {
				Host, Resource, Action string
			} `json:"changes"`
		}
		if err := json.Unmarshal([]byte(js.stdout), &doc); err != nil {
			t.Fatalf("plan -json: %v\n%s", err, js)
		}
		var changed []string
		for _, c := range doc.Changes {
			if c.Action != "no-op" {
				changed = append(changed, c.Host+" "+c.Resource+" "+c.Action)
			}
		}
		// The file changed, and the service it notifies would restart.
		want := []string{"node2 file./srv/e2e/app.conf update", "node2 service.e2e-app.service update"}
		if strings.Join(changed, "\n") != strings.Join(want, "\n") {
			t.Fatalf("plan -json changes:\n%s\nwant:\n%s", strings.Join(changed, "\n"), strings.Join(want, "\n"))
		}
		if r := pgherd(t, dir, "apply", "-auto-approve", "."); r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
		if r := pgherd(t, dir, "plan", "-detailed-exitcode", "."); r.code != 0 {
			t.Fatalf("after repair: %s", r)
		}
	})

	t.Run("saved plan is refused when the host changed", func(t *testing.T) {
		onHost(t, "node1", "chmod 0644 /srv/e2e/token")
		planFile := filepath.Join(dir, "plan.out")
		if r := pgherd(t, dir, "plan", "-out", planFile, "."); r.code != 0 {
			t.Fatalf("plan -out: %s", r)
		}
		onHost(t, "node3", "rm /srv/e2e/app.conf")
		r := pgherd(t, dir, "apply", "-plan", planFile, ".")
		if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "node3") {
			t.Fatalf("want a refusal naming node3: %s", r)
		}
		if got := onHost(t, "node1", "stat -c %a /srv/e2e/token"); got != "644" {
			t.Fatalf("a refused plan changed node1: mode %s", got)
		}
		if r := pgherd(t, dir, "apply", "-auto-approve", "."); r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
	})

	t.Run("interrupted apply is finished by the next one", func(t *testing.T) {
		// A package install is slow enough to interrupt.
		more := foundationSpec + `
package "tree" {}

file "/srv/e2e/after-package" {
  content = "written after the package\n"
}
`
		dir2 := writeSpec(t, map[string]string{"lab.hcl": labSSH(theLab.KnownHostsFile()), "main.hcl": more})
		ir, err := interrupt.Run(pgherdBin, dir2, func(line string) bool {
			return strings.Contains(line, "packages") && strings.Contains(line, "node")
		}, 0, "apply", "-auto-approve", ".")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("interrupted apply:\n%s\n%s", ir.Stdout, ir.Stderr)
		if !ir.Interrupted {
			t.Fatalf("never saw the packages step start")
		}
		if ir.Code == 0 {
			t.Fatalf("an interrupted apply exited 0")
		}
		if !strings.Contains(ir.Stderr, "interrupt") {
			t.Fatalf("no word of the interruption on stderr")
		}
		r := pgherd(t, dir2, "apply", "-auto-approve", ".")
		if r.code != 0 {
			t.Fatalf("resuming apply: %s", r)
		}
		if r := pgherd(t, dir2, "plan", "-detailed-exitcode", "."); r.code != 0 {
			t.Fatalf("after the resumed apply: %s", r)
		}
	})

	t.Run("an unreachable host is named and the others are planned", func(t *testing.T) {
		ghost := "host \"ghost\" {\n  address = \"" + labAddr(99) + "\"\n}\n"
		dir3 := writeSpec(t, map[string]string{"lab.hcl": labSSH(theLab.KnownHostsFile(), ghost), "main.hcl": foundationSpec})
		start := time.Now()
		r := pgherd(t, dir3, "plan", "-detailed-exitcode", ".")
		if r.code != 1 || !strings.Contains(r.stderr, "ghost") {
			t.Fatalf("want exit 1 naming ghost: %s", r)
		}
		if !strings.Contains(r.stdout, "node1") || strings.Contains(r.stderr, "node1") {
			t.Fatalf("node1 should be planned normally: %s", r)
		}
		t.Logf("plan with an unreachable host took %s", time.Since(start))
	})

	t.Run("a wrong host key is refused for that host only", func(t *testing.T) {
		known, err := os.ReadFile(theLab.KnownHostsFile())
		if err != nil {
			t.Fatal(err)
		}
		// A key that is not node3's, under node3's name.
		keyDir := t.TempDir()
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(keyDir, "k")).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
		pub, err := os.ReadFile(filepath.Join(keyDir, "k.pub"))
		if err != nil {
			t.Fatal(err)
		}
		other := strings.Fields(string(pub))
		var lines []string
		node3 := theLab.Hosts()[2].Address
		for _, l := range strings.Split(strings.TrimSpace(string(known)), "\n") {
			if fields := strings.Fields(l); len(fields) >= 3 && (fields[0] == node3 || strings.HasPrefix(fields[0], "["+node3+"]")) {
				l = fields[0] + " " + other[0] + " " + other[1]
			}
			lines = append(lines, l)
		}
		bad := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(bad, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		dir4 := writeSpec(t, map[string]string{"lab.hcl": labSSH(bad), "main.hcl": foundationSpec})
		r := pgherd(t, dir4, "plan", "-detailed-exitcode", ".")
		if r.code != 1 || !strings.Contains(r.stderr, "node3") || !strings.Contains(strings.ToLower(r.stderr), "host key") {
			t.Fatalf("want exit 1 naming node3's host key: %s", r)
		}
		if strings.Contains(r.stderr, "node1") {
			t.Fatalf("node1 should be unaffected: %s", r)
		}
	})
}

func assertNoSecret(t *testing.T, r result, secret string) {
	t.Helper()
	if strings.Contains(r.stdout, secret) || strings.Contains(r.stderr, secret) {
		t.Fatalf("the sensitive value was printed: %s", r)
	}
}

// TestExamplesPlan plans every example that needs no cluster against the
// lab: each must plan without an error (exit 0 or 2).
func TestExamplesPlan(t *testing.T) {
	entries, err := os.ReadDir("../examples")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "ha" { // examples/ha is applied by TestHA
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			dir := writeSpec(t, map[string]string{"lab.hcl": labSSH(theLab.KnownHostsFile())})
			abs, err := filepath.Abs(filepath.Join("../examples", e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			r := pgherd(t, dir, "plan", "-detailed-exitcode", abs, ".")
			if r.code != 0 && r.code != 2 {
				t.Fatalf("plan of examples/%s: %s", e.Name(), r)
			}
		})
	}
}
