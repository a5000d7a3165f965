package render

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/pgherd/pgherd/planner"
)

// The JSON form of a plan; docs/plan-json.md documents it. Field names and
// meanings only change with planner.FormatVersion.
type jsonPlan struct {
	FormatVersion int          `json:"format_version"`
	SpecDigest    string       `json:"spec_digest"`
	Complete      bool         `json:"complete"`
	Hosts         []jsonHost   `json:"hosts"`
	Changes       []jsonChange `json:"changes"`
	Summary       jsonSummary  `json:"summary"`
	Errors        []jsonError  `json:"errors"`
}

type jsonHost struct {
	Name    string `json:"name"`
	Status  string `json:"status"` // "changes", "no-changes" or "error"
	Changes int    `json:"changes"`
}

type jsonChange struct {
	Host       string     `json:"host"`
	Resource   string     `json:"resource"`
	Action     string     `json:"action"`
	Reason     string     `json:"reason"`
	Impact     string     `json:"impact"`
	Sensitive  bool       `json:"sensitive"`
	Attributes []jsonAttr `json:"attributes"`
	Diff       *string    `json:"diff"`
}

type jsonAttr struct {
	Name      string  `json:"name"`
	Before    *string `json:"before"`
	After     *string `json:"after"`
	Sensitive bool    `json:"sensitive"`
}

type jsonSummary struct {
	Add     int `json:"add"`
	Change  int `json:"change"`
	Destroy int `json:"destroy"`
}

type jsonError struct {
	Host  string `json:"host"`
	Error string `json:"error"`
}

// JSON writes the plan as the JSON document described in docs/plan-json.md:
// format_version, spec_digest, complete, hosts, changes, summary, errors.
// Sensitive values are null, never written.
func JSON(w io.Writer, p *planner.Plan) error {
	doc := jsonPlan{
		FormatVersion: planner.FormatVersion,
		SpecDigest:    p.SpecDigest,
		Complete:      len(p.HostErrors) == 0,
		Hosts:         []jsonHost{},
		Changes:       []jsonChange{},
		Errors:        []jsonError{},
	}
	count := map[string]int{}
	for _, c := range p.Changes {
		if c.IsNoOp() {
			continue
		}
		count[c.Host]++
		jc := jsonChange{Host: c.Host, Resource: c.Resource, Action: string(c.Action), Reason: c.Reason,
			Impact: c.Impact, Sensitive: c.Sensitive, Attributes: []jsonAttr{}}
		for _, a := range c.Attrs {
			ja := jsonAttr{Name: a.Name, Sensitive: a.Sensitive || c.Sensitive}
			if !ja.Sensitive {
				ja.Before, ja.After = ptr(a.Before), ptr(a.After)
			}
			jc.Attributes = append(jc.Attributes, ja)
		}
		if c.Diff != "" && !c.Sensitive {
			jc.Diff = ptr(c.Diff)
		}
		doc.Changes = append(doc.Changes, jc)
	}
	failed := map[string]bool{}
	for _, e := range p.HostErrors {
		failed[e.Host] = true
		doc.Errors = append(doc.Errors, jsonError{Host: e.Host, Error: e.Error})
	}
	for _, h := range hostOrder(p) {
		jh := jsonHost{Name: h, Status: "no-changes", Changes: count[h]}
		switch {
		case failed[h]:
			jh.Status = "error"
		case count[h] > 0:
			jh.Status = "changes"
		}
		doc.Hosts = append(doc.Hosts, jh)
	}
	s := p.Summarize()
	doc.Summary = jsonSummary{Add: s.Create, Change: s.Update, Destroy: s.Delete}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("render plan as JSON: %w", err)
	}
	return nil
}

func ptr(s string) *string { return &s }
