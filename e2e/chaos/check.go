package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Window is a time in which two hosts both accepted writes as primary.
type Window struct {
	A, B     string
	From, To time.Time
	// Why names the ops that prove it.
	Why string
}

// Result is what a history proves.
type Result struct {
	Acked, Failed, Unknown int // of the VIP writer
	ProbeAcked             int // of the direct probes
	// Lost are acknowledged writes (of any process) missing at the end.
	Lost []int64
	// FailedPresent are writes reported as certainly failed that are
	// present at the end: the checker's classification, or the server,
	// is wrong.
	FailedPresent []int64
	// SplitBrain are the windows in which two hosts accepted writes.
	SplitBrain []Window
	// Gaps are the times between consecutive acknowledged writes of the
	// VIP writer, sorted.
	Gaps []time.Duration
	// Unchecked: no primary could be read at the end (present was nil),
	// so Lost and FailedPresent say nothing.
	Unchecked bool
}

// Passed reports whether the history shows no lost write, no split brain
// and no write present that was reported failed.
func (r Result) Passed() bool {
	return !r.Unchecked && len(r.Lost) == 0 && len(r.SplitBrain) == 0 && len(r.FailedPresent) == 0
}

// run is a stretch of consecutive acknowledged ops of one probe process:
// its host was primary throughout. The host certainly accepted writes from
// the first op's completion to the last op's invocation (from and to); the
// ops' own windows bound the rest.
type run struct {
	node     string
	from, to time.Time
	first    Op
	last     Op
}

// Check compares a history with the ids present on the primary at the end
// (nil when no primary could be read: the writes are then unchecked).
//
// Split brain: each probe process writes to one host directly, one op at a
// time, so a run of its acknowledged ops means that host was primary from
// the first acknowledgement to the last invocation. Two hosts accepted
// writes at once when two such spans of different hosts overlap, or when
// an acknowledged write of one host (of any process) lies wholly inside
// the span of another: it committed at some instant between its
// invocation and completion. Late acknowledgements (an op that hangs
// across a failover) never count against the hosts, so the check has no
// false positives from slow answers.
func Check(ops []Op, present map[int64]bool) Result {
	r := Result{Unchecked: present == nil}
	var vipOK []Op
	byProc := map[string][]Op{}
	for _, op := range ops {
		switch {
		case r.Unchecked:
		case op.Outcome == OK && !present[op.ID]:
			r.Lost = append(r.Lost, op.ID)
		case op.Outcome == Fail && present[op.ID]:
			r.FailedPresent = append(r.FailedPresent, op.ID)
		}
		if op.Process == "vip" {
			switch op.Outcome {
			case OK:
				r.Acked++
				vipOK = append(vipOK, op)
			case Fail:
				r.Failed++
			default:
				r.Unknown++
			}
		} else {
			if op.Outcome == OK {
				r.ProbeAcked++
			}
			byProc[op.Process] = append(byProc[op.Process], op)
		}
	}
	slices.Sort(r.Lost)
	slices.Sort(r.FailedPresent)
	slices.SortFunc(vipOK, func(a, b Op) int { return a.Complete.Compare(b.Complete) })
	for i := 1; i < len(vipOK); i++ {
		r.Gaps = append(r.Gaps, vipOK[i].Complete.Sub(vipOK[i-1].Complete))
	}
	slices.Sort(r.Gaps)

	var runs []run
	for _, proc := range slices.Sorted(maps.Keys(byProc)) {
		pops := byProc[proc]
		slices.SortFunc(pops, func(a, b Op) int { return a.Invoke.Compare(b.Invoke) })
		var cur *run
		for _, op := range pops {
			if op.Outcome != OK || (cur != nil && cur.node != op.Node) {
				if cur != nil {
					runs = append(runs, *cur)
					cur = nil
				}
			}
			if op.Outcome != OK {
				continue
			}
			if cur == nil {
				cur = &run{node: op.Node, from: op.Complete, first: op}
			}
			cur.to, cur.last = op.Invoke, op
		}
		if cur != nil {
			runs = append(runs, *cur)
		}
	}
	for i, a := range runs {
		if !a.from.Before(a.to) {
			continue
		}
		for _, b := range runs[i+1:] {
			if b.node == a.node || !b.from.Before(b.to) {
				continue
			}
			from, to := later(a.from, b.from), earlier(a.to, b.to)
			if from.Before(to) {
				r.SplitBrain = append(r.SplitBrain, Window{A: a.node, B: b.node, From: from, To: to,
					Why: fmt.Sprintf("%s primary from op %d to op %d, %s from op %d to op %d", a.node, a.first.ID, a.last.ID, b.node, b.first.ID, b.last.ID)})
			}
		}
		for _, op := range ops {
			if op.Outcome == OK && op.Node != a.node && a.from.Before(op.Invoke) && op.Complete.Before(a.to) {
				r.SplitBrain = append(r.SplitBrain, Window{A: a.node, B: op.Node, From: op.Invoke, To: op.Complete,
					Why: fmt.Sprintf("%s acknowledged op %d (%s) while %s was primary from op %d to op %d", op.Node, op.ID, op.Process, a.node, a.first.ID, a.last.ID)})
			}
		}
	}
	r.SplitBrain = merge(r.SplitBrain)
	return r
}

