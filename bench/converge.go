package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgherd/pgherd/e2e/lab"
)

// The same 12 tasks, for pgherd and for Ansible.
const convergeSpec = `
group "bench" {}

user "bench" {
  group = "bench"
  shell = "/bin/sh"
}

directory "/srv/bench" {
  owner = "bench"
  mode  = "0755"
}

directory "/srv/bench/conf" {
  owner = "bench"
  mode  = "0750"
}

%s
package "sudo" {}

service "ssh" {
  enabled = true
  state   = "running"
}
`

const convergePlaybook = `- hosts: all
  gather_facts: false
  tasks:
    - group: {name: bench}
    - user: {name: bench, group: bench, shell: /bin/sh}
    - file: {path: /srv/bench, state: directory, owner: bench, mode: "0755"}
    - file: {path: /srv/bench/conf, state: directory, owner: bench, mode: "0750"}
%s    - apt: {name: sudo, state: present}
    - systemd: {name: ssh, enabled: true, state: started}
`

// pythonSpec installs what Ansible needs on its targets (not counted).
const pythonSpec = `package "python3" {}
`

func converge(ctx context.Context, log *slog.Logger, bin, work string, counts []int, runs int, keep bool) (string, error) {
	var files, tasks strings.Builder
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&files, "file \"/srv/bench/conf/f%d.conf\" {\n  content = \"setting%d = %d\\n\"\n  owner = \"bench\"\n  mode = \"0640\"\n}\n\n", i, i, i)
		fmt.Fprintf(&tasks, "    - copy: {dest: /srv/bench/conf/f%d.conf, content: \"setting%d = %d\\n\", owner: bench, mode: \"0640\"}\n", i, i, i)
	}
	spec := fmt.Sprintf(convergeSpec, files.String())
	playbook := fmt.Sprintf(convergePlaybook, tasks.String())

	var b strings.Builder
	b.WriteString("## Convergence: a no-op run of 12 tasks (pgherd vs Ansible)\n\n")
	fmt.Fprintf(&b, "Machine: %s. Lab hosts are Docker containers on this machine (see docs/lab.md).\n", machine())
	b.WriteString("Tasks: a group, a user, 2 directories, 6 files, a package, a service (the same in both tools).\n")
	b.WriteString("pgherd: `plan` and `apply -auto-approve` with the default parallelism (10). ")
	b.WriteString("Ansible: `ansible-playbook` with forks=10, pipelining on, fact gathering off, SSH ControlPersist (its fastest settings).\n")
	fmt.Fprintf(&b, "Figures are medians of %d runs (Ansible at 30 hosts: 1 run, it is slow).\n\n", runs)
	b.WriteString("| hosts | pgherd first apply | pgherd no-op plan | pgherd no-op apply | Ansible first run | Ansible no-op run | Ansible --check |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|\n")

	for _, n := range counts {
		log.Info("converge: bringing up the lab", "hosts", n)
		l, err := lab.Up(ctx, lab.Config{Name: "pgherd-bench", Hosts: n, Subnet: "10.80.0.0/24", Dir: filepath.Join(work, fmt.Sprintf("lab%d", n)), Log: log})
		if err != nil {
			return "", err
		}
		row, err := convergeRow(ctx, log, bin, work, l, n, runs, spec, playbook)
		if !keep {
			if derr := l.Down(ctx); derr != nil && err == nil {
				err = derr
			}
		}
		if err != nil {
			return "", err
		}
		b.WriteString(row)
	}
	b.WriteString("\nTargets (issue 2): no-op plan ≤ 1 s on 3 hosts and ≤ 2 s on 30.\n")
	return b.String(), nil
}

func convergeRow(ctx context.Context, log *slog.Logger, bin, work string, l *lab.Lab, n, runs int, spec, playbook string) (string, error) {
	dir := filepath.Join(work, fmt.Sprintf("spec%d", n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lab := l.SpecSnippet()
	write := func(name, content string) error {
		return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	if err := write("lab.hcl", lab); err != nil {
		return "", err
	}
	pg := func(args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, bin, append(args, "-parallelism", "10", dir)...)
		c.Env = append(os.Environ(), "NO_COLOR=1")
		return c
	}

	// Ansible needs python3 on its targets: installed first, not timed.
	if err := write("main.hcl", pythonSpec); err != nil {
		return "", err
	}
	log.Info("converge: installing python3 for Ansible", "hosts", n)
	if _, err := timed(pg("apply", "-auto-approve")); err != nil {
		return "", err
	}
	if err := write("main.hcl", spec); err != nil {
		return "", err
	}

	log.Info("converge: pgherd first apply", "hosts", n)
	first, err := timed(pg("apply", "-auto-approve"))
	if err != nil {
		return "", err
	}
	var plans, applies []time.Duration
	for i := 0; i < runs; i++ {
		d, err := timed(pg("plan", "-detailed-exitcode"))
		if err != nil {
			return "", fmt.Errorf("the no-op plan found changes or failed: %w", err)
		}
		plans = append(plans, d)
		d, err = timed(pg("apply", "-auto-approve"))
		if err != nil {
			return "", err
		}
		applies = append(applies, d)
	}

	// Ansible on the same hosts, after removing what pgherd made so that its
	// first run does the same work.
	for _, h := range l.Hosts() {
		if _, err := l.Exec(ctx, h.Name, "sh", "-c", "rm -rf /srv/bench; userdel bench; groupdel bench; true"); err != nil {
			return "", err
		}
	}
	adir := filepath.Join(work, fmt.Sprintf("ansible%d", n))
	if err := os.MkdirAll(adir, 0o755); err != nil {
		return "", err
	}
	var inv strings.Builder
	inv.WriteString("[all]\n")
	for _, h := range l.Hosts() {
		fmt.Fprintf(&inv, "%s ansible_host=%s\n", h.Name, h.Address)
	}
	cfg := fmt.Sprintf(`[defaults]
inventory = inventory
forks = 10
host_key_checking = True
remote_user = root
private_key_file = %s
interpreter_python = /usr/bin/python3
stdout_callback = default

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=%s
`, l.KeyFile(), l.KnownHostsFile())
	for name, content := range map[string]string{"inventory": inv.String(), "ansible.cfg": cfg, "site.yml": playbook} {
		if err := os.WriteFile(filepath.Join(adir, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	ans := func(extra ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, "ansible-playbook", append([]string{"site.yml"}, extra...)...)
		c.Dir = adir
		c.Env = append(os.Environ(), "ANSIBLE_CONFIG="+filepath.Join(adir, "ansible.cfg"))
		return c
	}
	log.Info("converge: Ansible first run", "hosts", n)
	afirst, err := timed(ans())
	if err != nil {
		return "", err
	}
	aruns := runs
	if n > 10 {
		aruns = 1
	}
	var anoop, acheck []time.Duration
	for i := 0; i < aruns; i++ {
		d, err := timed(ans())
		if err != nil {
			return "", err
		}
		anoop = append(anoop, d)
		d, err = timed(ans("--check"))
		if err != nil {
			return "", err
		}
		acheck = append(acheck, d)
	}
	return fmt.Sprintf("| %d | %s | %s | %s | %s | %s | %s |\n", n,
		sec(first), sec(median(plans)), sec(median(applies)), sec(afirst), sec(median(anoop)), sec(median(acheck))), nil
}

func sec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
