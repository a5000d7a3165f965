package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner"
)

func TestPlanOneRoundTripPerHost(t *testing.T) {
	var names []string
	for i := range 30 {
		names = append(names, fmt.Sprintf("node%02d", i))
	}
	l := newLab(t, names...)
	l.latency = 10 * time.Millisecond
	p := prog(names, func(h string) []modules.Resource {
		var rs []modules.Resource
		for i := range 5 {
			name := fmt.Sprintf("f%d", i)
			l.setFile(h, name, "ok")
			rs = append(rs, &fileRes{name: name, want: "ok"})
		}
		return append(rs, &svcRes{name: "db", watches: []string{"file.f0"}})
	})
	for _, h := range names {
		l.setFile(h, "running-db", "yes\n")
	}
	e := l.engine()
	start := time.Now()
	plan, err := e.Plan(context.Background(), p)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if plan.HasChanges() || len(plan.HostErrors) > 0 {
		t.Fatalf("want an empty plan, got %+v", plan)
	}
	for _, h := range names {
		if n := len(l.hosts[h].commands()); n != 1 {
			t.Errorf("%s: %d round trips, want 1", h, n)
		}
	}
	if m := l.max.Load(); m > 10 {
		t.Errorf("%d hosts probed at once, want at most Parallelism=10", m)
	}
	// Speed is measured by bench/ against real hosts, not asserted here.
	t.Logf("no-op plan of 30 hosts: %s", elapsed)
}

func TestPlan(t *testing.T) {
	l := newLab(t, "node1", "node2", "node3", "node4")
	l.setFile("node1", "motd", "old\n")
	l.setFile("node1", "same", "x")
	l.setFile("node2", "motd", "hello\n")
	l.down["node3"] = true
	mk := func(h string) []modules.Resource {
		rs := []modules.Resource{
			&fileRes{name: "motd", want: "hello\n"},
			&fileRes{name: "same", want: "x"},
			&fileRes{name: "secret", want: "hunter2", sensitive: true},
		}
		if h == "node4" {
			rs = append(rs, errRes{})
		}
		return rs
	}
	p := prog([]string{"node1", "node2", "node3", "node4"}, mk)
	rec := &recorder{}
	e := l.engine()
	e.Progress = rec.add
	e.Mask = func(s string) string { return strings.ReplaceAll(s, "10.77.0.9", "(masked)") }
	plan, err := e.Plan(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	want := &planner.Plan{
		FormatVersion: planner.FormatVersion,
		SpecDigest:    "digest-1",
		Hosts:         []string{"node1", "node2", "node3", "node4"},
		Changes: []planner.Change{
			{Host: "node1", Resource: "file.motd", Action: planner.Update, Reason: "content differs",
				Attrs: []planner.Attr{{Name: "content", Before: "old\n", After: "hello\n"}}},
			{Host: "node1", Resource: "file.secret", Action: planner.Create, Reason: "file does not exist", Sensitive: true,
				Attrs: []planner.Attr{{Name: "content", After: "hunter2", Sensitive: true}}},
			{Host: "node2", Resource: "file.same", Action: planner.Create, Reason: "file does not exist",
				Attrs: []planner.Attr{{Name: "content", After: "x"}}},
			{Host: "node2", Resource: "file.secret", Action: planner.Create, Reason: "file does not exist", Sensitive: true,
				Attrs: []planner.Attr{{Name: "content", After: "hunter2", Sensitive: true}}},
		},
		HostErrors: []planner.HostError{
			{Host: "node3", Error: "connect: node3: dial tcp (masked):22: connection refused: host unreachable"},
			{Host: "node4", Error: "broken.thing: cannot parse fact"},
		},
	}
	if d := cmp.Diff(want, plan); d != "" {
		t.Errorf("plan (-want +got):\n%s", d)
	}
	if got := rec.kinds("node3"); !cmp.Equal(got, []string{"host-failed "}) {
		t.Errorf("node3 events: %q", got)
	}
	for _, ev := range rec.events {
		if strings.Contains(ev.Err, "10.77") {
			t.Errorf("event not masked: %+v", ev)
		}
	}
}

func TestPlanBatchFailureIsHostError(t *testing.T) {
	l := newLab(t, "node1", "node2")
	l.hosts["node2"].failRun = "sh -c"
	p := prog([]string{"node1", "node2"}, func(string) []modules.Resource {
		return []modules.Resource{&fileRes{name: "a", want: "a"}}
	})
	plan, err := l.engine().Plan(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.HostErrors) != 1 || plan.HostErrors[0].Host != "node2" || !strings.Contains(plan.HostErrors[0].Error, "read facts: node2: connection lost") {
		t.Errorf("host errors: %+v", plan.HostErrors)
	}
	if len(plan.Changes) != 1 || plan.Changes[0].Host != "node1" {
		t.Errorf("changes: %+v", plan.Changes)
	}
}

func TestPlanNotify(t *testing.T) {
	tests := []struct {
		name    string
		conf    string // current content of file.conf
		running string
		want    []string // "host resource action reason"
	}{
		{name: "watched file changed", conf: "old", running: "yes",
			want: []string{"file.conf update content differs", "service.db update notified by file.conf"}},
		{name: "watched file unchanged", conf: "new", running: "yes", want: nil},
		{name: "service change wins over notify", conf: "old", running: "no",
			want: []string{"file.conf update content differs", "service.db create not running"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, "n")
			l.setFile("n", "conf", tt.conf)
			l.setFile("n", "running-db", tt.running)
			p := prog([]string{"n"}, func(string) []modules.Resource {
				return []modules.Resource{
					&fileRes{name: "conf", want: "new"},
					&fileRes{name: "other", want: ""},
					&svcRes{name: "db", watches: []string{"file.conf", "file.nothing"}},
				}
			})
			l.setFile("n", "other", "")
			plan, err := l.engine().Plan(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range plan.Changes {
				got = append(got, fmt.Sprintf("%s %s %s", c.Resource, c.Action, c.Reason))
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("changes (-want +got):\n%s", d)
			}
		})
	}
}

func TestPlanRejectsDuplicates(t *testing.T) {
	l := newLab(t, "n")
	p := prog([]string{"n"}, func(string) []modules.Resource {
		return []modules.Resource{&fileRes{name: "a"}, &fileRes{name: "a"}}
	})
	if _, err := l.engine().Plan(context.Background(), p); err == nil || !strings.Contains(err.Error(), "file.a appears twice") {
		t.Errorf("err = %v", err)
	}
}
