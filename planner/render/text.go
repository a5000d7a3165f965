// Package render turns plans, apply recaps and progress events into text
// for people (Terraform's plan layout, Ansible's PLAY RECAP) and into JSON
// for machines (see docs/plan-json.md). It reads only planner's plain data.
package render

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pgherd/pgherd/planner"
)

// TextOptions tune the text rendering of a plan.
type TextOptions struct {
	// Color adds ANSI colors: green for create, yellow for update, red for
	// delete and errors.
	Color bool
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

// maxValue is how many characters of an attribute value are shown.
const maxValue = 200

type printer struct {
	w     io.Writer
	color bool
	err   error
}

func (pr *printer) printf(format string, args ...any) {
	if pr.err == nil {
		_, pr.err = fmt.Fprintf(pr.w, format, args...)
	}
}

func (pr *printer) paint(color, s string) string {
	if !pr.color || color == "" {
		return s
	}
	return color + s + ansiReset
}

func actionColor(a planner.Action) string {
	switch a {
	case planner.Create:
		return ansiGreen
	case planner.Update:
		return ansiYellow
	case planner.Delete:
		return ansiRed
	}
	return ""
}

// hostOrder is p.Hosts followed by any host named only in a change or an
// error.
func hostOrder(p *planner.Plan) []string {
	seen := map[string]bool{}
	var out []string
	add := func(h string) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, h := range p.Hosts {
		add(h)
	}
	for _, c := range p.Changes {
		add(c.Host)
	}
	for _, e := range p.HostErrors {
		add(e.Host)
	}
	return out
}

// Text writes the plan as people read it, Terraform-style, grouped by
// host. Sensitive values print as (sensitive) and sensitive changes never
// show a diff.
func Text(w io.Writer, p *planner.Plan, opts TextOptions) error {
	pr := &printer{w: w, color: opts.Color}
	byHost := map[string][]planner.Change{}
	width := 0
	for _, c := range p.Changes {
		if c.IsNoOp() {
			continue
		}
		byHost[c.Host] = append(byHost[c.Host], c)
		width = max(width, utf8.RuneCountInString(c.Resource))
	}
	width = min(max(width, 30), 60)
	errs := map[string]string{}
	for _, e := range p.HostErrors {
		errs[e.Host] = e.Error
	}

	if !p.HasChanges() && len(errs) == 0 {
		pr.printf("%s\n", planner.Summary{})
		return pr.err
	}
	if p.HasChanges() {
		pr.printf("pgherd will perform the following actions:\n\n")
	} else {
		pr.printf("pgherd found no changes on the hosts it could read:\n\n")
	}
	for _, h := range hostOrder(p) {
		switch {
		case errs[h] != "":
			msg := strings.ReplaceAll(strings.TrimSpace(errs[h]), "\n", "\n      ")
			pr.printf("  %s %s\n", pr.paint(ansiBold, "# "+h+":"), pr.paint(ansiRed, "could not be planned"))
			pr.printf("      %s\n", pr.paint(ansiRed, "Error: ")+msg)
		case len(byHost[h]) == 0:
			pr.printf("  # %s: no changes\n", h)
		default:
			pr.printf("  %s\n", pr.paint(ansiBold, "# "+h))
			for _, c := range byHost[h] {
				pr.change(c, width)
			}
		}
	}
	pr.printf("\n")
	s := p.Summarize()
	pr.printf("%s\n", pr.paint(ansiBold, fmt.Sprintf("Plan: %d to add, %d to change, %d to destroy.", s.Create, s.Update, s.Delete)))
	if n := len(errs); n > 0 {
		hosts := "host"
		if n > 1 {
			hosts = "hosts"
		}
		pr.printf("\n%s %d %s could not be planned: the plan is incomplete and cannot be applied.\n", pr.paint(ansiRed+ansiBold, "Error:"), n, hosts)
	}
	return pr.err
}

func (pr *printer) change(c planner.Change, width int) {
	sym := pr.paint(actionColor(c.Action), c.Action.Symbol())
	line := fmt.Sprintf("  %s %s", sym, c.Resource)
	if c.Reason != "" {
		pad := width - utf8.RuneCountInString(c.Resource)
		line += strings.Repeat(" ", max(pad, 0)+3) + "(" + c.Reason + ")"
	}
	pr.printf("%s\n", line)
	for _, a := range c.Attrs {
		pr.attr(c, a)
	}
	if c.Impact != "" {
		pr.printf("      %s\n", pr.paint(ansiYellow, "! impact: "+c.Impact))
	}
	if c.Diff != "" && !c.Sensitive {
		for _, l := range strings.Split(strings.TrimRight(c.Diff, "\n"), "\n") {
			color := ""
			switch {
			case strings.HasPrefix(l, "@@"):
				color = ansiCyan
			case strings.HasPrefix(l, "+"):
				color = ansiGreen
			case strings.HasPrefix(l, "-"):
				color = ansiRed
			}
			pr.printf("      %s\n", pr.paint(color, l))
		}
	}
}

func (pr *printer) attr(c planner.Change, a planner.Attr) {
	sensitive := a.Sensitive || c.Sensitive
	switch {
	case c.Action == planner.Create && a.Before == "":
		v := quote(a.After)
		if sensitive {
			v = "(sensitive)"
		}
		pr.printf("      %s %s = %s\n", pr.paint(ansiGreen, "+"), a.Name, v)
	case c.Action == planner.Delete && a.After == "":
		v := quote(a.Before)
		if sensitive {
			v = "(sensitive)"
		}
		pr.printf("      %s %s = %s\n", pr.paint(ansiRed, "-"), a.Name, v)
	case sensitive:
		pr.printf("      %s %s: (sensitive)\n", pr.paint(ansiYellow, "~"), a.Name)
	default:
		pr.printf("      %s %s: %s → %s\n", pr.paint(ansiYellow, "~"), a.Name, quote(a.Before), quote(a.After))
	}
}

// quote shows a value in Go syntax, cut after maxValue characters.
func quote(s string) string {
	if utf8.RuneCountInString(s) > maxValue {
		r := []rune(s)
		return strconv.Quote(string(r[:maxValue])) + "…"
	}
	return strconv.Quote(s)
}
