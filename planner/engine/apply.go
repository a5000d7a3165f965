package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner"
)

// hostState is what apply knows of one host across phases. Only the
// goroutine working on the host in the current phase touches it.
type hostState struct {
	plan    *hostPlan
	host    Host
	recap   *planner.HostRecap
	changed map[string]bool // changed by this apply
	// pending: notified address -> watched addresses whose change it owes
	// (from the markers read at plan time and the ones written now).
	pending map[string][]string
	failed  bool
	start   time.Time
}

// Apply makes the hosts match the program. With saved == nil it plans
// first; otherwise it plans again and refuses (ErrPlanStale, listing what
// differs) when the new plan is not the saved one. It locks every host
// with changes (LockPath) before touching any, then runs the phases in
// order: hosts in parallel (Parallelism; one at a time when Serial), the
// resources of a host in order. Each resource with a change is probed
// again just before its steps run and skipped when it already matches.
//
// A failing step stops the remaining resources of its host; the other
// hosts of the phase go on, and later phases do not start (ErrApplyFailed).
// When ctx is cancelled no new step starts, running steps finish (unless
// Abort is closed) and the error wraps ErrInterrupted and
// context.Canceled. The recap is returned whenever apply started to run
// phases, with or without an error.
func (e *Engine) Apply(ctx context.Context, prog *Program, saved *planner.Plan) (*Recap, error) {
	start := time.Now()
	s := e.newSession()
	p, plans, err := e.plan(ctx, s, prog)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w (%w)", ErrInterrupted, ctx.Err())
	}
	if len(p.HostErrors) > 0 {
		var b strings.Builder
		for _, he := range p.HostErrors {
			fmt.Fprintf(&b, "\n  %s: %s", he.Host, he.Error)
		}
		return nil, fmt.Errorf("%w; nothing was applied:%s", ErrHostErrors, b.String())
	}
	if saved != nil {
		if diffs := DiffPlans(saved, p); len(diffs) > 0 {
			return nil, e.maskErr(fmt.Errorf("%w:\n  %s", ErrPlanStale, strings.Join(diffs, "\n  ")))
		}
	}

	states := map[string]*hostState{}
	recap := &Recap{}
	var toLock []string
	for _, h := range p.Hosts {
		hp := plans[h]
		st := &hostState{plan: hp, recap: &planner.HostRecap{Host: h}, changed: map[string]bool{}, pending: map[string][]string{}}
		for k, v := range hp.pending {
			st.pending[k] = slices.Clone(v)
		}
		states[h] = st
		if hostHasChanges(p, h) {
			toLock = append(toLock, h)
		}
	}

	unlock, err := e.lockAll(ctx, s, toLock)
	if err != nil {
		return nil, err
	}
	defer unlock()

	// Steps run with a context that the first cancel does not reach, so a
	// running step ends cleanly; Abort (a second Ctrl-C) cancels it.
	stepCtx, cancelSteps := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSteps()
	if e.Abort != nil {
		go func() { // exits when Apply returns (cancelSteps) or on Abort
			select {
			case <-e.Abort:
				cancelSteps()
			case <-stepCtx.Done():
			}
		}()
	}

	stopped := false // a host failed in an earlier phase, or interrupted
	for _, ph := range prog.Phases {
		if stopped || ctx.Err() != nil {
			for _, hr := range ph.Hosts {
				skipAll(states[hr.Host], hr.Resources)
			}
			continue
		}
		limit := e.parallelism()
		if ph.Serial {
			limit = 1
		}
		hosts := make([]string, len(ph.Hosts))
		byHost := map[string][]modules.Resource{}
		for i, hr := range ph.Hosts {
			hosts[i] = hr.Host
			byHost[hr.Host] = hr.Resources
		}
		e.log().Info("phase", "name", ph.Name, "hosts", len(hosts))
		forEachHost(hosts, limit, func(h string) {
			st := states[h]
			if st.start.IsZero() {
				st.start = time.Now()
			}
			e.applyHost(ctx, stepCtx, s, st, byHost[h])
			st.recap.Elapsed = time.Since(st.start)
		})
		for _, h := range hosts {
			if states[h].failed {
				stopped = true
			}
		}
	}

	var failures []string
	for _, h := range p.Hosts {
		st := states[h]
		recap.Hosts = append(recap.Hosts, *st.recap)
		for _, f := range st.recap.Failed {
			failures = append(failures, fmt.Sprintf("%s %s: %s", h, f.Resource, f.Error))
		}
	}
	recap.Elapsed = time.Since(start)
	switch {
	case ctx.Err() != nil:
		recap.Interrupted = true
		err := fmt.Errorf("%w (%w)", ErrInterrupted, ctx.Err())
		if len(failures) > 0 {
			err = fmt.Errorf("%w; %w:\n  %s", err, ErrApplyFailed, strings.Join(failures, "\n  "))
		}
		return recap, err
	case len(failures) > 0:
		return recap, fmt.Errorf("%w:\n  %s", ErrApplyFailed, strings.Join(failures, "\n  "))
	}
	return recap, nil
}

