package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner"
	"github.com/pgherd/pgherd/planner/engine"
)

// lab is a set of fake hosts. Each host is this machine (executors.Local)
// confined by convention to its own directory: commands see it as $ROOT,
// the engine's /var/lib/pgherd and /run/pgherd.lock are rewritten into it.
type lab struct {
	t     *testing.T
	dir   string
	mu    sync.Mutex
	hosts map[string]*fakeHost
	down  map[string]bool // Connect fails
	// inflight counts commands running at once across hosts, max keeps
	// the highest count seen.
	inflight, max atomic.Int32
	latency       time.Duration
}

func newLab(t *testing.T, names ...string) *lab {
	t.Helper()
	l := &lab{t: t, dir: t.TempDir(), hosts: map[string]*fakeHost{}, down: map[string]bool{}}
	for _, n := range names {
		root := filepath.Join(l.dir, n)
		for _, d := range []string{"files", "run"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		l.hosts[n] = &fakeHost{Local: executors.NewLocal(n, 0, nil), root: root, lab: l}
	}
	return l
}

func (l *lab) connect(ctx context.Context, name string) (engine.Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down[name] {
		return nil, fmt.Errorf("%s: dial tcp 10.77.0.9:22: connection refused: %w", name, executors.ErrUnreachable)
	}
	h, ok := l.hosts[name]
	if !ok {
		return nil, fmt.Errorf("no host %s", name)
	}
	return h, nil
}

func (l *lab) engine() *engine.Engine {
	return &engine.Engine{Connect: l.connect}
}

// file returns the content of a host's $ROOT/files/name, "<missing>" when
// there is none.
func (l *lab) file(host, name string) string {
	b, err := os.ReadFile(filepath.Join(l.hosts[host].root, "files", name))
	if err != nil {
		return "<missing>"
	}
	return string(b)
}

func (l *lab) setFile(host, name, content string) {
	l.t.Helper()
	if err := os.WriteFile(filepath.Join(l.hosts[host].root, "files", name), []byte(content), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

type fakeHost struct {
	*executors.Local
	root string
	lab  *lab

	mu   sync.Mutex
	cmds []string
	// failRun makes Run fail (not exit non-zero: fail to run) for commands
	// containing it.
	failRun string
}

func (h *fakeHost) rewrite(s string) string {
	return strings.ReplaceAll(s, engine.DefaultStateDir, h.root+engine.DefaultStateDir)
}

func (h *fakeHost) Run(ctx context.Context, cmd string, stdin io.Reader) (executors.Result, error) {
	h.mu.Lock()
	h.cmds = append(h.cmds, cmd)
	fail := h.failRun != "" && strings.Contains(cmd, h.failRun)
	h.mu.Unlock()
	if fail {
		return executors.Result{}, fmt.Errorf("%s: connection lost: %w", h.Name(), executors.ErrUnreachable)
	}
	n := h.lab.inflight.Add(1)
	defer h.lab.inflight.Add(-1)
	for {
		m := h.lab.max.Load()
		if n <= m || h.lab.max.CompareAndSwap(m, n) {
			break
		}
	}
	if h.lab.latency > 0 {
		time.Sleep(h.lab.latency)
	}
	cmd = "ROOT=" + executors.Quote(h.root) + "; export ROOT\n" + h.rewrite(cmd)
	return h.Local.Run(ctx, cmd, stdin)
}

func (h *fakeHost) Lock(ctx context.Context, path string) (func() error, error) {
	return h.Local.Lock(ctx, h.root+path)
}

func (h *fakeHost) commands() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.cmds...)
}

func (h *fakeHost) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cmds = nil
}

// fileRes wants $ROOT/files/<name> to hold want.
type fileRes struct {
	name, want string
	sensitive  bool
	// steps, when set, replace the default write step.
	steps []modules.Step
}

func (r *fileRes) Address() string { return "file." + r.name }
func (r *fileRes) path() string    { return `"$ROOT/files/` + r.name + `"` }
func (r *fileRes) Probe() string   { return "cat " + r.path() + " 2>/dev/null || exit 3" }

