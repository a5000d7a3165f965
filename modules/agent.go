package modules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// AgentBinaryPath is where pgherd installs itself on a host.
const AgentBinaryPath = "/usr/local/bin/pgherd"

// AgentUnit is the agent's systemd unit.
const AgentUnit = "pgherd-agent.service"

// reloadAgentCmd asks a running agent to apply its configuration again
// (SIGHUP): parameters, pg_hba.conf, roles and databases. An agent that is
// not active (restarting in place) applies them when it starts.
const reloadAgentCmd = "if systemctl is-active -q " + AgentUnit + "; then systemctl reload " + AgentUnit + "; fi"

// AgentBinary is the pgherd binary itself, uploaded to the host to run the
// agent (the same binary: `pgherd agent`). The host's architecture must
// match the binary's.
type AgentBinary struct {
	// Local is the binary to upload (the running pgherd).
	Local string
	// SHA256 is the hex digest of Local (see FileSHA256).
	SHA256 string
	// GOARCH is the binary's architecture (runtime.GOARCH for the running
	// pgherd).
	GOARCH string
}

// FileSHA256 is the hex SHA-256 of a local file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// NewAgentBinary describes the running pgherd binary.
func NewAgentBinary() (AgentBinary, error) {
	exe, err := os.Executable()
	if err != nil {
		return AgentBinary{}, fmt.Errorf("finding the pgherd binary to upload: %w", err)
	}
	sum, err := FileSHA256(exe)
	if err != nil {
		return AgentBinary{}, fmt.Errorf("reading the pgherd binary to upload: %w", err)
	}
	return AgentBinary{Local: exe, SHA256: sum, GOARCH: runtime.GOARCH}, nil
}

// Address implements Resource.
func (b AgentBinary) Address() string { return "agent_binary" }

// Probe implements Resource: the machine's architecture, then the digest
// of the installed binary or "absent".
func (b AgentBinary) Probe() string {
	return "uname -m; sha256sum " + AgentBinaryPath + " 2>/dev/null | cut -d' ' -f1 || true; [ -e " + AgentBinaryPath + " ] || echo absent"
}

// unameArch maps `uname -m` to Go's GOARCH.
var unameArch = map[string]string{"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}

// Diff implements Resource.
func (b AgentBinary) Diff(f Fact) (planner.Change, []Step, error) {
	ch := planner.Change{Resource: b.Address(), Action: planner.NoOp}
	lines := strings.Fields(string(f.Stdout))
	if len(lines) < 2 {
		return ch, nil, fmt.Errorf("agent binary: unexpected probe output %q: %w", f.Stdout, ErrProbe)
	}
	if arch := unameArch[lines[0]]; arch != b.GOARCH {
		return ch, nil, fmt.Errorf("the host is %s but this pgherd is built for %s: build pgherd for the hosts (GOARCH=%s): %w",
			lines[0], b.GOARCH, arch, ErrInvalid)
	}
	have := lines[1]
	if have == b.SHA256 {
		return ch, nil, nil
	}
	short := func(s string) string { return s[:min(12, len(s))] }
	if have == "absent" {
		ch.Action, ch.Reason = planner.Create, "pgherd is not installed"
		ch.Attrs = []planner.Attr{{Name: "sha256", After: short(b.SHA256)}}
	} else {
		ch.Action, ch.Reason = planner.Update, "another pgherd version is installed"
		ch.Attrs = []planner.Attr{{Name: "sha256", Before: short(have), After: short(b.SHA256)}}
	}
	step := Step{Desc: "upload " + AgentBinaryPath, Run: func(ctx context.Context, h Host) error {
		f, err := os.Open(b.Local)
		if err != nil {
			return err
		}
		defer f.Close()
		return h.PutFile(ctx, AgentBinaryPath, f, executors.FileAttrs{Mode: 0o755, Owner: "root", Group: "root"})
	}}
	// A running agent is replaced in place: SIGUSR2 makes it exit leaving
	// PostgreSQL and its leader lease to the next one, which systemd
	// starts at once (Restart=always): no failover.
	restart := Step{Desc: "restart the running agent in place (no failover)",
		Cmd: "if systemctl is-active -q " + AgentUnit + "; then systemctl kill --signal=SIGUSR2 --kill-whom=main " + AgentUnit + "; fi"}
	return ch, []Step{step, restart}, nil
}

// ClusterReady waits, on one database host, until the HA cluster has a
// leader and every expected member runs: the point after which the cluster
// can take SQL (roles, databases) and HAProxy has a primary to route to.
type ClusterReady struct {
	Cluster string
	// Members are the expected member names.
	Members []string
	// Detached are hosts of the spec that the plan detaches from the
	// cluster (DetachedMember): members under other names, still in the
	// DCS, have no host block, and the plan says pgherd cannot detach them.
	Detached []string
	// API is the local agent's address, "127.0.0.1:8008" (with TLS, the
	// host's address, which its certificate names).
	API string
	// TLSCA, when set, is the CA bundle the API's HTTPS is verified with.
	TLSCA string
	// Timeout bounds the wait (default 5 minutes).
	Timeout time.Duration
}

// Address implements Resource.
func (c ClusterReady) Address() string { return "cluster." + c.Cluster }

// Probe implements Resource: the agent's /cluster document, or a line
// saying why there is none.
func (c ClusterReady) Probe() string {
	return "[ -x " + AgentBinaryPath + " ] || { echo '#absent'; exit 0; }; " +
		agentStatusCmd(c.API, c.TLSCA) + " 2>/dev/null || echo '#unreachable'"
}

// agentStatusCmd prints the local agent's /cluster document.
func agentStatusCmd(api, tlsCA string) string {
	cmd := AgentBinaryPath + " agent status --api " + executors.Quote(api)
	if tlsCA != "" {
		cmd += " --tls-ca " + executors.Quote(tlsCA)
	}
	return cmd
}

// clusterDoc is the part of the agent's /cluster document ClusterReady reads.
type clusterDoc struct {
	Members []clusterMember `json:"members"`
}

type clusterMember struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	State string `json:"state"`
}

