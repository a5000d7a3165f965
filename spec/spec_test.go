package spec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testEnviron is the environment every test load sees.
var testEnviron = []string{
	"HOME=/home/op",
	"PGHERD_VAR_db_password=hunter2 SECRET!",
	"PGHERD_VAR_undeclared=ignored",
}

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./spec -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got), run go test ./spec -update if the change is right:\n%s", path, diff)
	}
}

// modelJSON renders a model for golden files: ranges as file:line,
// sensitive values masked.
func modelJSON(t *testing.T, m *Model) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			if r, ok := x["Range"].(map[string]any); ok {
				start, _ := r["Start"].(map[string]any)
				x["Range"] = filepath.ToSlash(r["Filename"].(string)) + ":" + jsonNum(start["Line"])
			}
			for k, e := range x {
				if k != "Range" {
					x[k] = walk(e)
				}
			}
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		case string:
			return m.Mask(x)
		}
		return v
	}
	v = walk(v)
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestLoadGood(t *testing.T) {
	entries, err := os.ReadDir("testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() && name == "files" {
			continue // sources read by the specs
		}
		t.Run(name, func(t *testing.T) {
			m, diags := Load(Input{Paths: []string{filepath.Join("testdata/good", name)}, Environ: testEnviron})
			if diags.HasErrors() {
				var buf bytes.Buffer
				_ = diags.Write(&buf, false)
				t.Fatalf("unexpected errors:\n%s", buf.String())
			}
			for _, d := range diags.Diags {
				if d.Severity == hcl.DiagWarning {
					t.Errorf("unexpected warning: %s: %s", d.Summary, d.Detail)
				}
			}
			got := modelJSON(t, m)
			if bytes.Contains(got, []byte("SECRET")) || bytes.Contains(got, []byte("s3cr3t")) {
				t.Errorf("a sensitive value is not masked:\n%s", got)
			}
			golden(t, filepath.Join("golden", strings.TrimSuffix(name, ".hcl")+".json"), got)
		})
	}
}
