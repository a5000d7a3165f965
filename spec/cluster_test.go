package spec

import (
	"bytes"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

var warningComment = regexp.MustCompile(`#\s*WARNING:\s*(.*?)\s*$`)

// TestLoadWarnings loads testdata/warn/*.hcl: each loads without error,
// with exactly the warnings its "# WARNING: text" comments name.
func TestLoadWarnings(t *testing.T) {
	paths, err := filepath.Glob("testdata/warn/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want := expectedMarks(t, path, warningComment)
			if len(want) == 0 {
				t.Fatal("no # WARNING: comment in the file")
			}
			m, diags := Load(Input{Paths: []string{path}, Environ: testEnviron})
			var buf bytes.Buffer
			if err := diags.Write(&buf, false); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if diags.HasErrors() || m == nil {
				t.Fatalf("unexpected errors:\n%s", out)
			}
			got := map[int][]string{}
			for _, d := range diags.Diags {
				if d.Subject == nil {
					t.Errorf("warning without a source range: %s: %s", d.Summary, d.Detail)
					continue
				}
				got[d.Subject.Start.Line] = append(got[d.Subject.Start.Line], d.Summary+": "+d.Detail)
			}
			for line, text := range want {
				found := false
				for _, msg := range got[line] {
					found = found || strings.Contains(msg, text)
				}
				if !found {
					t.Errorf("line %d: want a warning containing %q, got %q", line, text, got[line])
				}
			}
			var lines []int
			for line := range got {
				lines = append(lines, line)
			}
			sort.Ints(lines)
			for _, line := range lines {
				if _, ok := want[line]; !ok {
					t.Errorf("line %d: unexpected warning %q", line, got[line])
				}
			}
			if !strings.Contains(out, "Warning: ") || strings.Contains(out, "SECRET") {
				t.Errorf("unexpected output:\n%s", out)
			}
		})
	}
}

// TestClusterWarningsKeepPlainValuesUnmasked checks that a password that is
// not sensitive is not collected in Model.Sensitive (masking a plain word
// such as "postgres" everywhere would garble plans), while sensitive ones
// are.
func TestClusterWarningsKeepPlainValuesUnmasked(t *testing.T) {
	m, diags := Load(Input{Paths: []string{"testdata/warn/cluster.hcl"}, Environ: testEnviron})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	for _, s := range m.Sensitive {
		if s == "postgres" || s == "vrrp" {
			t.Errorf("Sensitive holds %q, which is not sensitive", s)
		}
	}
	if !bytes.Contains([]byte(strings.Join(m.Sensitive, "\n")), []byte("hunter2 SECRET!")) {
		t.Errorf("Sensitive misses the replication password: %q", m.Sensitive)
	}
	if m.Cluster.Postgres.SuperuserPassword != "postgres" {
		t.Errorf("SuperuserPassword = %q", m.Cluster.Postgres.SuperuserPassword)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "1MB", want: 1 << 20},
		{in: "16 MB", want: 16 << 20},
		{in: "8kB", want: 8 << 10},
		{in: "8KiB", want: 8 << 10},
		{in: "2GB", want: 2 << 30},
		{in: "1TB", want: 1 << 40},
		{in: "512B", want: 512},
		{in: "1.5MB", err: true},
		{in: "MB", err: true},
		{in: "-1", err: true},
		{in: "1PB", err: true},
		{in: "10000000TB", err: true},
		{in: "99999999999999999999", err: true},
		{in: "", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

// TestClusterMember checks the lookup of a member's settings.
func TestClusterMember(t *testing.T) {
	m, diags := Load(Input{Paths: []string{"testdata/good/cluster.hcl"}, Environ: testEnviron})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	c := m.Cluster
	tests := []struct {
		host string
		want Member
		ok   bool
	}{
		{host: "node1", want: Member{Host: "node1", Priority: 1}, ok: true},
		{host: "node3", want: Member{Host: "node3", Priority: 0, NoFailover: true, NoSync: true}, ok: true},
		{host: "witness", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got, ok := c.Member(tt.host)
			got.Range = hcl.Range{}
			if ok != tt.ok || got != tt.want {
				t.Errorf("Member(%q) = %+v, %v; want %+v, %v", tt.host, got, ok, tt.want, tt.ok)
			}
		})
	}
}
