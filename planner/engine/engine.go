// Package engine computes a plan from a compiled program and the facts of
// the hosts, and applies it: phases in order, hosts of a phase in parallel
// (bounded), the resources of a host in order. Every probe of a host is
// read in one round trip when planning; just before acting, apply probes a
// resource again and skips it when it already matches (no stale facts).
//
// Notifications (a service restarted when its config file changed) survive
// an interrupted apply. Before apply changes a resource R, it appends R's
// address to <StateDir>/pending/<address of the notified resource,
// path-escaped> on the host, for every Notified resource of the host that
// watches R; it removes that marker once the notified resource was handled
// (notified, changed on its own, or found to need nothing). Plan reads the
// markers in the same batch as the probes and treats the addresses in a
// marker as changed for its notified resource, so the next plan shows the
// restart that is still owed and the next apply carries it out. A marker
// whose notified resource left the spec is ignored and stays.
//
// Goroutines: Plan and Apply start at most Parallelism goroutines per
// phase and wait for all of them before they return; nothing outlives a
// call.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner"
)

// LockPath is the file each host is locked with during an apply, so that
// two applies never touch a host at once.
const LockPath = "/run/pgherd.lock"

// DefaultStateDir is where the engine keeps its state on a host: the
// notifications still owed (pending/).
const DefaultStateDir = "/var/lib/pgherd"

// Sentinel errors; test them with errors.Is.
var (
	// ErrPlanStale: a saved plan no longer matches the hosts or the spec.
	ErrPlanStale = errors.New("saved plan is stale: the hosts or the spec changed since it was made")
	// ErrHostErrors: some hosts could not be planned, so nothing is applied.
	ErrHostErrors = errors.New("some hosts could not be planned")
	// ErrApplyFailed: a step failed on some host.
	ErrApplyFailed = errors.New("apply failed")
	// ErrInterrupted is wrapped, together with context.Canceled, in the
	// error of an apply stopped by its context.
	ErrInterrupted = errors.New("interrupted: the next apply resumes where this one stopped")
)

// Host is what the engine needs of a host: a module host plus a lock. Lock
// returns an error wrapping executors.ErrLocked, naming the holder, when
// another process holds the lock. *executors.SSH and *executors.Local are
// Hosts. The engine never closes a Host: whoever provides Engine.Connect
// owns the connections (an executors.Pool, say).
type Host interface {
	modules.Host
	Lock(ctx context.Context, path string) (unlock func() error, err error)
}

// Program is the compiled spec: phases run in order; inside a phase hosts
// run in parallel (bounded) unless Serial; inside a host resources run in
// order. A resource address appears at most once per host.
type Program struct {
	// SpecDigest identifies the desired state; it is copied into the plan.
	SpecDigest string
	// Hosts are all the hosts of the spec, in display order.
	Hosts  []string
	Phases []Phase
}

// Phase is one step of the program ("etcd", "postgres", "haproxy").
type Phase struct {
	Name   string
	Serial bool
	Hosts  []HostResources
}

// HostResources are the resources of one host in one phase, in order.
type HostResources struct {
	Host      string
	Resources []modules.Resource
}

// Event and Recap are plain data, defined in planner so that renderers
// need not import the engine.
type (
	// Event is a progress event.
	Event = planner.Event
	// Recap is what an apply did.
	Recap = planner.Recap
)

// Engine plans and applies programs. The zero value is not usable: Connect
// is required. An Engine may be used for several calls, one at a time or
// concurrently.
type Engine struct {
	// Connect reaches a host. It is called at most once per host per
	// Plan or Apply call.
	Connect func(ctx context.Context, host string) (Host, error)
	// Parallelism bounds how many hosts are worked on at once; default 10.
	Parallelism int
	// Log receives debug and info records; nil discards them.
	Log *slog.Logger
	// Progress, when set, is called for each Event. Calls are serialized
	// by the engine.
	Progress func(Event)
	// Mask masks sensitive values in any text that leaves the engine
	// (errors, progress, recap); nil leaves text as it is.
	Mask func(string) string
	// Abort, when closed, cancels the steps still running after the
	// apply's context was cancelled (a second Ctrl-C). Nil: a running step
	// always runs to its end.
	Abort <-chan struct{}
	// StateDir is the engine's directory on each host; default
	// DefaultStateDir.
	StateDir string

	progressMu sync.Mutex
}

func (e *Engine) parallelism() int {
	if e.Parallelism <= 0 {
		return 10
	}
	return e.Parallelism
}

func (e *Engine) log() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}

func (e *Engine) stateDir() string {
	if e.StateDir == "" {
		return DefaultStateDir
	}
	return e.StateDir
}

func (e *Engine) mask(s string) string {
	if e.Mask == nil {
		return s
	}
	return e.Mask(s)
}

// maskErr returns err with its text masked, still wrapping err for
// errors.Is and errors.As.
func (e *Engine) maskErr(err error) error {
	if err == nil || e.Mask == nil {
		return err
	}
	return &maskedError{msg: e.Mask(err.Error()), err: err}
}

type maskedError struct {
	msg string
	err error
}

func (m *maskedError) Error() string { return m.msg }
func (m *maskedError) Unwrap() error { return m.err }

func (e *Engine) emit(ev Event) {
	if e.Progress == nil {
		return
	}
	ev.Err = e.mask(ev.Err)
	ev.Step = e.mask(ev.Step)
	e.progressMu.Lock()
	defer e.progressMu.Unlock()
	e.Progress(ev)
}

// session connects each host at most once during one Plan or Apply call.
type session struct {
	e     *Engine
	mu    sync.Mutex
	conns map[string]*conn
}

type conn struct {
	once sync.Once
	host Host
	err  error
}

func (e *Engine) newSession() *session {
	return &session{e: e, conns: map[string]*conn{}}
}

// host returns the connection to name, connecting on first use.
func (s *session) host(ctx context.Context, name string) (Host, error) {
	s.mu.Lock()
	c := s.conns[name]
	if c == nil {
		c = &conn{}
		s.conns[name] = c
	}
	s.mu.Unlock()
	c.once.Do(func() {
		if s.e.Connect == nil {
			c.err = errors.New("engine: no Connect function")
			return
		}
		start := time.Now()
		c.host, c.err = s.e.Connect(ctx, name)
		if c.err == nil {
			s.e.emit(Event{Kind: planner.HostConnected, Host: name, Elapsed: time.Since(start)})
		} else {
			c.err = fmt.Errorf("connect: %w", c.err)
		}
	})
	return c.host, c.err
}

// forEachHost runs fn for each host with at most limit at once, and waits
// for all of them.
func forEachHost(hosts []string, limit int, fn func(host string)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for _, h := range hosts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(h)
		}()
	}
	wg.Wait()
}