func (r *fileRes) Diff(f modules.Fact) (planner.Change, []modules.Step, error) {
	c := planner.Change{Resource: r.Address(), Sensitive: r.sensitive}
	switch {
	case f.ExitCode == 3:
		c.Action, c.Reason = planner.Create, "file does not exist"
		c.Attrs = []planner.Attr{{Name: "content", After: r.want, Sensitive: r.sensitive}}
	case f.ExitCode != 0:
		return c, nil, fmt.Errorf("probe exited %d", f.ExitCode)
	case string(f.Stdout) != r.want:
		c.Action, c.Reason = planner.Update, "content differs"
		c.Attrs = []planner.Attr{{Name: "content", Before: string(f.Stdout), After: r.want, Sensitive: r.sensitive}}
	default:
		return planner.Change{Action: planner.NoOp}, nil, nil
	}
	if r.steps != nil {
		return c, r.steps, nil
	}
	return c, []modules.Step{{Desc: "write " + r.name, Cmd: "printf '%s' " + executors.Quote(r.want) + " > " + r.path()}}, nil
}

// svcRes is a service: started when not running, restarted when notified.
// Restarts are logged in $ROOT/files/restarts-<name>.
type svcRes struct {
	name    string
	watches []string
}

func (r *svcRes) Address() string   { return "service." + r.name }
func (r *svcRes) Probe() string     { return `cat "$ROOT/files/running-` + r.name + `" 2>/dev/null; true` }
func (r *svcRes) Watches() []string { return r.watches }

func (r *svcRes) Diff(f modules.Fact) (planner.Change, []modules.Step, error) {
	if strings.TrimSpace(string(f.Stdout)) == "yes" {
		return planner.Change{Action: planner.NoOp}, nil, nil
	}
	return planner.Change{Action: planner.Create, Reason: "not running"},
		[]modules.Step{{Desc: "start", Cmd: `echo yes > "$ROOT/files/running-` + r.name + `"`}}, nil
}

func (r *svcRes) Notify(changed []string) (planner.Change, []modules.Step) {
	return planner.Change{Action: planner.Update, Impact: "restart"},
		[]modules.Step{{Desc: "restart", Cmd: `echo restart ` + executors.Quote(strings.Join(changed, ",")) + ` >> "$ROOT/files/restarts-` + r.name + `"`}}
}

// funcRes always has a change, made of the given steps.
type funcRes struct {
	addr  string
	steps []modules.Step
}

func (r *funcRes) Address() string { return r.addr }
func (r *funcRes) Probe() string   { return "true" }
func (r *funcRes) Diff(modules.Fact) (planner.Change, []modules.Step, error) {
	return planner.Change{Action: planner.Update, Reason: "always"}, r.steps, nil
}

// errRes fails to diff.
type errRes struct{}

func (errRes) Address() string { return "broken.thing" }
func (errRes) Probe() string   { return "true" }
func (errRes) Diff(modules.Fact) (planner.Change, []modules.Step, error) {
	return planner.Change{}, nil, errors.New("cannot parse fact")
}

// prog builds a one-phase program giving each host the same resources
// (made fresh per host by mk).
func prog(hosts []string, mk func(host string) []modules.Resource) *engine.Program {
	p := &engine.Program{SpecDigest: "digest-1", Hosts: hosts}
	ph := engine.Phase{Name: "main"}
	for _, h := range hosts {
		ph.Hosts = append(ph.Hosts, engine.HostResources{Host: h, Resources: mk(h)})
	}
	p.Phases = []engine.Phase{ph}
	return p
}

// recorder collects progress events; it is deliberately not
// goroutine-safe, so that -race catches unserialized calls.
type recorder struct{ events []engine.Event }

func (r *recorder) add(e engine.Event) { r.events = append(r.events, e) }

func (r *recorder) kinds(host string) []string {
	var out []string
	for _, e := range r.events {
		if e.Host == host {
			out = append(out, string(e.Kind)+" "+e.Resource)
		}
	}
	return out
}

// The real executors are Hosts.
var (
	_ engine.Host = (*executors.Local)(nil)
	_ engine.Host = (*executors.SSH)(nil)
)
