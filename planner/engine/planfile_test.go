package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pgherd/pgherd/planner"
	"github.com/pgherd/pgherd/planner/engine"
)

func TestDiffPlans(t *testing.T) {
	motd := planner.Change{Host: "node2", Resource: "file./etc/motd", Action: planner.Update, Reason: "content differs",
		Attrs: []planner.Attr{{Name: "owner", Before: "root", After: "pg"}, {Name: "mode", Before: "0600", After: "0644"}}}
	pw := planner.Change{Host: "node1", Resource: "user.pg", Action: planner.Update,
		Attrs: []planner.Attr{{Name: "password", Before: "a", After: "b", Sensitive: true}}}
	base := &planner.Plan{FormatVersion: 1, SpecDigest: "abc", Changes: []planner.Change{motd, pw}}
	with := func(f func(p *planner.Plan)) *planner.Plan {
		p := *base
		p.Changes = append([]planner.Change(nil), base.Changes...)
		f(&p)
		return &p
	}
	tests := []struct {
		name string
		now  *planner.Plan
		want []string
	}{
		{name: "same", now: base},
		{name: "reordered changes, attributes and reasons", now: with(func(p *planner.Plan) {
			m := motd
			m.Reason = "other words"
			m.Attrs = []planner.Attr{motd.Attrs[1], motd.Attrs[0]}
			p.Changes = []planner.Change{pw, m, {Host: "node3", Resource: "x", Action: planner.NoOp}}
		})},
		{name: "sensitive values are not compared", now: with(func(p *planner.Plan) {
			p.Changes[1].Attrs = []planner.Attr{{Name: "password", Before: "zz", After: "b", Sensitive: true}}
		})},
		{name: "gone", now: with(func(p *planner.Plan) { p.Changes = p.Changes[1:] }),
			want: []string{"node2 file./etc/motd: planned update, now no-op"}},
		{name: "new and different", now: with(func(p *planner.Plan) {
			p.SpecDigest = "def"
			p.Changes[0].Attrs = []planner.Attr{{Name: "owner", Before: "root", After: "postgres"}}
			p.Changes = append(p.Changes, planner.Change{Host: "node1", Resource: "package.nginx", Action: planner.Create})
		}), want: []string{
			"the spec changed (digest abc, now def)",
			"node1 package.nginx: planned no-op, now create",
			"node2 file./etc/motd: planned update, now a different update",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, engine.DiffPlans(base, tt.now)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestLoadPlanRejectsOtherFormats(t *testing.T) {
	for _, in := range []string{`{"format_version": 99}`, `not json`, ``} {
		if _, err := engine.LoadPlan(strings.NewReader(in)); !errors.Is(err, engine.ErrPlanFormat) {
			t.Errorf("LoadPlan(%q) = %v, want ErrPlanFormat", in, err)
		}
	}
}
