// Package results writes the sections of bench/RESULTS.md: each suite (and
// the chaos soak of e2e/chaos) owns the text between its two markers.
package results

import (
	"os"
	"strings"
)

// WriteSection replaces the section between the markers of name in the
// results file (or appends it), keeping the other suites' sections.
func WriteSection(path, name, body string) error {
	begin, end := "<!-- bench:"+name+" -->", "<!-- /bench:"+name+" -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	if doc == "" {
		doc = "# Benchmark results\n\nWritten by `make bench` (`go run ./bench`); each section is replaced when its suite runs again.\n"
	}
	block := begin + "\n" + body + end
	if i := strings.Index(doc, begin); i >= 0 {
		if j := strings.Index(doc, end); j > i {
			doc = doc[:i] + block + doc[j+len(end):]
			return os.WriteFile(path, []byte(doc), 0o644)
		}
	}
	doc = strings.TrimRight(doc, "\n") + "\n\n" + block + "\n"
	return os.WriteFile(path, []byte(doc), 0o644)
}