// missing lists what keeps the cluster from being ready ("" when ready).
func (c ClusterReady) missing(out []byte) string {
	s := strings.TrimSpace(string(out))
	switch s {
	case "#absent":
		return "the agent is not installed yet"
	case "#unreachable", "":
		return "the agent does not answer yet"
	}
	var doc clusterDoc
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return "the agent's answer is not readable: " + err.Error()
	}
	leader := false
	var notRunning []string
	for _, name := range c.Members {
		i := slices.IndexFunc(doc.Members, func(m clusterMember) bool { return m.Name == name })
		if i < 0 {
			notRunning = append(notRunning, name+" (not registered)")
			continue
		}
		m := doc.Members[i]
		if m.Role == "leader" && m.State == "running" {
			leader = true
			continue
		}
		if m.State != "running" && m.State != "streaming" {
			notRunning = append(notRunning, name+" ("+m.State+")")
		}
	}
	switch {
	case !leader:
		return "no running leader yet"
	case len(notRunning) > 0:
		return "members not running: " + strings.Join(notRunning, ", ")
	}
	return ""
}

// strangers lists the members the agent reports that are neither expected
// nor detached by the plan.
func (c ClusterReady) strangers(out []byte) []string {
	var doc clusterDoc
	if json.Unmarshal(bytes.TrimSpace(out), &doc) != nil {
		return nil
	}
	var s []string
	for _, m := range doc.Members {
		if !slices.Contains(c.Members, m.Name) && !slices.Contains(c.Detached, m.Name) {
			s = append(s, m.Name)
		}
	}
	return s
}

