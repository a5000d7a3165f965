package render

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pgherd/pgherd/planner"
)

// Recap writes what an apply did, like Ansible's PLAY RECAP: one line per
// host with its ok, changed, failed and skipped counts and elapsed time,
// then each failure.
func Recap(w io.Writer, r *planner.Recap) error {
	pr := &printer{w: w}
	width := 0
	for _, h := range r.Hosts {
		width = max(width, len(h.Host))
	}
	width = max(width, 20)
	pr.printf("PLAY RECAP %s\n", strings.Repeat("*", 60))
	var changed, failed, skipped int
	for _, h := range r.Hosts {
		pr.printf("%-*s : ok=%-4d changed=%-4d failed=%-4d skipped=%-4d elapsed=%s\n",
			width, h.Host, len(h.OK), len(h.Changed), len(h.Failed), len(h.Skipped), duration(h.Elapsed))
		changed += len(h.Changed)
		failed += len(h.Failed)
		skipped += len(h.Skipped)
	}
	if failed > 0 {
		pr.printf("\nFailures:\n")
		for _, h := range r.Hosts {
			for _, f := range h.Failed {
				msg := strings.ReplaceAll(strings.TrimSpace(f.Error), "\n", "\n    ")
				pr.printf("  %s %s:\n    %s\n", h.Host, f.Resource, msg)
			}
		}
	}
	pr.printf("\n")
	switch {
	case r.Interrupted:
		pr.printf("Apply interrupted after %s: the next apply resumes where this one stopped.\n", duration(r.Elapsed))
	case failed > 0:
		pr.printf("Apply failed after %s: %d changed, %d failed, %d skipped.\n", duration(r.Elapsed), changed, failed, skipped)
	default:
		pr.printf("Apply complete after %s: %d changed.\n", duration(r.Elapsed), changed)
	}
	return pr.err
}

// duration rounds d for people: milliseconds under a second, tenths of
// seconds under a minute, seconds above.
func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// Progress returns a printer of apply progress events, one line each:
//
//	node1: connected (12ms)
//	node1: file./etc/motd: updating...
//	node1: file./etc/motd: done (1.2s)
//
// The function it returns is safe for concurrent use; write errors are
// ignored (progress is best effort).
func Progress(w io.Writer) func(planner.Event) {
	var mu sync.Mutex
	return func(e planner.Event) {
		line := progressLine(e)
		if line == "" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(w, line)
	}
}

func progressLine(e planner.Event) string {
	switch e.Kind {
	case planner.HostConnected:
		return fmt.Sprintf("%s: connected (%s)", e.Host, duration(e.Elapsed))
	case planner.HostFailed:
		return fmt.Sprintf("%s: could not be planned: %s", e.Host, e.Err)
	case planner.ResourceStart:
		return fmt.Sprintf("%s: %s: %s...", e.Host, e.Resource, verb(e.Action))
	case planner.ResourceDone:
		return fmt.Sprintf("%s: %s: done (%s)", e.Host, e.Resource, duration(e.Elapsed))
	case planner.ResourceUnchanged:
		return fmt.Sprintf("%s: %s: already matches, nothing to do (%s)", e.Host, e.Resource, duration(e.Elapsed))
	case planner.ResourceFailed:
		return fmt.Sprintf("%s: %s: failed after %s: %s", e.Host, e.Resource, duration(e.Elapsed), e.Err)
	}
	return ""
}

func verb(a planner.Action) string {
	switch a {
	case planner.Create:
		return "creating"
	case planner.Update:
		return "updating"
	case planner.Delete:
		return "deleting"
	}
	return "working"
}
