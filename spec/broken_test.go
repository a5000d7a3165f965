package spec

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

var errorComment = regexp.MustCompile(`#\s*ERROR:\s*(.*?)\s*$`)

// expectedErrors reads the "# ERROR: text" comments of a file: line → text.
func expectedErrors(t *testing.T, path string) map[int]string {
	t.Helper()
	return expectedMarks(t, path, errorComment)
}

// expectedMarks reads the comments of a file that re matches: line → the
// text of re's first group.
func expectedMarks(t *testing.T, path string, re *regexp.Regexp) map[int]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[int]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			want[n] = m[1]
		}
	}
	return want
}

func TestLoadBroken(t *testing.T) {
	paths, err := filepath.Glob("testdata/broken/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want := expectedErrors(t, path)
			if len(want) == 0 {
				t.Fatal("no # ERROR: comment in the file")
			}
			m, diags := Load(Input{Paths: []string{path}, Environ: testEnviron})
			if m != nil {
				t.Errorf("Load returned a model despite errors")
			}
			got := map[int][]string{}
			for _, d := range diags.Diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				if d.Subject == nil {
					t.Errorf("error without a source range: %s: %s", d.Summary, d.Detail)
					continue
				}
				if d.Subject.Filename != path {
					t.Errorf("error in another file %s: %s", d.Subject.Filename, d.Summary)
					continue
				}
				got[d.Subject.Start.Line] = append(got[d.Subject.Start.Line], d.Summary+": "+d.Detail)
			}
			var buf bytes.Buffer
			if err := diags.Write(&buf, false); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for line, text := range want {
				msgs := got[line]
				found := false
				for _, msg := range msgs {
					found = found || strings.Contains(msg, text)
				}
				if !found {
					t.Errorf("line %d: want an error containing %q, got %q", line, text, msgs)
				}
				if !strings.Contains(out, fmt.Sprintf("line %d", line)) {
					t.Errorf("Write output does not mention line %d", line)
				}
			}
			var lines []int
			for line := range got {
				lines = append(lines, line)
			}
			sort.Ints(lines)
			for _, line := range lines {
				if _, ok := want[line]; !ok {
					t.Errorf("line %d: unexpected error %q", line, got[line])
				}
			}
			if !strings.Contains(out, "Error: ") {
				t.Errorf("Write output has no \"Error: \":\n%s", out)
			}
			if strings.Contains(out, "SECRET") {
				t.Errorf("Write output shows a sensitive value:\n%s", out)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}
