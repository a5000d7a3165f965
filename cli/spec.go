package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner/engine"
	"github.com/pgherd/pgherd/spec"
)

// specFlags are the flags of every command that reads a spec.
type specFlags struct {
	vars     []string
	varFiles []string
}

func (f *specFlags) register(c *cobra.Command) {
	c.Flags().StringArrayVar(&f.vars, "var", nil, "set a variable: -var 'name=value' (repeatable)")
	c.Flags().StringArrayVar(&f.varFiles, "var-file", nil, "read variables from an HCL file of name = value lines (repeatable)")
}

// load reads the spec at paths (default: the current directory) and prints
// its diagnostics. It returns nil, with the diagnostics printed, when the
// spec has errors.
func (a *app) load(paths []string, f *specFlags) (*spec.Model, error) {
	if len(paths) == 0 {
		paths = []string{"."}
	}
	m, diags := spec.Load(spec.Input{Paths: paths, Vars: f.vars, VarFiles: f.varFiles, Environ: a.env.Environ})
	if len(diags.Diags) > 0 {
		if err := diags.Write(a.env.Stderr, a.color(a.env.Stderr)); err != nil {
			return nil, err
		}
	}
	if diags.HasErrors() {
		return nil, &exitError{code: exitError1}
	}
	return m, nil
}

// maskedWriter masks every write. Writers of this package write whole
// documents or whole lines, so a secret is never split between two writes.
type maskedWriter struct {
	w    io.Writer
	mask func(string) string
}

func (m maskedWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(m.w, m.mask(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sshConfig is how the executor reaches host h of m.
func sshConfig(m *spec.Model, h spec.Host) executors.SSHConfig {
	cfg := executors.SSHConfig{
		Name:           h.Name,
		Address:        h.Address,
		Port:           m.SSH.Port,
		User:           m.SSH.User,
		UseAgent:       m.SSH.UseAgent,
		KnownHostsFile: m.SSH.KnownHostsFile,
		HostKeyCheck:   string(m.SSH.HostKeyCheck),
		Sudo:           m.SSH.Sudo,
		ConnectTimeout: m.SSH.ConnectTimeout,
		CommandTimeout: m.SSH.CommandTimeout,
	}
	if m.SSH.PrivateKeyFile != "" {
		cfg.KeyFiles = []string{m.SSH.PrivateKeyFile}
	}
	if h.Port != 0 {
		cfg.Port = h.Port
	}
	if h.User != "" {
		cfg.User = h.User
	}
	if m.SSH.JumpHost != "" {
		jump := cfg
		jump.Name = "jump host " + m.SSH.JumpHost
		jump.Jump = nil
		user, hostport, ok := strings.Cut(m.SSH.JumpHost, "@")
		if !ok {
			hostport, user = user, cfg.User
		}
		jump.User = user
		jump.Address, jump.Port = splitHostPort(hostport, 22)
		cfg.Jump = &jump
	}
	return cfg
}

func splitHostPort(s string, def int) (string, int) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return s, def
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil {
		return host, def
	}
	return host, p
}

// connector returns the engine's way to reach the hosts of m, through a
// pool that keeps one SSH connection per host. The caller closes the pool.
func connector(m *spec.Model, pool *executors.Pool) func(ctx context.Context, name string) (engine.Host, error) {
	return func(ctx context.Context, name string) (engine.Host, error) {
		i := slices.IndexFunc(m.Hosts, func(h spec.Host) bool { return h.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("host %q is not in the spec", name)
		}
		return pool.Get(ctx, sshConfig(m, m.Hosts[i]))
	}
}
