package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner"
	"github.com/pgherd/pgherd/planner/engine"
)

// ignoreElapsed compares recaps without their timings.
var ignoreElapsed = cmpopts.IgnoreFields(planner.HostRecap{}, "Elapsed")

func TestApplyThenPlanIsEmpty(t *testing.T) {
	l := newLab(t, "node1", "node2")
	l.setFile("node1", "conf", "old")
	l.setFile("node2", "conf", "new")
	l.setFile("node2", "running-db", "yes")
	mk := func(string) []modules.Resource {
		return []modules.Resource{
			&fileRes{name: "conf", want: "new"},
			&fileRes{name: "motd", want: "hi\n"},
			&svcRes{name: "db", watches: []string{"file.conf"}},
		}
	}
	p := prog([]string{"node1", "node2"}, mk)
	rec := &recorder{}
	e := l.engine()
	e.Progress = rec.add
	recap, err := e.Apply(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []planner.HostRecap{
		{Host: "node1", Changed: []string{"file.conf", "file.motd", "service.db"}},
		{Host: "node2", OK: []string{"file.conf", "service.db"}, Changed: []string{"file.motd"}},
	}
	if d := cmp.Diff(want, recap.Hosts, ignoreElapsed); d != "" {
		t.Errorf("recap (-want +got):\n%s", d)
	}
	if got := l.file("node1", "running-db"); got != "yes\n" {
		t.Errorf("node1 db not started: %q", got)
	}
	// The service was started, not restarted: its own change wins.
	if got := l.file("node1", "restarts-db"); got != "<missing>" {
		t.Errorf("node1 restarts: %q", got)
	}
	wantEvents := []string{"host-connected ", "resource-start file.conf", "resource-done file.conf",
		"resource-start file.motd", "resource-done file.motd", "resource-start service.db", "resource-done service.db"}
	if d := cmp.Diff(wantEvents, rec.kinds("node1")); d != "" {
		t.Errorf("node1 events (-want +got):\n%s", d)
	}
	again, err := e.Plan(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if again.HasChanges() {
		t.Errorf("plan after apply is not empty: %+v", again.Changes)
	}
	// No marker is left behind.
	if m, _ := filepath.Glob(filepath.Join(l.hosts["node1"].root, "var/lib/pgherd/pending/*")); len(m) > 0 {
		t.Errorf("markers left: %v", m)
	}
}

func TestApplyNotifiesWatchedChange(t *testing.T) {
	l := newLab(t, "n")
	l.setFile("n", "running-db", "yes")
	l.setFile("n", "conf", "old")
	p := prog([]string{"n"}, func(string) []modules.Resource {
		return []modules.Resource{
			&fileRes{name: "conf", want: "new"},
			&fileRes{name: "hba", want: "x"},
			&svcRes{name: "db", watches: []string{"file.conf", "file.hba"}},
		}
	})
	recap, err := l.engine().Apply(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.file("n", "restarts-db"); got != "restart file.conf,file.hba\n" {
		t.Errorf("restarts: %q", got)
	}
	if d := cmp.Diff([]string{"file.conf", "file.hba", "service.db"}, recap.Hosts[0].Changed); d != "" {
		t.Error(d)
	}
}

func TestApplyReprobesBeforeActing(t *testing.T) {
	// file.b is planned for a change, but file.a's step fixes it: by the
	// time apply reaches file.b, it matches, so its step must not run.
	l := newLab(t, "n")
	a := &fileRes{name: "a", want: "A", steps: []modules.Step{{Desc: "write a and b", Cmd: `printf A > "$ROOT/files/a"; printf B > "$ROOT/files/b"`}}}
	b := &fileRes{name: "b", want: "B", steps: []modules.Step{{Desc: "must not run", Cmd: "exit 9"}}}
	p := prog([]string{"n"}, func(string) []modules.Resource { return []modules.Resource{a, b} })
	rec := &recorder{}
	e := l.engine()
	e.Progress = rec.add
	recap, err := e.Apply(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []planner.HostRecap{{Host: "n", Changed: []string{"file.a"}, OK: []string{"file.b"}}}
	if d := cmp.Diff(want, recap.Hosts, ignoreElapsed); d != "" {
		t.Errorf("recap (-want +got):\n%s", d)
	}
	if !slices.Contains(rec.kinds("n"), "resource-unchanged file.b") {
		t.Errorf("events: %q", rec.kinds("n"))
	}
}

func TestApplyStepFailureIsolation(t *testing.T) {
	l := newLab(t, "node1", "node2")
	p := &engine.Program{SpecDigest: "d", Hosts: []string{"node1", "node2"}}
	first := engine.Phase{Name: "first"}
	for _, h := range []string{"node1", "node2"} {
		rs := []modules.Resource{&fileRes{name: "a", want: "a"}}
		if h == "node1" {
			rs = append(rs, &funcRes{addr: "cmd.bad", steps: []modules.Step{{Desc: "use the password", Cmd: "echo 'bad password s3cret' >&2; exit 4"}}})
		}
		rs = append(rs, &fileRes{name: "c", want: "c"})
		first.Hosts = append(first.Hosts, engine.HostResources{Host: h, Resources: rs})
	}
	second := engine.Phase{Name: "second", Hosts: []engine.HostResources{
		{Host: "node1", Resources: []modules.Resource{&fileRes{name: "later", want: "l"}}},
		{Host: "node2", Resources: []modules.Resource{&fileRes{name: "later", want: "l"}}},
	}}
	p.Phases = []engine.Phase{first, second}
	e := l.engine()
	e.Mask = func(s string) string { return strings.ReplaceAll(s, "s3cret", "(sensitive)") }
	recap, err := e.Apply(context.Background(), p, nil)
	if !errors.Is(err, engine.ErrApplyFailed) {
		t.Fatalf("err = %v, want ErrApplyFailed", err)
	}
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "node1 cmd.bad: step 1 of 1 (use the password)") {
		t.Errorf("error: %v", err)
	}
	want := []planner.HostRecap{
		{Host: "node1", Changed: []string{"file.a"}, Skipped: []string{"file.c", "file.later"},
			Failed: []planner.Failure{{Resource: "cmd.bad", Error: `step 1 of 1 (use the password): node1: "echo 'bad password (sensitive)' >&2; exit 4" exited with status 4: bad password (sensitive)`}}},
		{Host: "node2", Changed: []string{"file.a", "file.c"}, Skipped: []string{"file.later"}},
	}
	if d := cmp.Diff(want, recap.Hosts, ignoreElapsed); d != "" {
		t.Errorf("recap (-want +got):\n%s", d)
	}
	if l.file("node2", "later") != "<missing>" || l.file("node2", "c") != "c" {
		t.Error("node2: phase 1 must finish and phase 2 must not start")
	}
}

func TestApplyPhasesInOrderWithBoundedParallelism(t *testing.T) {
	hosts := []string{"h1", "h2", "h3", "h4", "h5"}
	l := newLab(t, hosts...)
	var mu sync.Mutex
	var log []string // "phase host start|end"
	running := map[string]int{}
	maxRunning := map[string]int{}
	step := func(phase string) modules.Step {
		return modules.Step{Desc: phase, Run: func(ctx context.Context, h modules.Host) error {
			mu.Lock()
			running[phase]++
			maxRunning[phase] = max(maxRunning[phase], running[phase])
			log = append(log, phase+" start")
			mu.Unlock()
			// A real command, so that hosts overlap when allowed to.
			if _, err := h.Run(ctx, "sleep 0.05", nil); err != nil {
				return err
			}
			mu.Lock()
			running[phase]--
			log = append(log, phase+" end")
			mu.Unlock()
			return nil
		}}
	}
	p := &engine.Program{SpecDigest: "d", Hosts: hosts}
	for _, ph := range []engine.Phase{{Name: "one"}, {Name: "two", Serial: true}, {Name: "three"}} {
		for _, h := range hosts {
			ph.Hosts = append(ph.Hosts, engine.HostResources{Host: h, Resources: []modules.Resource{
				&funcRes{addr: "step." + ph.Name, steps: []modules.Step{step(ph.Name)}},
			}})
		}
		p.Phases = append(p.Phases, ph)
	}
	e := l.engine()
	e.Parallelism = 2
	if _, err := e.Apply(context.Background(), p, nil); err != nil {
		t.Fatal(err)
	}
	if maxRunning["one"] > 2 || maxRunning["three"] > 2 || maxRunning["two"] != 1 {
		t.Errorf("max hosts at once per phase: %v (want <=2, 1, <=2)", maxRunning)
	}
	if maxRunning["one"] < 2 {
		t.Logf("phase one never ran two hosts at once (busy machine?)")
	}
	// Every step of a phase ends before the next phase starts.
	var phases []string
	for _, entry := range log {
		ph, _, _ := strings.Cut(entry, " ")
		if len(phases) == 0 || phases[len(phases)-1] != ph {
			phases = append(phases, ph)
		}
	}
	if d := cmp.Diff([]string{"one", "two", "three"}, phases); d != "" {
		t.Errorf("phases interleaved (-want +got):\n%s\nlog: %q", d, log)
	}
}

func TestApplySavedPlan(t *testing.T) {
	l := newLab(t, "node1", "node2")
	l.setFile("node2", "motd", "old")
	mk := func(string) []modules.Resource {
		return []modules.Resource{&fileRes{name: "motd", want: "new"}, &fileRes{name: "pw", want: "s3cret", sensitive: true}}
	}
	p := prog([]string{"node1", "node2"}, mk)
	e := l.engine()
	plan, err := e.Plan(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := engine.SavePlan(&buf, plan); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("s3cret")) {
		t.Fatalf("the plan file holds a secret:\n%s", buf.Bytes())
	}
	saved, err := engine.LoadPlan(&buf)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("refused when the hosts changed", func(t *testing.T) {
		l.setFile("node2", "motd", "new") // someone fixed it by hand
		defer l.setFile("node2", "motd", "old")
		other := prog([]string{"node1", "node2"}, mk)
		other.SpecDigest = "digest-2"
		_, err := e.Apply(context.Background(), other, saved)
		if !errors.Is(err, engine.ErrPlanStale) {
			t.Fatalf("err = %v, want ErrPlanStale", err)
		}
		for _, want := range []string{"node2 file.motd: planned update, now no-op", "the spec changed (digest digest-1, now digest-2)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if l.file("node1", "motd") != "<missing>" {
			t.Error("a refused apply changed a host")
		}
	})
	t.Run("applied when it still matches", func(t *testing.T) {
		if _, err := e.Apply(context.Background(), p, saved); err != nil {
			t.Fatal(err)
		}
		if l.file("node1", "pw") != "s3cret" || l.file("node2", "motd") != "new" {
			t.Error("not applied")
		}
	})
}

func TestApplyRefusesHostErrors(t *testing.T) {
	l := newLab(t, "node1", "node2")
	l.down["node2"] = true
	p := prog([]string{"node1", "node2"}, func(string) []modules.Resource { return []modules.Resource{&fileRes{name: "a", want: "a"}} })
	_, err := l.engine().Apply(context.Background(), p, nil)
	if !errors.Is(err, engine.ErrHostErrors) || !strings.Contains(err.Error(), "node2: connect: node2: dial tcp") {
		t.Fatalf("err = %v", err)
	}
	if l.file("node1", "a") != "<missing>" {
		t.Error("node1 was changed")
	}
}

func TestApplyRefusesLockedHost(t *testing.T) {
	l := newLab(t, "node1", "node2", "node3")
	l.setFile("node3", "a", "a") // no changes: node3 is not locked
	unlock, err := l.hosts["node2"].Lock(context.Background(), engine.LockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	held, err := l.hosts["node3"].Lock(context.Background(), engine.LockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	p := prog([]string{"node1", "node2", "node3"}, func(string) []modules.Resource { return []modules.Resource{&fileRes{name: "a", want: "a"}} })
	e := l.engine()
	_, err = e.Apply(context.Background(), p, nil)
	if !errors.Is(err, executors.ErrLocked) {
		t.Fatalf("err = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "on node2") || !strings.Contains(err.Error(), "pid") {
		t.Errorf("error does not name the host and the holder: %v", err)
	}
	if l.file("node1", "a") != "<missing>" {
		t.Error("node1 was changed")
	}
	// node1's lock was released: once node2 is free, apply works.
	unlock()
	if _, err := e.Apply(context.Background(), p, nil); err != nil {
		t.Fatal(err)
	}
}

func TestApplyInterrupted(t *testing.T) {
	l := newLab(t, "n")
	l.setFile("n", "running-db", "yes")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupt := true
	// The conf file's first step is running when Ctrl-C comes: it
	// completes, its second step does not start, nor the restart.
	conf := &fileRes{name: "conf", want: "new", steps: []modules.Step{
		{Desc: "interrupted here", Run: func(stepCtx context.Context, h modules.Host) error {
			if interrupt {
				cancel()
			}
			if stepCtx.Err() != nil {
				return fmt.Errorf("the running step was cancelled: %w", stepCtx.Err())
			}
			_, err := h.Run(stepCtx, `printf new > "$ROOT/files/conf"`, nil)
			return err
		}},
		{Desc: "second", Cmd: `touch "$ROOT/files/second"`},
	}}
	mk := func(string) []modules.Resource {
		return []modules.Resource{conf, &fileRes{name: "motd", want: "hi"}, &svcRes{name: "db", watches: []string{"file.conf"}}}
	}
	p := prog([]string{"n"}, mk)
	e := l.engine()
	recap, err := e.Apply(ctx, p, nil)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, engine.ErrInterrupted) {
		t.Fatalf("err = %v, want interrupted", err)
	}
	if !strings.Contains(err.Error(), "interrupted: the next apply resumes where this one stopped") {
		t.Errorf("err = %v", err)
	}
	if !recap.Interrupted {
		t.Error("recap not marked interrupted")
	}
	want := []planner.HostRecap{{Host: "n", Skipped: []string{"file.conf", "file.motd", "service.db"}}}
	if d := cmp.Diff(want, recap.Hosts, ignoreElapsed); d != "" {
		t.Errorf("recap (-want +got):\n%s", d)
	}
	if l.file("n", "conf") != "new" {
		t.Error("the running step did not complete")
	}
	if l.file("n", "second") != "<missing>" || l.file("n", "motd") != "<missing>" {
		t.Error("a step started after the interrupt")
	}

	// The conf file now matches, but the restart is still owed: the next
	// plan shows it, and the next apply carries it out.
	plan, err := e.Plan(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range plan.Changes {
		got = append(got, c.Resource+" "+string(c.Action)+" "+c.Reason)
	}
	if d := cmp.Diff([]string{"file.motd create file does not exist", "service.db update notified by file.conf"}, got); d != "" {
		t.Errorf("plan after interrupt (-want +got):\n%s", d)
	}
	interrupt = false
	if _, err := e.Apply(context.Background(), p, nil); err != nil {
		t.Fatal(err)
	}
	if got := l.file("n", "restarts-db"); got != "restart file.conf\n" {
		t.Errorf("restarts: %q", got)
	}
	plan, err = e.Plan(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if plan.HasChanges() {
		t.Errorf("plan after resumed apply: %+v", plan.Changes)
	}
}

func TestApplyAbortCancelsRunningStep(t *testing.T) {
	l := newLab(t, "n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abort := make(chan struct{})
	p := prog([]string{"n"}, func(string) []modules.Resource {
		return []modules.Resource{&funcRes{addr: "cmd.long", steps: []modules.Step{{Desc: "long", Run: func(stepCtx context.Context, h modules.Host) error {
			cancel()     // first Ctrl-C: the step goes on
			close(abort) // second Ctrl-C: the step is cancelled
			<-stepCtx.Done()
			return stepCtx.Err()
		}}}}}
	})
	e := l.engine()
	e.Abort = abort
	recap, err := e.Apply(ctx, p, nil)
	if !errors.Is(err, engine.ErrInterrupted) || !errors.Is(err, engine.ErrApplyFailed) {
		t.Fatalf("err = %v", err)
	}
	if len(recap.Hosts[0].Failed) != 1 {
		t.Errorf("recap: %+v", recap.Hosts)
	}
}

func TestApplyNoChangesTakesNoLock(t *testing.T) {
	l := newLab(t, "n")
	l.setFile("n", "a", "a")
	unlock, err := l.hosts["n"].Lock(context.Background(), engine.LockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	p := prog([]string{"n"}, func(string) []modules.Resource { return []modules.Resource{&fileRes{name: "a", want: "a"}} })
	recap, err := l.engine().Apply(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]planner.HostRecap{{Host: "n", OK: []string{"file.a"}}}, recap.Hosts, ignoreElapsed); d != "" {
		t.Error(d)
	}
}
