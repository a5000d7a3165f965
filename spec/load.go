package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// source is one spec file's text.
type source struct {
	name string
	src  []byte
}

// Load reads, decodes and validates a spec. It never panics; it reports
// every error it finds, each with a source range where there is one. The
// model is nil when there is an error.
func Load(in Input) (m *Model, d Diagnostics) {
	defer func() {
		if r := recover(); r != nil {
			m = nil
			d.Diags = append(d.Diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Internal error",
				Detail:   fmt.Sprintf("pgherd failed to decode the spec: %v. This is a bug; please report it with the spec that triggers it.", r),
			})
		}
	}()
	srcs, diags := readSources(in.Paths)
	if diags.HasErrors() {
		return nil, Diagnostics{Diags: diags, Files: map[string]*hcl.File{}}
	}
	m, d = load(in, srcs)
	d.Diags = append(diags, d.Diags...)
	return m, d
}

// readSources reads the spec files of paths.
func readSources(paths []string) ([]source, hcl.Diagnostics) {
	var (
		srcs  []source
		diags hcl.Diagnostics
	)
	if len(paths) == 0 {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "No spec given",
			Detail: "Give the spec files, or a directory of *.hcl files."}}
	}
	read := func(name string) {
		b, err := os.ReadFile(name)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read spec file", Detail: err.Error()})
			return
		}
		srcs = append(srcs, source{name: name, src: b})
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read spec", Detail: err.Error()})
			continue
		}
		if !st.IsDir() {
			read(p)
			continue
		}
		names, err := filepath.Glob(filepath.Join(p, "*.hcl"))
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read spec directory", Detail: err.Error()})
			continue
		}
		if len(names) == 0 {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No spec files",
				Detail: fmt.Sprintf("The directory %s has no *.hcl files.", p)})
			continue
		}
		sort.Strings(names)
		for _, n := range names {
			read(n)
		}
	}
	return srcs, diags
}

type parsedFile struct {
	name string
	dir  string
	file *hcl.File
	ctx  *hcl.EvalContext
}

// loader holds the state of one Load.
type loader struct {
	in    Input
	diags hcl.Diagnostics
	files map[string]*hcl.File
	vars  []*variable
	m     *Model

	// declared resources, "kind.name" → where
	addrs map[string]hcl.Range
	hosts map[string]hcl.Range
	roles map[string]bool
	// sensitive values seen
	sensitive map[string]bool
	// checks run once every host and resource is known
	later []func()
}

func (l *loader) errorf(subject *hcl.Range, summary, detailFmt string, args ...any) {
	l.diags = append(l.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detailFmt, args...),
		Subject:  subject,
	})
}

func (l *loader) warnf(subject *hcl.Range, summary, detailFmt string, args ...any) {
	l.diags = append(l.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  summary,
		Detail:   fmt.Sprintf(detailFmt, args...),
		Subject:  subject,
	})
}

// load decodes sources already read.
func load(in Input, srcs []source) (*Model, Diagnostics) {
	l := &loader{
		in:        in,
		files:     map[string]*hcl.File{},
		addrs:     map[string]hcl.Range{},
		hosts:     map[string]hcl.Range{},
		roles:     map[string]bool{},
		sensitive: map[string]bool{},
		m:         &Model{},
	}
	var parsed []*parsedFile
	for _, s := range srcs {
		f, diags := hclsyntax.ParseConfig(s.src, s.name, hcl.InitialPos)
		l.diags = append(l.diags, diags...)
		if f == nil {
			continue
		}
		l.files[s.name] = f
		l.m.Sources = append(l.m.Sources, s.name)
		parsed = append(parsed, &parsedFile{name: s.name, dir: filepath.Dir(s.name), file: f})
	}
	if l.diags.HasErrors() {
		// Decoding a body with syntax errors mostly reports the same
		// errors again, differently.
		return nil, l.result()
	}

	root := rootSchema()
	byType := map[string][]*blockIn{}
	for _, p := range parsed {
		content, diags := p.file.Body.Content(root)
		l.diags = append(l.diags, diags...)
		for _, b := range content.Blocks {
			byType[b.Type] = append(byType[b.Type], &blockIn{blk: b, file: p})
		}
	}

	l.declareVariables(byType["variable"])
	l.assignVariables()
	varObj := l.varObject()
	for _, p := range parsed {
		p.ctx = &hcl.EvalContext{Variables: varObj, Functions: functions(p.dir, true)}
	}

	l.decodeSSH(byType["ssh"])
	for _, b := range byType["host"] {
		l.decodeHost(b)
	}
	for _, b := range byType["package"] {
		l.decodePackage(b)
	}
	for _, b := range byType["file"] {
		l.decodeFile(b)
	}
	for _, b := range byType["directory"] {
		l.decodeDirectory(b)
	}
	for _, b := range byType["group"] {
		l.decodeGroup(b)
	}
	for _, b := range byType["user"] {
		l.decodeUser(b)
	}
	for _, b := range byType["service"] {
		l.decodeService(b)
	}
	for _, b := range byType["sysctl"] {
		l.decodeSysctl(b)
	}
	l.decodeCluster(byType["cluster"])
	for _, f := range l.later {
		f()
	}
	for s := range l.sensitive {
		if s != "" {
			l.m.Sensitive = append(l.m.Sensitive, s)
		}
	}
	sort.Strings(l.m.Sensitive)
	if l.diags.HasErrors() {
		return nil, l.result()
	}
	return l.m, l.result()
}

func (l *loader) result() Diagnostics {
	return Diagnostics{Diags: l.diags, Files: l.files}
}

// blockIn is a block with the file it is in.
type blockIn struct {
	blk  *hcl.Block
	file *parsedFile
}

// suggest returns a " Did you mean "x"?" hint for the candidate closest to
// name, or "".
func suggest(name string, candidates []string) string {
	best, bestD := "", 0
	for _, c := range candidates {
		d := levenshtein(name, c)
		if d < 3 && (best == "" || d < bestD) {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

func sortStrings(s []string) { sort.Strings(s) }

func posString(r hcl.Range) string {
	return fmt.Sprintf("%s:%d,%d", r.Filename, r.Start.Line, r.Start.Column)
}

func quoteValue(s string, sensitive bool) string {
	if sensitive {
		return SensitiveMask
	}
	return fmt.Sprintf("%q", s)
}

func envValue(environ []string, key string) (string, bool) {
	for i := len(environ) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(environ[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