// Diff implements Resource.
func (c ClusterReady) Diff(f Fact) (planner.Change, []Step, error) {
	ch := planner.Change{Resource: c.Address(), Action: planner.NoOp}
	why := c.missing(f.Stdout)
	if why == "" {
		if s := c.strangers(f.Stdout); len(s) > 0 {
			ch.Action = planner.Update
			ch.Reason = "members not in the spec and without a host block, so pgherd cannot drain and detach them: " + strings.Join(s, ", ") +
				"; add a host block for each (apply then detaches it), or stop and disable " + AgentUnit + " on it by hand (docs/runbooks/scaling.md)"
			for _, n := range s {
				ch.Attrs = append(ch.Attrs, planner.Attr{Name: "member " + n, Before: "in the DCS", After: "(cannot detach: no host block)"})
			}
		}
		return ch, nil, nil
	}
	ch.Action, ch.Reason = planner.Update, why
	if strings.Contains(why, "not installed") {
		ch.Action, ch.Reason = planner.Create, "the cluster will be bootstrapped by the agents"
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	step := Step{Desc: "wait for the cluster to have a leader and every member running", Run: func(ctx context.Context, h Host) error {
		deadline := time.Now().Add(timeout)
		last := why
		for time.Now().Before(deadline) {
			res, err := h.Run(ctx, c.Probe(), nil)
			if err != nil {
				return err
			}
			if last = c.missing(res.Stdout); last == "" {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
		return fmt.Errorf("cluster %s not ready after %s: %s (see `journalctl -u pgherd-agent` on the database hosts)", c.Cluster, timeout, last)
	}}
	return ch, []Step{step}, nil
}

// BackupRepository is one of the cluster's backup repositories,
// initialized (its configuration, key check and salt written) with `pgherd
// backup init` as the postgres user, from the agent's configuration.
// pgherd never deletes or re-initializes a repository: an existing one
// that cannot be opened (a wrong passphrase, a server that does not answer)
// is an error of the plan. Watch names the agent's configuration file: the
// probe read the repository the file named before the apply, so when the
// file changes (the repository may have moved) the repository is checked
// again once it is written, and initialized if it is new.
type BackupRepository struct {
	Cluster string
	// Repo is the repository's name (--repo), "" for a cluster's single
	// unnamed repository.
	Repo  string
	Watch []string
}

// cmd is the pgherd backup subcommand sub for this repository, as the
// postgres user.
func (b BackupRepository) cmd(sub string) string {
	c := "runuser -u postgres -- " + AgentBinaryPath + " backup " + sub
	if b.Repo != "" {
		c += " --repo " + executors.Quote(b.Repo)
	}
	return c
}

// Watches implements Notified.
func (b BackupRepository) Watches() []string { return b.Watch }

// Notify implements Notified.
func (b BackupRepository) Notify(changed []string) (planner.Change, []Step) {
	ch := planner.Change{Resource: b.Address(), Action: planner.NoOp}
	if len(changed) == 0 {
		return ch, nil
	}
	ch.Action = planner.Update
	ch.Reason = "initialized if new; notified by " + strings.Join(changed, ", ")
	return ch, []Step{{Desc: "pgherd backup init unless initialized", Cmd: "out=$(" + b.cmd("list") + " 2>&1) && exit 0\n" +
		"case \"$out\" in *" + executors.Quote(backupNoConfig) + "*) exec " + b.cmd("init") + ";; esac\n" +
		"printf '%s\\n' \"$out\" >&2; exit 1"}}
}

// Address implements Resource: backup_repository.<cluster>, with
// .<name> for a named repository.
func (b BackupRepository) Address() string {
	if b.Repo != "" {
		return "backup_repository." + b.Cluster + "." + b.Repo
	}
	return "backup_repository." + b.Cluster
}

const backupNoConfig = "run pgherd backup init"

// Probe implements Resource: "#absent" before pgherd and its configuration
// are installed, else what `pgherd backup list` says.
func (b BackupRepository) Probe() string {
	return "[ -x " + AgentBinaryPath + " ] && [ -f /etc/pgherd/agent.json ] || { echo '#absent'; exit 0; }\n" +
		"if out=$(" + b.cmd("list") + " 2>&1); then echo '#ok'; else printf '%s\\n' \"$out\"; fi"
}

// Diff implements Resource.
func (b BackupRepository) Diff(f Fact) (planner.Change, []Step, error) {
	ch := planner.Change{Resource: b.Address(), Action: planner.NoOp}
	out := strings.TrimSpace(string(f.Stdout))
	init := []Step{{Desc: "pgherd backup init", Cmd: b.cmd("init")}}
	switch {
	case out == "#ok":
		return ch, nil, nil
	case out == "#absent":
		ch.Action, ch.Reason = planner.Create, "the repository is initialized once pgherd is installed"
		return ch, init, nil
	case strings.Contains(out, backupNoConfig):
		ch.Action, ch.Reason = planner.Create, "the repository is not initialized"
		return ch, init, nil
	}
	what := "backup repository of " + b.Cluster
	if b.Repo != "" {
		what = fmt.Sprintf("backup repository %q of %s", b.Repo, b.Cluster)
	}
	return ch, nil, fmt.Errorf("%s cannot be opened: %s: %w", what, out, ErrConflict)
}
