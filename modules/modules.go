// Package modules converges hosts, one file per domain (apt, files, systemd,
// users, sysctl, postgres, etcd, haproxy, keepalived, agent, backup). Each
// resource is a read-only fact probe, a pure diff of that fact against what
// the spec wants, and the steps that close the difference (after pyinfra's
// facts and operations). Most module tests need no host: they feed a fact
// fixture to Diff and compare the change and the step commands.
package modules

import (
	"context"
	"io"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// Host is all a module knows of a host.
type Host interface {
	Name() string
	// Run runs a shell command line (as root: the executor adds sudo where
	// needed). A non-zero exit is a Result, not an error.
	Run(ctx context.Context, cmd string, stdin io.Reader) (executors.Result, error)
	// PutFile writes a file atomically with the given ownership and mode.
	PutFile(ctx context.Context, path string, content io.Reader, attrs executors.FileAttrs) error
	// GetFile reads a whole file.
	GetFile(ctx context.Context, path string) ([]byte, error)
}

// Fact is what a resource's probe printed, and how it exited.
type Fact struct {
	Stdout   []byte
	ExitCode int
}

// Step is one thing apply does to a host to carry out a change.
type Step struct {
	// Desc is shown in progress output: "apt-get install nginx=1.22".
	Desc string
	// Cmd, when set, is a shell command run on the host; Run, when set,
	// does anything else (upload a file, run several commands). A step has
	// exactly one of them.
	Cmd string
	Run func(ctx context.Context, h Host) error
}

// Resource is one thing on one host that the spec wants in a given state.
type Resource interface {
	// Address names the resource in plans and in notify lists,
	// "kind.name": "file./etc/motd", "package.nginx", "service.haproxy".
	Address() string
	// Probe is a read-only shell command; what it prints is the fact
	// handed to Diff. It must not change the host.
	Probe() string
	// Diff compares the fact with the desired state. It is pure: a no-op
	// change and no steps when the host already matches.
	Diff(f Fact) (planner.Change, []Step, error)
}

// Notified is implemented by resources that act when others change (a
// service restarted when its config file changed). The engine calls it
// after diffing, with the addresses of the changed resources it watches,
// only when the resource's own Diff was a no-op.
type Notified interface {
	Resource
	Watches() []string
	Notify(changed []string) (planner.Change, []Step)
}
