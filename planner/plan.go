// Package planner holds the plan as plain data: what would change on which
// host, and why. It is a leaf package: the engine that computes and applies a
// plan, the renderers and the plan file all import it, and it imports none of
// them (after Terraform's internal/plans).
package planner

import (
	"fmt"
	"time"
)

// Action says what a change does to a resource.
type Action string

const (
	NoOp   Action = "no-op"
	Create Action = "create"
	Update Action = "update"
	Delete Action = "delete"
)

// Symbol is the one-character mark a plan shows before a change.
func (a Action) Symbol() string {
	switch a {
	case Create:
		return "+"
	case Update:
		return "~"
	case Delete:
		return "-"
	default:
		return " "
	}
}

// Attr is one attribute of a resource that differs between the host and the
// spec. A sensitive attribute's values are never rendered.
type Attr struct {
	Name      string `json:"name"`
	Before    string `json:"before,omitempty"`
	After     string `json:"after,omitempty"`
	Sensitive bool   `json:"sensitive,omitempty"`
}

// Change is what the plan would do to one resource on one host.
type Change struct {
	Host     string `json:"host"`
	Resource string `json:"resource"` // address, e.g. "file./etc/motd"
	Action   Action `json:"action"`
	// Reason says in words why the change is needed ("content differs",
	// "package not installed", "notified by file./etc/x").
	Reason string `json:"reason,omitempty"`
	Attrs  []Attr `json:"attributes,omitempty"`
	// Diff is a unified diff of a text file's content; empty when the file
	// is sensitive, binary or too large.
	Diff      string `json:"diff,omitempty"`
	Sensitive bool   `json:"sensitive,omitempty"`
	// Impact says what clients of the host will notice ("reload",
	// "restart needed", "no client impact"); empty when nothing is known.
	Impact string `json:"impact,omitempty"`
}

// IsNoOp reports whether the change does nothing.
func (c Change) IsNoOp() bool { return c.Action == NoOp || c.Action == "" }

// FormatVersion is the version of the plan's JSON form. It changes only
// when a field changes meaning or goes away.
const FormatVersion = 1

// Plan is the whole set of changes for one run, in the order apply will
// carry them out.
type Plan struct {
	FormatVersion int `json:"format_version"`
	// SpecDigest identifies the desired state the plan was made from; a
	// saved plan is refused when the spec no longer gives the same digest.
	SpecDigest string   `json:"spec_digest"`
	Hosts      []string `json:"hosts"`
	Changes    []Change `json:"changes"`
	// HostErrors lists the hosts that could not be planned (unreachable,
	// a probe or a diff failed). Their changes are unknown: a plan with
	// host errors is incomplete and cannot be applied.
	HostErrors []HostError `json:"errors,omitempty"`
}

// HostError is a host that could not be planned, and why.
type HostError struct {
	Host  string `json:"host"`
	Error string `json:"error"`
}

// Summary counts a plan's changes by action.
type Summary struct {
	Create int `json:"add"`
	Update int `json:"change"`
	Delete int `json:"destroy"`
}

// Summarize counts the changes of the plan that do something.
func (p *Plan) Summarize() Summary {
	var s Summary
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			s.Create++
		case Update:
			s.Update++
		case Delete:
			s.Delete++
		}
	}
	return s
}

// HasChanges reports whether applying the plan would change anything.
func (p *Plan) HasChanges() bool {
	s := p.Summarize()
	return s.Create+s.Update+s.Delete > 0
}

// String is the summary line Terraform users know.
func (s Summary) String() string {
	if s.Create+s.Update+s.Delete == 0 {
		return "No changes. The hosts match the spec."
	}
	return fmt.Sprintf("Plan: %d to add, %d to change, %d to destroy.", s.Create, s.Update, s.Delete)
}

// EventKind says what happened in a progress Event.
type EventKind string

const (
	// HostConnected: a host was reached.
	HostConnected EventKind = "host-connected"
	// HostFailed: a host could not be reached or planned.
	HostFailed EventKind = "host-failed"
	// ResourceStart: apply starts to change a resource.
	ResourceStart EventKind = "resource-start"
	// ResourceDone: a resource was changed.
	ResourceDone EventKind = "resource-done"
	// ResourceUnchanged: a resource planned for a change matched the spec
	// when it was probed again just before acting, so nothing was done.
	ResourceUnchanged EventKind = "resource-unchanged"
	// ResourceFailed: a step of a resource failed.
	ResourceFailed EventKind = "resource-failed"
)

// Event is one line of progress: a host connected, a resource started,
// finished or failed. Err is already masked of sensitive values.
type Event struct {
	Kind     EventKind     `json:"kind"`
	Host     string        `json:"host"`
	Resource string        `json:"resource,omitempty"`
	Action   Action        `json:"action,omitempty"`
	Step     string        `json:"step,omitempty"` // the step running or failed
	Elapsed  time.Duration `json:"elapsed,omitempty"`
	Err      string        `json:"error,omitempty"`
}

// Recap is what an apply did, host by host, like Ansible's PLAY RECAP.
type Recap struct {
	Hosts   []HostRecap   `json:"hosts"`
	Elapsed time.Duration `json:"elapsed"`
	// Interrupted is set when the apply stopped on a cancel before the
	// end; the next apply resumes where it stopped.
	Interrupted bool `json:"interrupted,omitempty"`
}

// HostRecap is what an apply did on one host. Each resource of the host
// is in exactly one of the lists (OK, Changed, Failed, Skipped).
type HostRecap struct {
	Host string `json:"host"`
	// OK are the resources that already matched the spec.
	OK []string `json:"ok,omitempty"`
	// Changed are the resources apply changed.
	Changed []string `json:"changed,omitempty"`
	// Failed are the resources whose probe or step failed.
	Failed []Failure `json:"failed,omitempty"`
	// Skipped are the resources not visited: after a failure on the
	// host or in an earlier phase, or after an interrupt.
	Skipped []string      `json:"skipped,omitempty"`
	Elapsed time.Duration `json:"elapsed"`
}

// Failure is a resource that failed, with the error (masked).
type Failure struct {
	Resource string `json:"resource"`
	Error    string `json:"error"`
}

// Failed reports whether any resource failed on any host.
func (r *Recap) Failed() bool {
	for _, h := range r.Hosts {
		if len(h.Failed) > 0 {
			return true
		}
	}
	return false
}