func hostHasChanges(p *planner.Plan, host string) bool {
	for _, c := range p.Changes {
		if c.Host == host && !c.IsNoOp() {
			return true
		}
	}
	return false
}

// lockAll locks the hosts in parallel; if any lock fails it releases the
// others and returns an error naming every host it could not lock.
func (e *Engine) lockAll(ctx context.Context, s *session, hosts []string) (unlock func(), err error) {
	var mu sync.Mutex
	unlocks := map[string]func() error{}
	var errs []error
	forEachHost(hosts, e.parallelism(), func(name string) {
		h, err := s.host(ctx, name)
		var un func() error
		if err == nil {
			un, err = h.Lock(ctx, LockPath)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("lock %s on %s: %w", LockPath, name, err))
			return
		}
		unlocks[name] = un
	})
	release := func() {
		for name, un := range unlocks {
			if err := un(); err != nil {
				e.log().Warn("unlock", "host", name, "err", e.mask(err.Error()))
			}
		}
	}
	if len(errs) > 0 {
		release()
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, e.maskErr(fmt.Errorf("cannot lock every host, nothing was applied: %w", errors.Join(errs...)))
	}
	return release, nil
}

func skipAll(st *hostState, rs []modules.Resource) {
	for _, r := range rs {
		st.recap.Skipped = append(st.recap.Skipped, r.Address())
	}
}

// applyHost carries out the changes of one host in one phase.
func (e *Engine) applyHost(ctx, stepCtx context.Context, s *session, st *hostState, rs []modules.Resource) {
	name := st.plan.name
	log := e.log().With("host", name)
	for i, r := range rs {
		if st.failed || ctx.Err() != nil {
			skipAll(st, rs[i:])
			return
		}
		addr := r.Address()
		planned := st.plan.changes[addr]
		n, notified := r.(modules.Notified)
		var trig []string
		if notified {
			trig = triggers(n, st.changed, st.pending[addr])
		}
		if planned.IsNoOp() && len(trig) == 0 {
			st.recap.OK = append(st.recap.OK, addr)
			continue
		}
		if st.host == nil {
			h, err := s.host(ctx, name)
			if err != nil {
				e.fail(st, addr, "", time.Now(), err)
				skipAll(st, rs[i+1:])
				return
			}
			st.host = h
		}
		done, err := e.applyResource(ctx, stepCtx, st, r, trig)
		if err != nil {
			log.Info("resource failed", "resource", addr, "err", e.mask(err.Error()))
		}
		if !done && !st.failed { // interrupted between steps
			skipAll(st, rs[i:i+1])
		}
	}
}

func (e *Engine) fail(st *hostState, addr, step string, start time.Time, err error) {
	msg := e.mask(err.Error())
	st.failed = true
	st.recap.Failed = append(st.recap.Failed, planner.Failure{Resource: addr, Error: msg})
	e.emit(Event{Kind: planner.ResourceFailed, Host: st.plan.name, Resource: addr, Step: step, Elapsed: time.Since(start), Err: msg})
}

