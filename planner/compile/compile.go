// Package compile turns a decoded spec into the program the engine runs:
// per host, the resources the spec wants there, in the order they are
// applied.
package compile

import (
	"fmt"
	"slices"
	"time"

	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner/engine"
	"github.com/pgherd/pgherd/spec"
)

// Options are the choices of one compilation.
type Options struct {
	// Limit, when not empty, keeps only the named hosts.
	Limit []string
	// AgentBinary is the pgherd binary installed on database hosts
	// (modules.NewAgentBinary for the running one); needed only when the
	// spec has a cluster.
	AgentBinary modules.AgentBinary
	// RemoveData names hosts detached from the cluster whose PostgreSQL
	// data directory is deleted; a detached host keeps it otherwise.
	RemoveData []string
	// Leader is the cluster's leader now, when known: the rolling
	// procedure takes it last.
	Leader string
	// Now is when TLS certificates are judged (expiry) and issued; zero:
	// the time of the compilation.
	Now time.Time
}

// Compile builds the program for the hosts of m: first the generic
// resources of every host, then the phases of the HA cluster, if any.
func Compile(m *spec.Model, opts Options) (*engine.Program, error) {
	limit := opts.Limit
	for _, name := range limit {
		if !slices.ContainsFunc(m.Hosts, func(h spec.Host) bool { return h.Name == name }) {
			return nil, fmt.Errorf("-limit names host %q, which the spec does not declare", name)
		}
	}
	for _, name := range opts.RemoveData {
		if m.Cluster == nil || !slices.ContainsFunc(m.Hosts, func(h spec.Host) bool { return h.Name == name }) ||
			slices.Contains(m.Cluster.Postgres.Hosts, name) {
			return nil, fmt.Errorf("-remove-data names %q, which is not a host of the spec outside the cluster's postgres hosts: "+
				"only the data of a host detached from the cluster can be deleted", name)
		}
	}
	prog := &engine.Program{SpecDigest: spec.Digest(m)}
	phase := engine.Phase{Name: "hosts"}
	for _, h := range m.Hosts {
		if len(limit) > 0 && !slices.Contains(limit, h.Name) {
			continue
		}
		prog.Hosts = append(prog.Hosts, h.Name)
		phase.Hosts = append(phase.Hosts, engine.HostResources{Host: h.Name, Resources: hostResources(m, h)})
	}
	prog.Phases = append(prog.Phases, phase)
	if m.Cluster != nil {
		keep := func(name string) bool { return len(limit) == 0 || slices.Contains(limit, name) }
		now := opts.Now
		if now.IsZero() {
			now = time.Now()
		}
		phases, err := clusterPhases(m, m.Cluster, keep, opts.AgentBinary, opts.RemoveData, opts.Leader, now)
		if err != nil {
			return nil, err
		}
		prog.Phases = append(prog.Phases, phases...)
	}
	return prog, nil
}

// targets reports whether a resource targeted at t belongs on host h.
func targets(t spec.Target, h spec.Host) bool {
	if len(t.Hosts) == 0 && len(t.Roles) == 0 {
		return true
	}
	if slices.Contains(t.Hosts, h.Name) {
		return true
	}
	for _, r := range t.Roles {
		if slices.Contains(h.Roles, r) {
			return true
		}
	}
	return false
}

// hostResources lists the generic resources of one host in apply order:
// groups and users before the files they own, packages before the files
// that configure them, services last so that they start on the final
// configuration.
func hostResources(m *spec.Model, h spec.Host) []modules.Resource {
	var rs []modules.Resource
	for _, g := range m.Groups {
		if targets(g.Target, h) {
			rs = append(rs, &modules.Group{Name: g.Name, GID: g.GID, System: g.System, Absent: g.State == spec.Absent})
		}
	}
	for _, u := range m.Users {
		if targets(u.Target, h) {
			rs = append(rs, &modules.User{Name: u.Name, UID: u.UID, Group: u.Group, Groups: u.Groups, Home: u.Home,
				Shell: u.Shell, System: u.System, Absent: u.State == spec.Absent})
		}
	}
	var pkgs []modules.Package
	for _, p := range m.Packages {
		if targets(p.Target, h) {
			pkgs = append(pkgs, modules.Package{Name: p.Name, Version: p.Version, Hold: p.Hold, Absent: p.State == spec.Absent})
		}
	}
	if len(pkgs) > 0 {
		rs = append(rs, &modules.Packages{Packages: pkgs})
	}
	for _, d := range m.Directories {
		if targets(d.Target, h) {
			rs = append(rs, &modules.Directory{Path: d.Path, Owner: d.Owner, Group: d.Group, Mode: d.Mode, Absent: d.State == spec.Absent})
		}
	}
	for _, f := range m.Files {
		if targets(f.Target, h) {
			rs = append(rs, &modules.File{Path: f.Path, Content: f.Content, Owner: f.Owner, Group: f.Group, Mode: f.Mode,
				Sensitive: f.Sensitive, Absent: f.State == spec.Absent, NotifyList: f.Notify})
		}
	}
	for _, s := range m.Sysctls {
		if targets(s.Target, h) {
			rs = append(rs, &modules.Sysctl{Key: s.Key, Value: s.Value})
		}
	}
	for _, s := range m.Services {
		if targets(s.Target, h) {
			rs = append(rs, &modules.Service{Name: s.Name, Enabled: s.Enabled, State: s.State, Reload: s.Reload,
				Unit: s.Unit, Watch: watchers(m, "service."+s.Name)})
		}
	}
	return rs
}

// watchers lists the addresses of the resources whose notify names addr.
func watchers(m *spec.Model, addr string) []string {
	var w []string
	for _, f := range m.Files {
		if slices.Contains(f.Notify, addr) {
			w = append(w, "file."+f.Path)
		}
	}
	return w
}
