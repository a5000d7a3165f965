package engine

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner"
)

// hostPlan is what planning found on one host.
type hostPlan struct {
	name      string
	resources []modules.Resource // of every phase, in order
	changes   map[string]planner.Change
	// pending are the notifications owed from an earlier, interrupted
	// apply: notified address -> watched addresses that changed.
	pending map[string][]string
	err     error
}

// hostsOf returns the resources of each host over all phases, in order,
// and the hosts in display order (prog.Hosts first, then any other host in
// phase order).
func (prog *Program) hostsOf() ([]string, map[string][]modules.Resource, error) {
	res := map[string][]modules.Resource{}
	seen := map[string]map[string]bool{}
	order := slices.Clone(prog.Hosts)
	known := map[string]bool{}
	for _, h := range order {
		known[h] = true
	}
	for _, ph := range prog.Phases {
		inPhase := map[string]bool{}
		for _, hr := range ph.Hosts {
			if inPhase[hr.Host] {
				return nil, nil, fmt.Errorf("phase %q: host %s listed twice", ph.Name, hr.Host)
			}
			inPhase[hr.Host] = true
			if !known[hr.Host] {
				known[hr.Host] = true
				order = append(order, hr.Host)
			}
			if seen[hr.Host] == nil {
				seen[hr.Host] = map[string]bool{}
			}
			for _, r := range hr.Resources {
				a := r.Address()
				if seen[hr.Host][a] {
					return nil, nil, fmt.Errorf("host %s: resource %s appears twice in the program", hr.Host, a)
				}
				seen[hr.Host][a] = true
				res[hr.Host] = append(res[hr.Host], r)
			}
		}
	}
	return order, res, nil
}

// Plan reads the facts of every host (one round trip per host, hosts in
// parallel) and returns what apply would change. A host that cannot be
// reached, or whose probes or diffs fail, is a host error in the plan; the
// other hosts are planned normally. The error is for a program that cannot
// be planned at all.
func (e *Engine) Plan(ctx context.Context, prog *Program) (*planner.Plan, error) {
	s := e.newSession()
	p, _, err := e.plan(ctx, s, prog)
	return p, err
}

func (e *Engine) plan(ctx context.Context, s *session, prog *Program) (*planner.Plan, map[string]*hostPlan, error) {
	order, res, err := prog.hostsOf()
	if err != nil {
		return nil, nil, err
	}
	plans := make(map[string]*hostPlan, len(order))
	for _, h := range order {
		plans[h] = &hostPlan{name: h, resources: res[h]}
	}
	// Each goroutine writes only its own hostPlan; forEachHost waits.
	forEachHost(order, e.parallelism(), func(h string) {
		hp := plans[h]
		err := e.planHost(ctx, s, hp)
		hp.err = err
		if err != nil {
			e.log().Info("host not planned", "host", h, "err", e.mask(err.Error()))
			e.emit(Event{Kind: planner.HostFailed, Host: h, Err: err.Error()})
		}
	})

	p := &planner.Plan{FormatVersion: planner.FormatVersion, SpecDigest: prog.SpecDigest, Hosts: order, Changes: []planner.Change{}}
	for _, h := range order {
		if err := plans[h].err; err != nil {
			p.HostErrors = append(p.HostErrors, planner.HostError{Host: h, Error: e.mask(err.Error())})
		}
	}
	for _, ph := range prog.Phases {
		for _, hr := range ph.Hosts {
			hp := plans[hr.Host]
			if hp.err != nil {
				continue
			}
			for _, r := range hr.Resources {
				if c := hp.changes[r.Address()]; !c.IsNoOp() {
					p.Changes = append(p.Changes, c)
				}
			}
		}
	}
	return p, plans, nil
}