// applyResource probes r again, diffs (and notifies) and runs the steps.
// It reports whether the resource was handled to the end (changed or found
// unchanged); false without st.failed means interrupted between steps.
func (e *Engine) applyResource(ctx, stepCtx context.Context, st *hostState, r modules.Resource, trig []string) (bool, error) {
	addr := r.Address()
	name := st.plan.name
	h := st.host
	start := time.Now()

	res, err := h.Run(stepCtx, r.Probe(), nil)
	if err != nil {
		err = fmt.Errorf("probe: %w", err)
		e.fail(st, addr, "", start, err)
		return false, err
	}
	c, steps, err := r.Diff(modules.Fact{Stdout: res.Stdout, ExitCode: res.ExitCode})
	if err != nil {
		err = fmt.Errorf("diff: %w", err)
		e.fail(st, addr, "", start, err)
		return false, err
	}
	n, notified := r.(modules.Notified)
	if c.IsNoOp() && notified && len(trig) > 0 {
		c, steps = n.Notify(trig)
	}
	if c.IsNoOp() || len(steps) == 0 {
		if notified {
			if err := e.clearMarker(stepCtx, st, addr); err != nil {
				e.fail(st, addr, "", start, err)
				return false, err
			}
		}
		st.recap.OK = append(st.recap.OK, addr)
		e.emit(Event{Kind: planner.ResourceUnchanged, Host: name, Resource: addr, Elapsed: time.Since(start)})
		return true, nil
	}
	if ctx.Err() != nil {
		return false, nil
	}
	// Remember, on the host, the notifications this change will owe.
	for _, other := range st.plan.resources {
		w, ok := other.(modules.Notified)
		if !ok || !slices.Contains(w.Watches(), addr) {
			continue
		}
		cmd := writeMarkerCmd(e.stateDir(), other.Address(), addr)
		if err := runStep(stepCtx, h, modules.Step{Cmd: cmd}); err != nil {
			err = fmt.Errorf("record pending notification of %s: %w", other.Address(), err)
			e.fail(st, addr, "", start, err)
			return false, err
		}
		st.pending[other.Address()] = append(st.pending[other.Address()], addr)
	}
	e.emit(Event{Kind: planner.ResourceStart, Host: name, Resource: addr, Action: c.Action})
	for i, step := range steps {
		if i > 0 && ctx.Err() != nil {
			return false, nil
		}
		if err := runStep(stepCtx, h, step); err != nil {
			desc := step.Desc
			if desc == "" {
				desc = step.Cmd
			}
			err = fmt.Errorf("step %d of %d (%s): %w", i+1, len(steps), desc, err)
			e.fail(st, addr, step.Desc, start, err)
			return false, err
		}
	}
	if notified {
		if err := e.clearMarker(stepCtx, st, addr); err != nil {
			e.fail(st, addr, "", start, err)
			return false, err
		}
	}
	st.changed[addr] = true
	st.recap.Changed = append(st.recap.Changed, addr)
	e.emit(Event{Kind: planner.ResourceDone, Host: name, Resource: addr, Action: c.Action, Elapsed: time.Since(start)})
	return true, nil
}

// clearMarker removes the pending-notification marker of a notified
// resource once it has been handled.
func (e *Engine) clearMarker(ctx context.Context, st *hostState, addr string) error {
	if _, ok := st.pending[addr]; !ok {
		return nil
	}
	if err := runStep(ctx, st.host, modules.Step{Cmd: removeMarkerCmd(e.stateDir(), addr)}); err != nil {
		return fmt.Errorf("clear pending notification: %w", err)
	}
	delete(st.pending, addr)
	return nil
}

// runStep runs one step; a command's non-zero exit is an error.
func runStep(ctx context.Context, h Host, s modules.Step) error { return modules.RunStep(ctx, h, s) }