// merge joins the overlapping windows of the same two hosts: one incident
// is one window, however many ops prove it.
func merge(ws []Window) []Window {
	slices.SortFunc(ws, func(a, b Window) int { return a.From.Compare(b.From) })
	var out []Window
	for _, w := range ws {
		if w.A > w.B {
			w.A, w.B = w.B, w.A
		}
		if n := len(out); n > 0 && out[n-1].A == w.A && out[n-1].B == w.B && !w.From.After(out[n-1].To) {
			out[n-1].To = later(out[n-1].To, w.To)
			continue
		}
		out = append(out, w)
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Quantile is the q-quantile (0..1) of sorted durations, by the
// nearest-rank method; zero when there are none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Fault is one fault the nemesis injected.
type Fault struct {
	Kind  string
	Host  string
	Start time.Time
	// Healed is when the fault was undone (zero for one that heals by
	// itself, such as a killed process systemd restarts).
	Healed time.Time
	// Missed: the fault could not be injected (Err says why): the
	// process it kills was down already, say. It does not count.
	Missed bool
	Err    string
}

// Summary says how a soak ran, for the report.
type Summary struct {
	Seed     int64
	Duration time.Duration // of the fault phase
	Start    time.Time
	// Healthy is how long after the last heal the cluster was healthy
	// again (one primary, all replicas streaming, VIP on a live HAProxy).
	Healthy time.Duration
	Primary string
	Machine string
}

// Report renders the soak's report as Markdown.
func Report(s Summary, faults []Fault, r Result) string {
	var b strings.Builder
	verdict := "PASSED"
	if !r.Passed() {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "Chaos soak %s: seed %d, %s of faults, %d faults injected (%s; %d more missed their target). %s.\n\n",
		verdict, s.Seed, s.Duration.Round(time.Second), Injected(faults), kindsOf(faults), len(faults)-Injected(faults), s.Machine)
	b.WriteString("| measure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| writes acknowledged (VIP writer) | %d |\n", r.Acked)
	fmt.Fprintf(&b, "| writes failed / unknown outcome | %d / %d |\n", r.Failed, r.Unknown)
	fmt.Fprintf(&b, "| direct probe writes acknowledged | %d |\n", r.ProbeAcked)
	if r.Unchecked {
		b.WriteString("| **writes lost** (must be 0) | **not checked: no primary at the end** |\n")
	} else {
		fmt.Fprintf(&b, "| **writes lost** (must be 0) | **%d** |\n", len(r.Lost))
	}
	fmt.Fprintf(&b, "| **split-brain windows** (must be 0) | **%d** |\n", len(r.SplitBrain))
	fmt.Fprintf(&b, "| failed writes found present (must be 0) | %d |\n", len(r.FailedPresent))
	fmt.Fprintf(&b, "| write gap median / p99 / max | %s / %s / %s |\n", ms(Quantile(r.Gaps, 0.5)), ms(Quantile(r.Gaps, 0.99)), ms(Quantile(r.Gaps, 1)))
	out := outages(r.Gaps)
	fmt.Fprintf(&b, "| outages (gaps ≥ 1 s): count, median / p99 / max | %d: %s / %s / %s |\n", len(out), ms(Quantile(out, 0.5)), ms(Quantile(out, 0.99)), ms(Quantile(out, 1)))
	fmt.Fprintf(&b, "| healthy after the last heal | %s (primary %s) |\n", s.Healthy.Round(100*time.Millisecond), s.Primary)
	if len(r.Lost) > 0 {
		fmt.Fprintf(&b, "\nLost ids (first 20): %v\n", r.Lost[:min(20, len(r.Lost))])
	}
	if len(r.FailedPresent) > 0 {
		fmt.Fprintf(&b, "\nFailed but present ids (first 20): %v\n", r.FailedPresent[:min(20, len(r.FailedPresent))])
	}
	for _, w := range r.SplitBrain {
		fmt.Fprintf(&b, "\nSplit brain %s and %s from +%s to +%s: %s\n", w.A, w.B, rel(s.Start, w.From), rel(s.Start, w.To), w.Why)
	}
	b.WriteString("\n<details><summary>Faults (times from the start of the load)</summary>\n\n| # | at | fault | host | healed | note |\n|---|---|---|---|---|---|\n")
	for i, f := range faults {
		healed := "by itself"
		if !f.Healed.IsZero() {
			healed = "+" + rel(s.Start, f.Healed)
		}
		note := f.Err
		if f.Missed {
			note = "missed: " + note
		}
		fmt.Fprintf(&b, "| %d | +%s | %s | %s | %s | %s |\n", i+1, rel(s.Start, f.Start), f.Kind, f.Host, healed, strings.ReplaceAll(note, "\n", " "))
	}
	b.WriteString("\n</details>\n")
	return b.String()
}

// outages are the gaps of at least a second: the writer was blocked.
func outages(sorted []time.Duration) []time.Duration {
	i, _ := slices.BinarySearch(sorted, time.Second)
	return sorted[i:]
}

// Injected is the number of faults injected (not missed).
func Injected(faults []Fault) int {
	n := 0
	for _, f := range faults {
		if !f.Missed {
			n++
		}
	}
	return n
}

func kindsOf(faults []Fault) string {
	n := map[string]int{}
	for _, f := range faults {
		if !f.Missed {
			n[f.Kind]++
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, n[k]))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

func rel(start, t time.Time) string { return t.Sub(start).Round(100 * time.Millisecond).String() }
