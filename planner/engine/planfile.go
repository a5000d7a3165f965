package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pgherd/pgherd/planner"
)

// ErrPlanFormat is returned by LoadPlan for a file that is not a plan this
// version of pgherd can read.
var ErrPlanFormat = errors.New("not a pgherd plan file")

// SavePlan writes p as a plan file (`plan -out`). The values of sensitive
// attributes and the diffs of sensitive changes are left out, so a plan
// file holds no secret; DiffPlans compares sensitive attributes by name
// only.
func SavePlan(w io.Writer, p *planner.Plan) error {
	q := *p
	q.FormatVersion = planner.FormatVersion
	q.Changes = make([]planner.Change, len(p.Changes))
	for i, c := range p.Changes {
		q.Changes[i] = redact(c)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&q); err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	return nil
}

func redact(c planner.Change) planner.Change {
	c.Attrs = slices.Clone(c.Attrs)
	for i := range c.Attrs {
		if c.Attrs[i].Sensitive || c.Sensitive {
			c.Attrs[i].Before, c.Attrs[i].After = "", ""
		}
	}
	if c.Sensitive {
		c.Diff = ""
	}
	return c
}

// LoadPlan reads a plan file written by SavePlan.
func LoadPlan(r io.Reader) (*planner.Plan, error) {
	var p planner.Plan
	dec := json.NewDecoder(r)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("load plan: %w: %w", ErrPlanFormat, err)
	}
	if p.FormatVersion != planner.FormatVersion {
		return nil, fmt.Errorf("load plan: %w: format version %d, this pgherd reads %d", ErrPlanFormat, p.FormatVersion, planner.FormatVersion)
	}
	return &p, nil
}

// DiffPlans compares a saved plan with a fresh one and lists, one line
// each, what differs: "node2 file./etc/motd: planned update, now no-op".
// Order, reasons and impacts are not compared; sensitive values are not
// (a saved plan does not hold them). Empty means the plans agree.
func DiffPlans(saved, now *planner.Plan) []string {
	var out []string
	if saved.SpecDigest != now.SpecDigest {
		out = append(out, fmt.Sprintf("the spec changed (digest %s, now %s)", short(saved.SpecDigest), short(now.SpecDigest)))
	}
	type key struct{ host, res string }
	index := func(p *planner.Plan) map[key]planner.Change {
		m := map[key]planner.Change{}
		for _, c := range p.Changes {
			if !c.IsNoOp() {
				m[key{c.Host, c.Resource}] = redact(c)
			}
		}
		return m
	}
	a, b := index(saved), index(now)
	var keys []key
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y key) int {
		if c := strings.Compare(x.host, y.host); c != 0 {
			return c
		}
		return strings.Compare(x.res, y.res)
	})
	for _, k := range keys {
		ca, inA := a[k]
		cb, inB := b[k]
		was, is := planner.NoOp, planner.NoOp
		if inA {
			was = ca.Action
		}
		if inB {
			is = cb.Action
		}
		switch {
		case was != is:
			out = append(out, fmt.Sprintf("%s %s: planned %s, now %s", k.host, k.res, was, is))
		case !sameChange(ca, cb):
			out = append(out, fmt.Sprintf("%s %s: planned %s, now a different %s", k.host, k.res, was, is))
		}
	}
	for _, he := range saved.HostErrors {
		out = append(out, fmt.Sprintf("%s: could not be planned when the plan was saved", he.Host))
	}
	return out
}

func sameChange(a, b planner.Change) bool {
	if a.Diff != b.Diff || a.Sensitive != b.Sensitive {
		return false
	}
	sortAttrs := func(as []planner.Attr) []planner.Attr {
		as = slices.Clone(as)
		slices.SortFunc(as, func(x, y planner.Attr) int { return strings.Compare(x.Name, y.Name) })
		return as
	}
	return slices.Equal(sortAttrs(a.Attrs), sortAttrs(b.Attrs))
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	if d == "" {
		return `""`
	}
	return d
}