// planHost probes every resource of a host in one batch, diffs, and adds
// the notifications.
func (e *Engine) planHost(ctx context.Context, s *session, hp *hostPlan) error {
	h, err := s.host(ctx, hp.name)
	if err != nil {
		return err
	}
	probes := make([]string, 0, len(hp.resources)+1)
	for _, r := range hp.resources {
		probes = append(probes, r.Probe())
	}
	probes = append(probes, pendingProbe(e.stateDir()))
	nonce := modules.NewNonce()
	script := modules.BatchScript(nonce, probes)
	out, err := h.Run(ctx, script, nil)
	if err != nil {
		return fmt.Errorf("read facts: %w", err)
	}
	facts, err := modules.SplitBatch(nonce, out.Stdout, len(probes))
	if err != nil {
		if out.ExitCode != 0 {
			err = fmt.Errorf("%w (exit status %d: %s)", err, out.ExitCode, strings.TrimSpace(string(out.Stderr)))
		}
		return fmt.Errorf("read facts: %w", err)
	}
	hp.pending = parsePending(facts[len(facts)-1].Stdout)

	hp.changes = make(map[string]planner.Change, len(hp.resources))
	changed := map[string]bool{}
	for i, r := range hp.resources {
		c, _, err := r.Diff(facts[i])
		if err != nil {
			return fmt.Errorf("%s: %w", r.Address(), err)
		}
		c = normalize(c, hp.name, r)
		hp.changes[r.Address()] = c
		if !c.IsNoOp() {
			changed[r.Address()] = true
		}
	}
	for _, r := range hp.resources {
		n, ok := r.(modules.Notified)
		if !ok || !hp.changes[r.Address()].IsNoOp() {
			continue
		}
		trig := triggers(n, changed, hp.pending[r.Address()])
		if len(trig) == 0 {
			continue
		}
		c, _ := n.Notify(trig)
		if c.IsNoOp() {
			continue
		}
		c = normalize(c, hp.name, r)
		if c.Reason == "" {
			c.Reason = "notified by " + strings.Join(trig, ", ")
		}
		hp.changes[r.Address()] = c
		changed[r.Address()] = true
	}
	return nil
}

// normalize fills in the host and address a module may leave empty.
func normalize(c planner.Change, host string, r modules.Resource) planner.Change {
	c.Host = host
	if c.Resource == "" {
		c.Resource = r.Address()
	}
	if c.Action == "" {
		c.Action = planner.NoOp
	}
	return c
}

// triggers are the watched addresses of n that changed, plus the pending
// ones, sorted and without repeats.
func triggers(n modules.Notified, changed map[string]bool, pending []string) []string {
	var out []string
	for _, w := range n.Watches() {
		if changed[w] {
			out = append(out, w)
		}
	}
	out = append(out, pending...)
	slices.Sort(out)
	return slices.Compact(out)
}

// Pending notifications: see the package documentation.

func pendingDir(stateDir string) string { return path.Join(stateDir, "pending") }

func markerPath(stateDir, addr string) string {
	return path.Join(pendingDir(stateDir), url.PathEscape(addr))
}

// pendingProbe prints one line "<escaped notified address>\t<watched
// address>" per marker line.
func pendingProbe(stateDir string) string {
	return "cd " + executors.Quote(pendingDir(stateDir)) + " 2>/dev/null || exit 0\n" +
		"for f in *; do [ -f \"$f\" ] || continue; " +
		"while IFS= read -r l; do printf '%s\\t%s\\n' \"$f\" \"$l\"; done < \"$f\"; done"
}

func parsePending(out []byte) map[string][]string {
	m := map[string][]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f, w, ok := strings.Cut(line, "\t")
		if !ok || w == "" {
			continue
		}
		addr, err := url.PathUnescape(f)
		if err != nil {
			continue
		}
		m[addr] = append(m[addr], w)
	}
	return m
}

func writeMarkerCmd(stateDir, notified, watched string) string {
	// The state directory is world-traversable (other pgherd directories,
	// such as a backup repository, may live under it); the markers are not.
	return "(umask 022 && mkdir -p " + executors.Quote(stateDir) + ") && umask 077 && mkdir -p " + executors.Quote(pendingDir(stateDir)) +
		" && printf '%s\\n' " + executors.Quote(watched) + " >> " + executors.Quote(markerPath(stateDir, notified))
}

func removeMarkerCmd(stateDir, notified string) string {
	return "rm -f " + executors.Quote(markerPath(stateDir, notified))
}
